package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"
)

// pipeListener accepts in-memory connections, one per Accept.
type pipeListener struct{ peers chan net.Conn }

func newPipeListener() *pipeListener { return &pipeListener{peers: make(chan net.Conn, 1024)} }

func (p *pipeListener) Accept() (net.Conn, error) {
	c, peer := net.Pipe()
	p.peers <- peer
	return c, nil
}
func (p *pipeListener) Close() error   { return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// BenchmarkConnState is the limiter's cost per request: every request moves
// its connection to active and back to idle, from as many goroutines as
// the benchmark runs (64 connections on 2 cores).
func BenchmarkConnState(b *testing.B) {
	l := newConnLimiter(newPipeListener(), 1<<20)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := l.Accept()
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		l.ConnState(c, http.StateNew)
		for pb.Next() {
			l.ConnState(c, http.StateActive)
			l.ConnState(c, http.StateIdle)
		}
		l.ConnState(c, http.StateClosed)
	})
}

// TestConnLimiterSheds: at the limit, Accept closes the idle connection and
// never one with a request in progress; a connection served over TLS is
// found under its TLS layer and shed through it.
func TestConnLimiterSheds(t *testing.T) {
	pl := newPipeListener()
	l := newConnLimiter(pl, 1)
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	served := tls.Server(first, &tls.Config{})
	l.ConnState(served, http.StateNew)
	if lc := limitedOf(served); lc != first || lc.served() != net.Conn(served) {
		t.Fatalf("the TLS connection's limited connection is %p (want %p), served %v", lc, first, lc.served())
	}
	l.ConnState(served, http.StateActive)

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	select {
	case <-accepted:
		t.Fatal("a connection with a request in progress was shed")
	case <-time.After(5 * connShedPoll):
	}
	l.ConnState(served, http.StateIdle)
	var second net.Conn
	select {
	case second = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not shed")
	}
	peer := <-pl.peers
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the shed connection's peer can still read")
	}
	l.mu.Lock()
	_, stillOpen := l.open[first.(*limitedConn)]
	n := len(l.open)
	l.mu.Unlock()
	if stillOpen || n != 1 {
		t.Fatalf("open connections after the shed: %d, the shed one among them: %v", n, stillOpen)
	}
	second.Close()
	if len(l.slots) != 0 {
		t.Fatalf("%d slots taken after every connection closed", len(l.slots))
	}
}
