package main

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
// Its ConnState method must be the http.Server's ConnState hook. It runs
// twice per request (active, then idle again) and takes no lock: each
// connection keeps its own idle mark in an atomic. The set of open
// connections has a mutex, taken once when a connection opens, once when it
// closes, and by a shed.
type connLimiter struct {
	net.Listener
	slots chan struct{}
	epoch time.Time // idle marks count from here, on the monotonic clock

	mu   sync.Mutex
	open map[*limitedConn]struct{}
}

// connShedPoll is how often a waiting Accept looks again for an idle
// connection to close, when none was idle at first.
const connShedPoll = 20 * time.Millisecond

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, slots: make(chan struct{}, max), epoch: time.Now(), open: make(map[*limitedConn]struct{})}
}

// now is an idle mark for this moment: never 0, which marks a connection
// with a request in progress.
func (l *connLimiter) now() int64 { return int64(time.Since(l.epoch)) + 1 }

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
	lc := &limitedConn{Conn: c, l: l}
	lc.idleSince.Store(l.now())
	l.mu.Lock()
	l.open[lc] = struct{}{}
	l.mu.Unlock()
	return lc, nil
}

// shedIdlest closes the connection idle the longest, if any.
func (l *connLimiter) shedIdlest() {
	var oldest *limitedConn
	var since int64
	l.mu.Lock()
	for c := range l.open {
		if t := c.idleSince.Load(); t != 0 && (oldest == nil || t < since) {
			oldest, since = c, t
		}
	}
	l.mu.Unlock()
	// Claim it: a request that started meanwhile keeps its connection.
	if oldest != nil && oldest.idleSince.CompareAndSwap(since, 0) {
		oldest.served().Close()
	}
}

// ConnState tracks which connections have no request in progress: new ones
// (accepted, nothing read yet) and idle ones.
func (l *connLimiter) ConnState(c net.Conn, s http.ConnState) {
	lc := limitedOf(c)
	if lc == nil {
		return
	}
	switch s {
	case http.StateNew:
		outer := c // a copy: taking c's address would move it to the heap on every call
		lc.outer.Store(&outer)
		lc.idleSince.Store(l.now())
	case http.StateIdle:
		lc.idleSince.Store(l.now())
	default:
		lc.idleSince.Store(0)
	}
}

// limitedOf returns the limiter's connection under c: c itself, or the
// connection a TLS connection runs over.
func limitedOf(c net.Conn) *limitedConn {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = t.NetConn()
	}
	lc, _ := c.(*limitedConn)
	return lc
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
	// idleSince is when the connection was accepted or last became idle
	// (connLimiter.now); 0 while a request is in progress, or once closed.
	idleSince atomic.Int64
	// outer is the connection the http.Server serves: a TLS connection over
	// this one, or this one; nil until the server has seen it.
	outer atomic.Pointer[net.Conn]
}

// served returns the connection to close to shed c: the one the server
// serves, so that TLS says goodbye.
func (c *limitedConn) served() net.Conn {
	if o := c.outer.Load(); o != nil {
		return *o
	}
	return c
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.idleSince.Store(0)
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
