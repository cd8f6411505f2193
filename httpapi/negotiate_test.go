package httpapi

import (
	"net/http"
	"testing"
)

// TestResponseFormat is the content negotiation of RFC 9110 §12.5.1 as
// openapi.json states it: each representation takes the q of the most
// specific range that matches it, q=0 is "not acceptable", a range with a
// malformed q is unusable, msgpack is sent only when named, and JSON is the
// default for everything else.
func TestResponseFormat(t *testing.T) {
	const J, M = formatJSON, formatMsgpack
	cases := []struct {
		name   string
		accept []string
		want   format
	}{
		{"no Accept", nil, J},
		{"empty", []string{""}, J},
		{"msgpack", []string{"application/msgpack"}, M},
		{"msgpack upper case", []string{"APPLICATION/MSGPACK"}, M},
		{"x-msgpack", []string{"application/x-msgpack"}, M},
		{"vnd.msgpack with q", []string{"application/vnd.msgpack;q=0.8"}, M},
		{"json", []string{"application/json"}, J},
		{"anything", []string{"*/*"}, J},
		{"application/*", []string{"application/*"}, J},
		{"unrelated type", []string{"text/html"}, J},
		{"not a media range", []string{"msgpack"}, J},

		// q=0 means not acceptable.
		{"msgpack q=0", []string{"application/msgpack;q=0"}, J},
		{"msgpack q=0 spaced", []string{"application/msgpack ; q=0"}, J},
		{"msgpack Q=0", []string{"application/msgpack;Q=0"}, J},
		{"msgpack q=0.000", []string{"application/msgpack;q=0.000"}, J},
		{"q=0 after another parameter", []string{"application/msgpack;charset=x;q=0"}, J},
		{"q=0 alias among aliases", []string{"application/msgpack;q=0, application/x-msgpack"}, J},
		{"q=0 repeated range", []string{"application/msgpack, application/msgpack;q=0"}, J},
		{"q=0 overrides a wildcard", []string{"application/msgpack;q=0, application/*"}, J},
		{"smallest q", []string{"application/msgpack;q=0.001"}, M},
		{"q=1.000", []string{"application/msgpack;q=1.000"}, M},

		// A malformed q makes its range unusable.
		{"q=abc", []string{"application/msgpack;q=abc"}, J},
		{"q=1.5", []string{"application/msgpack;q=1.5"}, J},
		{"q=-1", []string{"application/msgpack;q=-1"}, J},
		{"q=2", []string{"application/msgpack;q=2"}, J},
		{"q=.5", []string{"application/msgpack;q=.5"}, J},
		{"q=0.0001", []string{"application/msgpack;q=0.0001"}, J},
		{"q=1.001", []string{"application/msgpack;q=1.001"}, J},
		{"q empty", []string{"application/msgpack;q="}, J},
		{"q quoted", []string{`application/msgpack;q="1"`}, J},
		{"q twice", []string{"application/msgpack;q=1;q=1"}, J},
		{"q=1e0", []string{"application/msgpack;q=1e0"}, J},
		{"malformed next to a good range", []string{"application/msgpack;q=x, application/msgpack;q=0.5"}, M},
		{"malformed json range ignored", []string{"application/json;q=x, application/msgpack;q=0.1"}, M},

		// Preference between the two.
		{"msgpack preferred", []string{"application/json;q=0.5, application/msgpack"}, M},
		{"json preferred", []string{"application/json, application/msgpack;q=0.9"}, J},
		{"tie goes to msgpack", []string{"application/json, application/msgpack"}, M},
		{"tie either order", []string{"application/msgpack;q=0.5, application/json;q=0.5"}, M},
		{"json not acceptable", []string{"application/json;q=0, application/msgpack;q=0.1"}, M},
		{"neither acceptable", []string{"application/json;q=0, application/msgpack;q=0"}, J},
		{"wildcard prefers json", []string{"application/msgpack;q=0.5, */*"}, J},
		{"application/* prefers json", []string{"application/msgpack;q=0.5, application/*"}, J},
		{"wildcard below msgpack", []string{"application/msgpack;q=0.5, */*;q=0.1"}, M},
		{"wildcard tie", []string{"application/msgpack, */*"}, M},
		{"wildcard refused, msgpack named", []string{"*/*;q=0, application/msgpack"}, M},
		{"specific json beats wildcard", []string{"application/json;q=0.1, */*, application/msgpack;q=0.5"}, M},
		{"msgpack only via a wildcard", []string{"application/json;q=0.5, */*"}, J},
		{"two header lines", []string{"application/json;q=0.1", "application/msgpack"}, M},
		{"two header lines, q=0", []string{"application/msgpack;q=0", "*/*"}, J},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.accept != nil {
				h["Accept"] = tc.accept
			}
			if got := responseFormat(h); got != tc.want {
				t.Errorf("Accept %q: got %v, want %v", tc.accept, got, tc.want)
			}
		})
	}
}

func (f format) String() string {
	if f == formatMsgpack {
		return "msgpack"
	}
	return "json"
}

// TestNegotiatedOverHTTP: a client that refuses msgpack with q=0, or sends
// a malformed q, is answered in JSON through the whole stack.
func TestNegotiatedOverHTTP(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":1}`)
	for _, accept := range []string{"application/msgpack;q=0", "application/msgpack;q=2", "application/msgpack;q=oops"} {
		w := ts.do(req{method: "GET", path: "/v1/products/p", hdr: []string{"Accept", accept}})
		if ct := w.Header().Get("Content-Type"); w.Code != http.StatusOK || ct != mediaJSON {
			t.Errorf("Accept %q: %d Content-Type %q, want 200 %s", accept, w.Code, ct, mediaJSON)
		}
	}
	w := ts.do(req{method: "GET", path: "/v1/products/p", hdr: []string{"Accept", "application/msgpack;q=0.5"}})
	if ct := w.Header().Get("Content-Type"); ct != mediaMsgpack {
		t.Errorf("Accept msgpack;q=0.5: Content-Type %q", ct)
	}
}
