package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter is a listener that keeps at most max connections open. When
// every slot is taken and a new client waits, it closes the connection that
// has waited longest without a request in progress: idle between requests,
// or accepted and silent. Such a connection costs a client nothing to hold,
// so without this a few hundred of them would lock every other client out
// until --idle-timeout (or --read-header-timeout). (golang.org/x/net/netutil's
// LimitListener only waits.) Closing an idle connection is what HTTP/1.1
// allows at any time; clients retry a request that met it (Go's transport
// does for requests with an Idempotency-Key).
//
// Its ConnState method must be the http.Server's ConnState hook.
type connLimiter struct {
	net.Listener
	slots chan struct{}

	mu   sync.Mutex
	idle map[net.Conn]time.Time // connections without a request in progress, since when
}

// connShedPoll is how often a waiting Accept looks again for an idle
// connection to close, when none was idle at first.
const connShedPoll = 20 * time.Millisecond

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, slots: make(chan struct{}, max), idle: make(map[net.Conn]time.Time)}
}

// Accept waits for a free slot, closing idle connections to make one, then
// accepts.
func (l *connLimiter) Accept() (net.Conn, error) {
	for acquired := false; !acquired; {
		select {
		case l.slots <- struct{}{}:
			acquired = true
			continue
		default:
		}
		l.shedIdlest()
		select {
		case l.slots <- struct{}{}:
			acquired = true
		case <-time.After(connShedPoll):
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// shedIdlest closes the connection idle the longest, if any.
func (l *connLimiter) shedIdlest() {
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest != nil {
		oldest.Close()
	}
}

// ConnState tracks which connections have no request in progress: new ones
// (accepted, nothing read yet) and idle ones.
func (l *connLimiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == http.StateNew || s == http.StateIdle {
		l.idle[c] = time.Now()
	} else {
		delete(l.idle, c)
	}
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
