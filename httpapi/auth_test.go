package httpapi

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// testAuth returns access control with one principal of each role (named
// after it, "<role>-svc") and their secrets.
func testAuth(tb testing.TB, metricsOpen bool) (*Auth, map[Role]string) {
	tb.Helper()
	secrets := map[Role]string{}
	var recs []string
	for _, r := range []Role{RoleReader, RoleWriter, RoleAdmin} {
		secrets[r] = "inv_" + r.String() + "-secret-0123456789abcdefghijklmnopqrstuv"
		recs = append(recs, fmt.Sprintf(`{"name": %q, "role": %q, "sha256": %q}`, r.String()+"-svc", r.String(), HashSecret(secrets[r])))
	}
	k, err := ParseKeys([]byte("[" + strings.Join(recs, ",") + "]"))
	if err != nil {
		tb.Fatal(err)
	}
	return NewAuth(k, metricsOpen), secrets
}

// concretePath fills an echo pattern's parameters with valid ids.
func concretePath(pattern string) string {
	parts := strings.Split(pattern, "/")
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p, ":"):
			parts[i] = "id-" + p[1:]
		case p == "*":
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// wantAccess is the intended class of every route this package serves
// today. A route missing here still has to fall into a class
// (TestEveryRouteHasARole); this table checks that the classes land where
// they are meant to.
var wantAccess = map[string]access{
	"POST " + routeTransactions: accessWriter,
	"GET " + routeTransactions:  accessReader,
	"GET " + routeProduct:       accessReader,
	"GET " + routeReservation:   accessReader,
	"POST " + routeBatch:        accessWriter,
	"GET " + routeHealth:        accessOpen,
	"GET " + routeReady:         accessOpen,
	"GET " + routeOpenAPI:       accessOpen,
	"GET " + routeMetrics:       accessMetrics,
}

// TestEveryRouteHasARole enumerates the router's routes: each must fall
// into an access class, and each caller (no key, a bad key, each role) must
// be answered as its class says: 401 without a valid key where one is
// needed, 403 below the role, and past access control (no 401/403) at or
// above it, or everywhere on open routes.
func TestEveryRouteHasARole(t *testing.T) {
	for _, metricsOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("metrics-open=%v", metricsOpen), func(t *testing.T) {
			auth, secrets := testAuth(t, metricsOpen)
			ts := newTestServer(t, serverOptions{auth: auth})
			routes := ts.e.Routes()
			if len(routes) < len(wantAccess) {
				t.Fatalf("router has %d routes, want at least %d", len(routes), len(wantAccess))
			}
			seen := map[string]bool{}
			for _, rt := range routes {
				name := rt.Method + " " + rt.Path
				seen[name] = true
				class := routeAccess(rt.Method, rt.Path, concretePath(rt.Path))
				if class == accessUnassigned {
					t.Errorf("%s has no access class: put it under /v1/ (reader for GET, writer otherwise), /admin/ or /v1/admin/ (admin), or name it in routeAccess", name)
					continue
				}
				if want, ok := wantAccess[name]; ok && class != want {
					t.Errorf("%s: class %d, want %d", name, class, want)
				}
				need := auth.need(class)
				callers := []struct {
					name   string
					header string
					role   Role
				}{
					{"no key", "", 0},
					{"bad key", "Bearer inv_not-a-key", 0},
					{"reader", "Bearer " + secrets[RoleReader], RoleReader},
					{"writer", "Bearer " + secrets[RoleWriter], RoleWriter},
					{"admin", "Bearer " + secrets[RoleAdmin], RoleAdmin},
				}
				for _, c := range callers {
					var hdr []string
					if c.header != "" {
						hdr = []string{"Authorization", c.header}
					} else {
						hdr = []string{"Authorization", ""} // keep ts.token out
					}
					w := ts.do(req{method: rt.Method, path: concretePath(rt.Path), hdr: hdr})
					switch {
					case need == 0:
						if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
							t.Errorf("%s by %s: %d, want it open (%s)", name, c.name, w.Code, w.Body)
						}
					case c.role == 0:
						problem(t, w, http.StatusUnauthorized, "unauthorized")
						if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
							t.Errorf("%s by %s: WWW-Authenticate %q", name, c.name, w.Header().Get("WWW-Authenticate"))
						}
					case c.role < need:
						problem(t, w, http.StatusForbidden, "forbidden")
					default:
						if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
							t.Errorf("%s by %s: %d, want it past access control (%s)", name, c.name, w.Code, w.Body)
						}
					}
				}
			}
			for name := range wantAccess {
				if !seen[name] {
					t.Errorf("wantAccess names %s, which the router does not serve", name)
				}
			}
		})
	}
}

