package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Entry is a ledger entry, with the fields the harness checks.
type Entry struct {
	ID             string `json:"id"`
	ProductID      string `json:"product_id"`
	Type           string `json:"type"`
	Quantity       int64  `json:"quantity"`
	Delta          int64  `json:"delta"`
	OnHand         int64  `json:"on_hand"`
	Reserved       int64  `json:"reserved"`
	Available      int64  `json:"available"`
	Version        int64  `json:"version"`
	ReservationID  string `json:"reservation_id"`
	Reason         string `json:"reason"`
	CreatedBy      string `json:"created_by"`
	IdempotencyKey string `json:"idempotency_key"`
}

// Stock is a product's balances.
type Stock struct {
	ProductID string `json:"product_id"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
	Version   int64  `json:"version"`
}

// Problem is an RFC 9457 error body.
type Problem struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	Available *int64 `json:"available"`
	OpIndex   *int   `json:"op_index"`
}

// writeResponse is the 201 of a single write. "transaction" repeats one
// of "transactions" and is not decoded.
type writeResponse struct {
	Transactions []Entry `json:"transactions"`
	Stock        Stock   `json:"stock"`
}

// batchResult is one op's result in a batch's answer; its "stock" is not
// decoded (nothing reads it).
type batchResult struct {
	Status       int      `json:"status"`
	Transactions []Entry  `json:"transactions"`
	Error        *Problem `json:"error"`
}

type batchResponse struct {
	Results []batchResult `json:"results"`
}

type ledgerPage struct {
	Transactions []Entry `json:"transactions"`
	NextAfter    *int64  `json:"next_after"`
}

// Op is one write, as a batch op or a single write's body.
type Op struct {
	ProductID      string `json:"product_id,omitempty"`
	Type           string `json:"type"`
	Quantity       int64  `json:"quantity,omitempty"`
	ReservationID  string `json:"reservation_id,omitempty"`
	TTLSeconds     int64  `json:"ttl_seconds,omitempty"`
	Reason         string `json:"reason,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// reply is the outcome of one HTTP request.
type reply struct {
	status int    // 0 when no response arrived
	code   string // the problem's code on a non-2xx answer
	body   []byte
	err    error     // transport error or timeout
	at     time.Time // when the whole answer (or the error) arrived
}

// unknown is true when the request may or may not have taken effect: no
// answer, or a 5xx.
func (r reply) unknown() bool { return r.err != nil || r.status >= 500 }

// statusKey names the outcome in the status breakdown.
func (r reply) statusKey() string {
	if r.err != nil {
		if errors.Is(r.err, context.DeadlineExceeded) {
			return "timeout"
		}
		return "transport_error"
	}
	return strconv.Itoa(r.status)
}

// client talks to one service over keep-alive connections.
type client struct {
	host    string        // "127.0.0.1:8080"
	timeout time.Duration // per request
	// auth is the Authorization header value, nil for none.
	auth []string
	// minimal asks for the short answers of writes and batches (Prefer:
	// return=minimal), whose entries carry no product or type: write and
	// batch take those from the ops.
	minimal bool
	// idle holds up to idleMax keep-alive connections not in use, the last
	// used on top: a request takes the top one or dials a new one, and puts
	// it back if the answer leaves it reusable and there is room. Last in,
	// first out (as net/http's Transport) keeps the connections in use few
	// after a burst, and lets the service's idle timeout close the rest.
	mu      sync.Mutex
	idle    []*conn
	idleMax int
}

// wbKeptMax is the largest request buffer a connection keeps for the next
// request: a batch of 1000 ops (about 128 KB) on each of 1024 idle
// connections would otherwise hold 130 MB.
const wbKeptMax = 16 << 10

// conn is one keep-alive connection and its read buffer.
type conn struct {
	net.Conn
	br *bufio.Reader
	wb []byte // the request being written, reused
}

// checkLoopback accepts only http URLs whose host is an address in
// 127.0.0.0/8 ("localhost" is taken as 127.0.0.1): the harness never loads
// another machine.
func checkLoopback(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", target, err)
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("target %q: want http://127.x.y.z:port", target)
	}
	host, port := u.Hostname(), u.Port()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(ip) {
		return "", fmt.Errorf("target %q: only loopback addresses (127.0.0.0/8) may be loaded", target)
	}
	if port == "" {
		port = "80"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// newClient keeps up to conns idle keep-alive connections; there is no cap
// on open ones, so an open-loop burst never waits for a connection.
//
// The client speaks HTTP/1.1 itself over those connections rather than
// through net/http's Transport: it writes each request in one write and
// reads the answer (readResponse) on the caller's goroutine. With
// the Transport's reader and writer goroutines per connection, and the
// handoffs between them, the harness used about 1.5 times the CPU per
// request in a checkout run (96-131 against 68-84 us, 6 pairs), on the 2
// cores it shares with the service it measures. A request is never
// retried: an answer that does not arrive is an unknown outcome.
func newClient(base string, conns int, timeout time.Duration) *client {
	return &client{host: strings.TrimPrefix(base, "http://"), timeout: timeout, idleMax: conns}
}

// dial opens a connection to the service, which checkLoopback made sure is
// a loopback address, by deadline.
func (c *client) dial(ctx context.Context, deadline time.Time) (*conn, error) {
	ap, err := netip.ParseAddrPort(c.host)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("refusing to dial non-loopback address %q", c.host)
	}
	d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.host)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: nc, br: bufio.NewReader(nc)}, nil
}

