package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
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

type batchResult struct {
	Status       int      `json:"status"`
	Transactions []Entry  `json:"transactions"`
	Stock        Stock    `json:"stock"`
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
	base    string // "http://127.0.0.1:8080"
	hc      *http.Client
	timeout time.Duration // per request
	// auth is the Authorization header value, nil for none.
	auth []string
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

// newClient sizes the transport for conns concurrent requests: that many
// idle keep-alive connections are kept, and no cap on open connections
// makes an open-loop burst wait for one. Every dial is checked to be
// loopback.
func newClient(base string, conns int, timeout time.Duration) *client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil || !ap.Addr().IsLoopback() {
				return nil, fmt.Errorf("refusing to dial non-loopback address %q", addr)
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     0, // unlimited
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: base, hc: &http.Client{Transport: tr}, timeout: timeout}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// do sends one request and reads the whole answer. key is the
// Idempotency-Key of a single write ("" for none).
func (c *client) do(ctx context.Context, method, path, key string, body []byte) reply {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return reply{err: err, at: time.Now()}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("X-Actor", "bench")
	if c.auth != nil {
		req.Header["Authorization"] = c.auth
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{status: resp.StatusCode, err: err, at: time.Now()}
	}
	r := reply{status: resp.StatusCode, body: b, at: time.Now()}
	if resp.StatusCode >= 300 {
		if p, err := decodeProblem(b); err == nil && p.Code != "" {
			r.code = p.Code
		} else {
			r.code = "unparsed"
		}
	}
	return r
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
	return r, &b
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