// TestRouteAccessClasses pins the classes of routes this branch does not
// serve: the console's static files, operational endpoints, unknown paths
// and methods.
func TestRouteAccessClasses(t *testing.T) {
	for _, c := range []struct {
		method, pattern, path string
		want                  access
	}{
		{"GET", "/ui/*", "/ui/app.js", accessOpen},
		{"GET", "/ui*", "/ui/", accessOpen},
		{"GET", "/ui", "/ui", accessOpen},
		{"GET", "", "/ui/index.html", accessOpen},
		{"GET", "", "/uix", accessReader},
		{"GET", "/uix", "/uix", accessUnassigned},
		{"GET", "", "/nowhere", accessReader},
		{"POST", "/v1/admin/snapshot", "/v1/admin/snapshot", accessAdmin},
		{"GET", "/admin/reconcile", "/admin/reconcile", accessAdmin},
		{"DELETE", routeProduct, "/v1/products/a", accessWriter},
		{"HEAD", routeProduct, "/v1/products/a", accessReader},
		{"GET", "/debug/pprof/", "/debug/pprof/", accessUnassigned},
	} {
		if got := routeAccess(c.method, c.pattern, c.path); got != c.want {
			t.Errorf("%s %q (%s): %d, want %d", c.method, c.pattern, c.path, got, c.want)
		}
	}
	auth, _ := testAuth(t, false)
	if got := auth.need(accessUnassigned); got != RoleAdmin {
		t.Errorf("unassigned needs %s, want admin (fail closed)", got)
	}
}

// TestUnknownPathsNeedAKey: without a key, an unknown path is 401 like a
// real one, so probing tells nothing; with one it is 404. /ui/ stays open.
func TestUnknownPathsNeedAKey(t *testing.T) {
	auth, secrets := testAuth(t, false)
	ts := newTestServer(t, serverOptions{auth: auth})
	problem(t, ts.do(req{method: "GET", path: "/nowhere"}), http.StatusUnauthorized, "unauthorized")
	problem(t, ts.do(req{method: "GET", path: "/nowhere", hdr: []string{"Authorization", "Bearer " + secrets[RoleReader]}}),
		http.StatusNotFound, "not_found")
	if w := ts.do(req{method: "GET", path: "/ui/index.html"}); w.Code != http.StatusOK {
		t.Errorf("GET /ui/index.html without a key: %d, want 200 (the console's files are open)", w.Code)
	}
	problem(t, ts.do(req{method: "GET", path: "/ui/nothing.js"}), http.StatusNotFound, "not_found")
	// A known path, a method it does not serve: 405 to any key, 401 without.
	for _, role := range []Role{RoleReader, RoleWriter} {
		for _, path := range []string{"/v1/batch", "/v1/products/a", "/v1/products/a/reservations/r"} {
			w := ts.do(req{method: "PUT", path: path, hdr: []string{"Authorization", "Bearer " + secrets[role]}})
			problem(t, w, http.StatusMethodNotAllowed, "method_not_allowed")
		}
	}
	problem(t, ts.do(req{method: "PUT", path: "/v1/batch"}), http.StatusUnauthorized, "unauthorized")
	// A method the route serves still needs its role.
	problem(t, ts.do(req{method: "POST", path: "/v1/batch", hdr: []string{"Authorization", "Bearer " + secrets[RoleReader]}}),
		http.StatusForbidden, "forbidden")
}