func (c *client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.Close()
	}
}

// put keeps cn for a later request, or closes it when idleMax are kept.
func (c *client) put(cn *conn) {
	c.mu.Lock()
	if len(c.idle) < c.idleMax {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.Close()
	}
}

// take returns an idle connection the service has not closed, or nil. A
// connection closed while it sat idle (the service's idle timeout) would
// fail the request sent on it, after the request was written: its outcome
// would be unknown, since nothing is retried.
func (c *client) take() *conn {
	for {
		c.mu.Lock()
		n := len(c.idle)
		if n == 0 {
			c.mu.Unlock()
			return nil
		}
		cn := c.idle[n-1]
		c.idle[n-1] = nil
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		if !idleClosed(cn) {
			return cn
		}
		cn.Close()
	}
}

// do sends one request and reads the whole answer, all within the client's
// timeout. key is the Idempotency-Key of a single write ("" for none).
func (c *client) do(ctx context.Context, method, path, key string, body []byte) reply {
	deadline := time.Now().Add(c.timeout)
	cn := c.take()
	if cn == nil {
		var err error
		if cn, err = c.dial(ctx, deadline); err != nil {
			return reply{err: outcomeErr(ctx, err), at: time.Now()}
		}
	}
	r, reuse := c.exchange(ctx, cn, deadline, method, path, key, body)
	if !reuse {
		cn.Close()
		return r
	}
	c.put(cn)
	return r
}

// outcomeErr is err as reply.statusKey classifies it: the context's error
// once it is done, a deadline passed as context.DeadlineExceeded.
func outcomeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return err
}

