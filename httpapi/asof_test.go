package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// asOfServer is a test server whose engine clock the test sets.
func asOfServer(t *testing.T, shards int) (*testServer, *atomic.Int64) {
	var now atomic.Int64
	now.Store(t0.UnixNano())
	ts := newTestServer(t, serverOptions{shards: shards, cfg: shard.Config{Clock: now.Load}})
	return ts, &now
}

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func TestStockAsOf(t *testing.T) {
	ts, now := asOfServer(t, 1)
	at := func(d time.Duration) { now.Store(t0.Add(d).UnixNano()) }
	at(0)
	ts.mustWrite("sku-1", `{"type":"ADD","quantity":10}`) // v1
	at(time.Second)
	ts.mustWrite("sku-1", `{"type":"RESERVE","quantity":3,"reservation_id":"o1"}`) // v2
	at(2 * time.Second)
	ts.mustWrite("sku-1", `{"type":"COMMIT","quantity":1,"reservation_id":"o1"}`) // v3 COMMIT, v4 RELEASE
	at(3 * time.Second)
	ts.mustWrite("sku-1", `{"type":"ADD","quantity":5}`) // v5

	type want struct {
		version, onHand, reserved int64
		updated                   time.Time
	}
	for _, c := range []struct {
		name, asOf string
		want       *want // nil: 404 not_found
	}{
		{"before the first entry", "2026-12-02T09:59:59.999999999Z", nil},
		{"long before", "1600-01-01T00:00:00Z", nil},
		{"exactly the first entry", "2026-12-02T10:00:00Z", &want{1, 10, 0, t0}},
		{"between two entries", "2026-12-02T10:00:00.5Z", &want{1, 10, 0, t0}},
		{"exactly the reservation", "2026-12-02T10:00:01.000000000Z", &want{2, 10, 3, t0.Add(time.Second)}},
		{"a partial commit and its release are one instant", "2026-12-02T10:00:02Z", &want{4, 9, 0, t0.Add(2 * time.Second)}},
		{"another offset, unescaped plus", "2026-12-02T11:00:02.5+01:00", &want{4, 9, 0, t0.Add(2 * time.Second)}},
		{"another offset, escaped plus", "2026-12-02T11:00:02.5%2B01:00", &want{4, 9, 0, t0.Add(2 * time.Second)}},
		{"the last entry", "2026-12-02T10:00:03Z", &want{5, 14, 0, t0.Add(3 * time.Second)}},
		{"the largest offsets", "2026-12-03T09:59:03+23:59", &want{5, 14, 0, t0.Add(3 * time.Second)}},
		{"ten fractional digits, the tenth dropped", "2026-12-02T10:00:00.9999999999Z", &want{1, 10, 0, t0}},
		{"far future", "9999-12-31T23:59:59Z", &want{5, 14, 0, t0.Add(3 * time.Second)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := ts.do(req{method: "GET", path: "/v1/products/sku-1?as_of=" + c.asOf})
			if c.want == nil {
				problem(t, w, http.StatusNotFound, "not_found")
				return
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
			}
			m := decodeJSON(t, w.Body.Bytes())
			got := want{int64(m["version"].(float64)), int64(m["on_hand"].(float64)), int64(m["reserved"].(float64)), time.Time{}}
			got.updated, _ = time.Parse(time.RFC3339Nano, m["updated_at"].(string))
			if got != *c.want {
				t.Errorf("got %+v, want %+v", got, *c.want)
			}
			if a := int64(m["available"].(float64)); a != got.onHand-got.reserved {
				t.Errorf("available %d, want %d", a, got.onHand-got.reserved)
			}
			if m["product_id"] != "sku-1" || len(m) != 6 {
				t.Errorf("body %v: want the six fields of a Stock", m)
			}
			if etag := w.Header().Get("ETag"); etag != `"`+strconv.FormatInt(c.want.version, 10)+`"` {
				t.Errorf("ETag %s, want the version %d", etag, c.want.version)
			}
		})
	}

	t.Run("a product that does not exist", func(t *testing.T) {
		problem(t, ts.do(req{method: "GET", path: "/v1/products/nope?as_of=2026-12-02T10:00:00Z"}), http.StatusNotFound, "not_found")
	})
	for _, q := range []string{
		"as_of=", "as_of", "as_of=yesterday", "as_of=2026-12-02", "as_of=2026-12-02T10:00:00",
		"as_of=2026-12-02%2010:00:00Z", "as_of=2026-12-02t10:00:00z", "as_of=1733133600", "as_of=2026-13-02T10:00:00Z",
		"as_of=2026-12-02T10:00:00Z&as_of=2026-12-02T10:00:00Z", "asof=2026-12-02T10:00:00Z",
		"as_of=2026-12-02T10:00:00Z&after=1", "as_of=%zz", "as_of=2026-12-02T10:00:00%2B24:00",
		"as_of=2026-12-02T10:00:00%2B00:60", "as_of=2026-12-02T10:00:00-23:60",
	} {
		t.Run("bad query "+q, func(t *testing.T) {
			problem(t, ts.do(req{method: "GET", path: "/v1/products/sku-1?" + q}), http.StatusBadRequest, "invalid_request")
		})
	}
}