// TestBearerForms checks how the Authorization header is read: only one
// "Bearer <secret>" of a known secret passes.
func TestBearerForms(t *testing.T) {
	auth, secrets := testAuth(t, false)
	ts := newTestServer(t, serverOptions{auth: auth})
	s := secrets[RoleReader]
	flip := func(s string, i int) string { b := []byte(s); b[i] ^= 1; return string(b) }
	for _, c := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"valid", []string{"Authorization", "Bearer " + s}, http.StatusNotFound},
		{"scheme in lower case", []string{"Authorization", "bearer " + s}, http.StatusNotFound},
		{"missing", nil, http.StatusUnauthorized},
		{"empty", []string{"Authorization", ""}, http.StatusUnauthorized},
		{"no secret", []string{"Authorization", "Bearer "}, http.StatusUnauthorized},
		{"basic", []string{"Authorization", "Basic " + s}, http.StatusUnauthorized},
		{"no scheme", []string{"Authorization", s}, http.StatusUnauthorized},
		{"twice", []string{"Authorization", "Bearer " + s, "Authorization", "Bearer " + s}, http.StatusUnauthorized},
		{"first byte off", []string{"Authorization", "Bearer " + flip(s, 0)}, http.StatusUnauthorized},
		{"last byte off", []string{"Authorization", "Bearer " + flip(s, len(s)-1)}, http.StatusUnauthorized},
		{"prefix", []string{"Authorization", "Bearer " + s[:len(s)-1]}, http.StatusUnauthorized},
		{"extended", []string{"Authorization", "Bearer " + s + "x"}, http.StatusUnauthorized},
		// Someone who read the keys file holds hashes, not keys.
		{"the stored hash", []string{"Authorization", "Bearer " + HashSecret(s)}, http.StatusUnauthorized},
	} {
		w := ts.do(req{method: "GET", path: "/v1/products/none", hdr: c.hdr})
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, w.Code, c.want, w.Body)
		}
		if c.want == http.StatusUnauthorized {
			problem(t, w, http.StatusUnauthorized, "unauthorized")
		}
	}
	ts.token = secrets[RoleAdmin] // /metrics is admin-only
	if got := counters(t, ts)["unauthorized"]; got != 11 {
		t.Errorf("inventory_rejections_total{code=unauthorized} = %v, want the 11 401s", got)
	}
}

// TestDigestCompare: the secret is hashed before anything compares it, so
// the only comparison an attacker's bytes reach is of SHA-256 digests, done
// with crypto/subtle. digestEqual must look at every byte.
func TestDigestCompare(t *testing.T) {
	a := sha256.Sum256([]byte("a secret"))
	if !digestEqual(&a, &a) {
		t.Fatal("equal digests compare unequal")
	}
	for i := range a {
		b := a
		b[i] ^= 0x80
		if digestEqual(&a, &b) {
			t.Errorf("digests differing at byte %d compare equal", i)
		}
	}
	k, _ := testAuth(t, false)
	for _, p := range k.Keys().byDigest {
		if strings.Contains(fmt.Sprintf("%+v", *p), "secret") {
			t.Errorf("a principal holds its secret: %+v", *p)
		}
	}
}

// TestCreatedByIsThePrincipal: with access control on, created_by is the
// principal's name whatever X-Actor says, on single writes and batches.
func TestCreatedByIsThePrincipal(t *testing.T) {
	auth, secrets := testAuth(t, false)
	ts := newTestServer(t, serverOptions{auth: auth, token: secrets[RoleWriter]})
	e := ts.mustWrite("sku-1", `{"type":"ADD","quantity":5}`, "X-Actor", "mallory")
	if got := e["transaction"].(map[string]any)["created_by"]; got != "writer-svc" {
		t.Errorf("single write: created_by %v, want writer-svc", got)
	}
	// An X-Actor that would be 400 without access control is ignored too.
	e = ts.mustWrite("sku-1", `{"type":"ADD","quantity":5}`, "X-Actor", "not an id!")
	if got := e["transaction"].(map[string]any)["created_by"]; got != "writer-svc" {
		t.Errorf("single write, bad X-Actor: created_by %v, want writer-svc", got)
	}
	w := ts.do(req{method: "POST", path: "/v1/batch", hdr: []string{"X-Actor", "mallory", "Authorization", "Bearer " + secrets[RoleAdmin]},
		body: `{"atomic": true, "ops": [{"product_id": "sku-2", "type": "ADD", "quantity": 1, "idempotency_key": "b1"}]}`})
	if w.Code != http.StatusCreated {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	res := decodeJSON(t, w.Body.Bytes())["results"].([]any)[0].(map[string]any)
	if got := res["transaction"].(map[string]any)["created_by"]; got != "admin-svc" {
		t.Errorf("batch: created_by %v, want admin-svc", got)
	}
}

// TestKeysSwap: a new Keys takes effect for the next request; requests
// racing with the swap see either set whole (run under -race).
func TestKeysSwap(t *testing.T) {
	auth, secrets := testAuth(t, false)
	ts := newTestServer(t, serverOptions{auth: auth})
	get := func(secret string) int {
		return ts.do(req{method: "GET", path: "/v1/products/none", hdr: []string{"Authorization", "Bearer " + secret}}).Code
	}
	next, err := ParseKeys([]byte(`[{"name": "new-svc", "role": "reader", "sha256": "` + HashSecret("inv_new") + `"}]`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if c := get(secrets[RoleReader]); c != http.StatusNotFound && c != http.StatusUnauthorized {
					t.Errorf("during the swap: %d", c)
				}
			}
		}()
	}
	old := auth.Keys()
	for range 20 {
		auth.Store(next)
		auth.Store(old)
	}
	auth.Store(next)
	wg.Wait()
	if c := get(secrets[RoleReader]); c != http.StatusUnauthorized {
		t.Errorf("old key after the swap: %d, want 401", c)
	}
	if c := get("inv_new"); c != http.StatusNotFound {
		t.Errorf("new key after the swap: %d, want 404 (past access control)", c)
	}
}