// exchange writes one request on cn and reads its answer, by deadline and
// while ctx lasts. reuse is false when cn must be closed.
func (c *client) exchange(ctx context.Context, cn *conn, deadline time.Time, method, path, key string, body []byte) (r reply, reuse bool) {
	cn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { cn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		// A cancel that came too late to stop the request may still be
		// setting the deadline: the connection is not used again.
		if !stop() {
			reuse = false
		}
	}()
	fail := func(err error) (reply, bool) {
		return reply{err: outcomeErr(ctx, err), at: time.Now()}, false
	}

	b := append(cn.wb[:0], method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nAccept: application/json\r\nX-Actor: bench\r\n"...)
	if body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	if key != "" {
		b = append(b, "Idempotency-Key: "...)
		b = append(b, key...)
		b = append(b, "\r\n"...)
	}
	if c.minimal && method == http.MethodPost {
		b = append(b, "Prefer: return=minimal\r\n"...)
	}
	for _, a := range c.auth {
		b = append(b, "Authorization: "...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	if cap(b) <= wbKeptMax {
		cn.wb = b
	}
	if _, err := cn.Write(b); err != nil {
		return fail(err)
	}
	status, body, keep, err := readResponse(cn.br, method)
	if err != nil {
		return fail(err)
	}
	r.status, r.body = status, body
	r.at = time.Now()
	if r.status >= 300 {
		if p, err := decodeProblem(r.body); err == nil && p.Code != "" {
			r.code = p.Code
		} else {
			r.code = "unparsed"
		}
	}
	return r, keep
}

// write posts one op to its product.
func (c *client) write(ctx context.Context, op Op) (reply, *writeResponse) {
	pid := op.ProductID
	key := op.IdempotencyKey
	op.ProductID, op.IdempotencyKey = "", ""
	body := appendOp(make([]byte, 0, 192), &op)
	r := c.do(ctx, http.MethodPost, "/v1/products/"+url.PathEscape(pid)+"/transactions", key, body)
	if r.err != nil || (r.status != 201 && r.status != 200) {
		return r, nil
	}
	var w writeResponse
	if err := decodeWrite(r.body, &w); err != nil {
		r.err = fmt.Errorf("decode write response: %w", err)
		return r, nil
	}
	op.ProductID = pid
	fromOp(w.Transactions, &op)
	return r, &w
}

// batch posts ops as one batch.
func (c *client) batch(ctx context.Context, atomic bool, ops []Op) (reply, *batchResponse) {
	body := appendBatch(make([]byte, 0, 64+len(ops)*128), atomic, ops)
	r := c.do(ctx, http.MethodPost, "/v1/batch", "", body)
	if r.err != nil || (r.status != 201 && r.status != 200) {
		return r, nil
	}
	var b batchResponse
	if err := decodeBatch(r.body, &b); err != nil {
		r.err = fmt.Errorf("decode batch response: %w", err)
		return r, nil
	}
	if len(b.Results) != len(ops) {
		r.err = fmt.Errorf("batch of %d ops answered %d results", len(ops), len(b.Results))
		return r, nil
	}
	for i := range b.Results {
		fromOp(b.Results[i].Transactions, &ops[i])
	}
	return r, &b
}

// fromOp fills in the product and type of the entries a write of op
// appended, which a return=minimal answer leaves out: the op's type, then
// the RELEASE of the rest of a partial COMMIT.
func fromOp(es []Entry, op *Op) {
	for j := range es {
		if es[j].ProductID == "" {
			es[j].ProductID = op.ProductID
		}
		if es[j].Type == "" {
			es[j].Type = op.Type
			if j > 0 {
				es[j].Type = "RELEASE"
			}
		}
	}
}

// stock reads a product's balances.
func (c *client) stock(ctx context.Context, pid string) (Stock, reply) {
	r := c.do(ctx, http.MethodGet, "/v1/products/"+url.PathEscape(pid), "", nil)
	var s Stock
	if r.err == nil && r.status == 200 {
		if err := json.Unmarshal(r.body, &s); err != nil {
			r.err = fmt.Errorf("decode stock: %w", err)
		}
	}
	return s, r
}

// ledgerPage reads up to limit entries after version after.
func (c *client) ledgerPage(ctx context.Context, pid string, after int64, limit int) (ledgerPage, error) {
	path := "/v1/products/" + url.PathEscape(pid) + "/transactions?after=" + strconv.FormatInt(after, 10) +
		"&limit=" + strconv.Itoa(limit)
	r := c.do(ctx, http.MethodGet, path, "", nil)
	var p ledgerPage
	if r.err != nil {
		return p, r.err
	}
	if r.status != 200 {
		return p, fmt.Errorf("GET %s: status %d (%s)", path, r.status, r.code)
	}
	if err := decodeLedgerPage(r.body, &p); err != nil {
		return p, fmt.Errorf("decode ledger page: %w", err)
	}
	return p, nil
}

// waitReady polls /readyz until it answers 200, for at most wait.
func (c *client) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		r := c.do(ctx, http.MethodGet, "/readyz", "", nil)
		if r.err == nil && r.status == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			if r.err != nil {
				return fmt.Errorf("not ready after %v: %w", wait, r.err)
			}
			return fmt.Errorf("not ready after %v: status %d", wait, r.status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bodyBytesMax bounds an answer's Content-Length: far above the largest
// answer the service gives (a batch of 1,000 ops, about 1 MB), so that a
// bad length fails the request instead of the harness.
const bodyBytesMax = 1 << 30

// readResponse reads one HTTP/1.1 answer to a request of method from br:
// its status, its whole body, and whether the connection may carry the
// next request. It reads only what the harness uses (the status line,
// Content-Length, Transfer-Encoding and Connection) and allocates only the
// body. http.ReadResponse, which builds a header map of every field, was
// 18% of the harness's CPU in a checkout run.
func readResponse(br *bufio.Reader, method string) (status int, body []byte, keep bool, err error) {
	for {
		status, body, keep, err = readOne(br, method)
		// An interim 1xx answer comes before the real one (101 switches
		// protocols, which the harness never asks for).
		if err != nil || status >= 200 || status == 101 {
			return status, body, keep && status != 101, err
		}
	}
}

// readOne reads one answer, or one interim 1xx answer, for readResponse.
func readOne(br *bufio.Reader, method string) (status int, body []byte, keep bool, err error) {
	line, err := readLine(br)
	if err != nil {
		return 0, nil, false, err
	}
	switch {
	case len(line) < 12 || (len(line) > 12 && line[12] != ' '):
		return 0, nil, false, fmt.Errorf("malformed status line %q", line)
	case string(line[:9]) == "HTTP/1.1 ":
		keep = true
	case string(line[:9]) != "HTTP/1.0 ":
		return 0, nil, false, fmt.Errorf("unsupported protocol in status line %q", line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, nil, false, fmt.Errorf("malformed status code in %q", line)
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, nil, false, fmt.Errorf("malformed status code in %q", line)
	}
	length, chunked := int64(-1), false
	for {
		if line, err = readLine(br); err != nil {
			return 0, nil, false, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, nil, false, fmt.Errorf("malformed header line %q", line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			n, perr := strconv.ParseUint(string(value), 10, 64)
			if perr != nil || n > bodyBytesMax || (length >= 0 && int64(n) != length) {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
			length = int64(n)
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) {
				return 0, nil, false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("connection")):
			// An HTTP/1.0 answer's "keep-alive" is not honoured: that
			// connection is closed after it.
			for _, opt := range bytes.Split(value, []byte(",")) {
				if bytes.EqualFold(bytes.TrimSpace(opt), []byte("close")) {
					keep = false
				}
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304 || method == "HEAD":
		return status, nil, keep, nil
	case chunked:
		if body, err = io.ReadAll(httputil.NewChunkedReader(br)); err != nil {
			return 0, nil, false, err
		}
		for { // trailer fields, up to the blank line
			if line, err = readLine(br); err != nil {
				return 0, nil, false, err
			}
			if len(line) == 0 {
				return status, body, keep, nil
			}
		}
	case length >= 0:
		body = make([]byte, length)
		if _, err = io.ReadFull(br, body); err != nil {
			return 0, nil, false, err
		}
		return status, body, keep, nil
	default: // the body runs to the end of the connection
		body, err = io.ReadAll(br)
		return status, body, false, err
	}
}

// readLine reads one line without its CRLF (or LF). The line is only valid
// until the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("header line longer than %d bytes", br.Size())
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
