package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileClients: slow headers, slow bodies, idle connections and huge
// headers cannot stop the server from serving others.
func TestHostileClients(t *testing.T) {
	s := start(t, t.TempDir(), "--read-header-timeout", "300ms", "--read-timeout", "600ms", "--idle-timeout", "500ms")
	host := strings.TrimPrefix(s.url, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closed reports whether the server closes c within d.
	closed := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.ReadAll(c)
		ne, ok := err.(net.Error)
		return err == nil || !(ok && ne.Timeout())
	}

	// A crowd of idle and half-open connections.
	var crowd []net.Conn
	for i := 0; i < 200; i++ {
		c := dial()
		if i%2 == 0 {
			fmt.Fprintf(c, "POST /v1/products/p/transactions HTTP/1.1\r\nHost: x\r\n") // headers never finish
		}
		crowd = append(crowd, c)
	}
	// Others are served meanwhile.
	if r := s.write("p", "k1", map[string]any{"type": "ADD", "quantity": 1}); r.status != 201 {
		t.Fatalf("write next to 200 hostile connections: %d", r.status)
	}
	// Slow headers and idle connections are closed by the timeouts.
	for i, c := range crowd[:10] {
		if !closed(c, 3*time.Second) {
			t.Errorf("connection %d still open after the header/idle timeout", i)
		}
	}

	// A slow body: headers promise 1000 bytes, a few trickle in.
	c := dial()
	fmt.Fprintf(c, "POST /v1/products/p/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: slow\r\nContent-Length: 1000\r\n\r\n{")
	done := make(chan bool)
	go func() { done <- closed(c, 5*time.Second) }()
	for i := 0; i < 5; i++ {
		time.Sleep(200 * time.Millisecond)
		c.Write([]byte(" "))
	}
	if !<-done {
		t.Error("slow body not cut off by the read timeout")
	}

	// Huge headers: 431, and the server still works.
	c = dial()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: %s\r\n\r\n", strings.Repeat("a", 200<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("200 KiB of headers: %v %v", resp, err)
	}
	c.Close()

	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Go(func() {
			if r := s.write("p", fmt.Sprintf("after-%d", i), map[string]any{"type": "ADD", "quantity": 1}); r.status != 201 {
				t.Errorf("write after the hostile clients: %d", r.status)
			}
		})
	}
	wg.Wait()
	for _, c := range crowd {
		c.Close()
	}
}