// TestParseKeys refuses every malformed keys file with a reason.
func TestParseKeys(t *testing.T) {
	h := HashSecret("s")
	good := `[{"name": "a", "role": "reader", "sha256": "` + h + `"}, {"name": "b", "role": "admin", "sha256": "` + HashSecret("t") + `"}]`
	k, err := ParseKeys([]byte(good))
	if err != nil || k.Len() != 2 {
		t.Fatalf("good file: %v, %v", k, err)
	}
	if k, err := ParseKeys([]byte(" [] \n")); err != nil || k.Len() != 0 {
		t.Errorf("empty list: %v, %v", k, err)
	}
	rec := func(name, role, hash string) string {
		return fmt.Sprintf(`{"name": %q, "role": %q, "sha256": %q}`, name, role, hash)
	}
	for _, c := range []struct{ name, file, want string }{
		{"not json", `nope`, "keys file"},
		{"an object", `{"name": "a"}`, "keys file"},
		{"null", `null`, "JSON array"},
		{"trailing data", `[] []`, "after the array"},
		{"unknown field", `[{"name": "a", "role": "reader", "sha256": "` + h + `", "secret": "s"}]`, "unknown field"},
		{"bad role", "[" + rec("a", "root", h) + "]", "role"},
		{"bad name", "[" + rec("a b", "reader", h) + "]", "name"},
		{"empty name", "[" + rec("", "reader", h) + "]", "name"},
		{"reserved name system", "[" + rec("system", "admin", h) + "]", "reserved"},
		{"reserved name anonymous", "[" + rec("anonymous", "admin", h) + "]", "reserved"},
		{"duplicate name", "[" + rec("a", "reader", h) + "," + rec("a", "admin", HashSecret("t")) + "]", "twice"},
		{"duplicate secret", "[" + rec("a", "reader", h) + "," + rec("b", "admin", h) + "]", "same secret"},
		{"short hash", "[" + rec("a", "reader", h[:62]) + "]", "hex digits"},
		{"not hex", "[" + rec("a", "reader", "zz"+h[2:]) + "]", "sha256"},
	} {
		if _, err := ParseKeys([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one naming %q", c.name, err, c.want)
		}
	}
}

// BenchmarkKeysLookup is what access control adds to a request: one
// SHA-256 of the secret, one map lookup, one constant-time compare. A miss
// that shares all but the last byte with a key costs the same as any miss.
func BenchmarkKeysLookup(b *testing.B) {
	auth, secrets := testAuth(b, false)
	k := auth.Keys()
	s := secrets[RoleWriter]
	near := s[:len(s)-1] + "!"
	for _, c := range []struct{ name, secret string }{{"hit", s}, {"miss-last-byte", near}, {"miss-other", "inv_other-secret-abcdefghijklmnopqrstuvwxyz0123"}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k.lookup(c.secret)
			}
		})
	}
}