// TestStockAsOfLongHistory makes the search take several steps: 1,000
// entries, one per millisecond, are more than one step of probes covers.
func TestStockAsOfLongHistory(t *testing.T) {
	ts, now := asOfServer(t, 1)
	const n = 1000
	for i := range n {
		now.Store(t0.Add(time.Duration(i) * time.Millisecond).UnixNano())
		ts.mustWrite("hot", `{"type":"ADD","quantity":1}`)
	}
	for _, v := range []int64{1, 2, 63, 64, 65, 500, 998, 999, 1000} {
		at := t0.Add(time.Duration(v-1) * time.Millisecond)
		for _, asOf := range []time.Time{at, at.Add(time.Millisecond - 1)} {
			w := ts.do(req{method: "GET", path: "/v1/products/hot?as_of=" + url.QueryEscape(asOf.Format(time.RFC3339Nano))})
			if w.Code != http.StatusOK {
				t.Fatalf("as_of %s: %d %s", asOf.Format(time.RFC3339Nano), w.Code, w.Body)
			}
			m := decodeJSON(t, w.Body.Bytes())
			if got := int64(m["version"].(float64)); got != v || int64(m["on_hand"].(float64)) != v {
				t.Errorf("as_of %s: version %d on_hand %v, want %d", asOf.Format(time.RFC3339Nano), got, m["on_hand"], v)
			}
		}
	}
}

// TestStockAsOfNeverTentative: a product held by a prepared atomic batch
// whose other shard has not made its part durable is not read, as of any
// time, until the batch resolves; then the read sees it.
func TestStockAsOfNeverTentative(t *testing.T) {
	ts, _ := asOfServer(t, 2)
	var pa, pb string
	for i := 0; pa == "" || pb == ""; i++ {
		id := "p" + strconv.Itoa(i)
		if shard.Route(id, 2) == 0 && pa == "" {
			pa = id
		} else if shard.Route(id, 2) == 1 && pb == "" {
			pb = id
		}
	}
	ts.mustWrite(pa, `{"type":"ADD","quantity":5}`)
	ts.mustWrite(pb, `{"type":"ADD","quantity":5}`)
	started, release := ts.journals[1].Hold()
	defer release()
	cart := make(chan int, 1)
	go func() {
		w := ts.do(req{method: "POST", path: "/v1/batch", body: `{"atomic":true,"ops":[` +
			`{"product_id":"` + pa + `","type":"REMOVE","quantity":2,"idempotency_key":"c1"},` +
			`{"product_id":"` + pb + `","type":"REMOVE","quantity":2,"idempotency_key":"c2"}]}`})
		cart <- w.Code
	}()
	<-started
	read := make(chan map[string]any, 1)
	go func() {
		w := ts.do(req{method: "GET", path: "/v1/products/" + pa + "?as_of=9999-01-01T00:00:00Z"})
		read <- decodeJSON(t, w.Body.Bytes())
	}()
	select {
	case m := <-read:
		t.Fatalf("read answered while the batch was in doubt: %v", m)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if code := <-cart; code != http.StatusCreated {
		t.Fatalf("cart: %d", code)
	}
	m := <-read
	if m["version"] != float64(2) || m["on_hand"] != float64(3) {
		t.Errorf("read after the batch: %v, want version 2, on_hand 3", m)
	}
}
