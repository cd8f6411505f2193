package httpapi

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/inventory-ledger/inventory/httpapi/ui"
)

var consoleScreenshot = flag.String("console-screenshot", "",
	"write the console test's screenshot to this file (default: the test's temp dir)")

// xssReasons are reasons that are markup: the console must show them as
// text. Each would set document.title to "pwned" if it ran.
var xssReasons = []string{
	`<img src=x onerror="document.title='pwned'">`,
	`</td></tr></table><script>document.title='pwned'</script><b>bold?</b>`,
}

// gate stands in for access control in front of the API: while on, a /v1
// call needs "Authorization: Bearer good" (401 without a token, 403 with
// another). It records the Authorization header of every call.
type gate struct {
	next http.Handler
	on   atomic.Bool
	mu   sync.Mutex
	auth []string
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		a := r.Header.Get("Authorization")
		g.mu.Lock()
		g.auth = append(g.auth, a)
		g.mu.Unlock()
		if g.on.Load() && a != "Bearer good" {
			status, code := http.StatusUnauthorized, "unauthorized"
			if a != "" {
				status, code = http.StatusForbidden, "forbidden"
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"type":"urn:inventory:problem:%s","title":"%s","status":%d,"detail":"test gate: %s","code":"%s"}`,
				code, code, status, code, code)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *gate) takeAuth() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.auth
	g.auth = nil
	return a
}

// TestConsole loads the console in headless Chromium against a served,
// seeded ledger: it looks a product up, checks the stock card and the
// ledger rows against the API, pages and filters the ledger, shows markup
// in reasons as text, opens a reservation, checks the health strip and the
// token handling, and saves a screenshot.
func TestConsole(t *testing.T) {
	b := startBrowser(t, 1280, 1000)
	ts := newTestServer(t, serverOptions{shards: 2, engineMetrics: true})
	g := &gate{next: ts.e}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)

	const pid = "ui:sku@1"
	ts.mustWrite(pid, `{"type":"ADD","quantity":500,"reason":"delivery 1"}`, "X-Actor", "warehouse")
	for _, r := range xssReasons {
		b, _ := json.Marshal(r)
		ts.mustWrite(pid, `{"type":"ADD","quantity":1,"reason":`+string(b)+`}`)
	}
	ts.mustWrite(pid, `{"type":"RESERVE","quantity":5,"reservation_id":"order-partial","reason":"checkout"}`)
	for i := range 120 {
		ts.mustWrite(pid, fmt.Sprintf(`{"type":"RESERVE","quantity":1,"reservation_id":"order-%d"}`, i))
		switch i {
		case 40:
			ts.mustWrite(pid, `{"type":"REMOVE","quantity":180,"reason":"sold in store"}`)
		case 80:
			ts.mustWrite(pid, `{"type":"ADD","quantity":250,"reason":"delivery 2"}`, "X-Actor", "warehouse")
		case 100:
			ts.mustWrite(pid, `{"type":"RETURN","quantity":20,"reason":"customer return"}`)
		}
		switch i % 3 {
		case 0:
			ts.mustWrite(pid, fmt.Sprintf(`{"type":"COMMIT","reservation_id":"order-%d"}`, i))
		case 1:
			ts.mustWrite(pid, fmt.Sprintf(`{"type":"RELEASE","reservation_id":"order-%d"}`, i))
		}
	}
	ts.mustWrite(pid, `{"type":"COMMIT","quantity":2,"reservation_id":"order-partial","reason":"paid"}`)
	ts.mustWrite(pid, `{"type":"REMOVE","quantity":3,"reason":"damaged"}`)

	apiGet := func(path string) map[string]any {
		t.Helper()
		w := ts.do(req{method: "GET", path: path})
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return decodeJSON(t, w.Body.Bytes())
	}
	esc := "/v1/products/ui:sku@1"
	stock := apiGet(esc)
	version := int64(stock["version"].(float64))
	var all []map[string]any
	for after := int64(0); after < version; after += 1000 {
		for _, e := range apiGet(fmt.Sprintf("%s/transactions?after=%d&limit=1000", esc, after))["transactions"].([]any) {
			all = append(all, e.(map[string]any))
		}
	}

	// The page itself: served with its policy.
	res, err := http.Get(srv.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("/ui/ Content-Security-Policy %q", csp)
	}

	// Look the product up through the header form.
	b.navigate(srv.URL + "/ui/")
	b.waitFor("the home view", `!!document.querySelector('#view [data-ready] #home-product')`)
	b.eval(fmt.Sprintf(`(() => { document.getElementById("product-input").value = %q;
		document.getElementById("product-form").requestSubmit(); return true })()`, pid), nil)
	waitRoute := func(what, hash string) {
		t.Helper()
		b.waitFor(what, fmt.Sprintf(`(() => { const v = document.querySelector('#view > div');
			return !!v && v.dataset.route === %q && v.dataset.ready === "true" })()`, hash))
	}
	productHash := "#/products/ui%3Asku%401"
	waitRoute("the product page", productHash)

	var card map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll('.stock [data-k]')].map(n => [n.dataset.k, n.textContent]))`, &card)
	for _, k := range []string{"on_hand", "reserved", "available", "version", "updated_at"} {
		if want := fmt.Sprint(stock[k]); card[k] != want {
			t.Errorf("stock card %s = %q, API says %q", k, card[k], want)
		}
	}

	// checkRows compares the table with the API's entries want.
	checkRows := func(page string, want []map[string]any) {
		t.Helper()
		got := ledgerRows(b)
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", page, len(got), len(want))
		}
		for i, e := range want {
			for _, k := range []string{"version", "type", "quantity", "delta", "on_hand", "reserved", "available",
				"reason", "created_by", "created_at", "reservation_id", "idempotency_key"} {
				w := ""
				if v, ok := e[k]; ok {
					w = fmt.Sprint(v)
				}
				if k == "delta" && e[k].(float64) > 0 {
					w = "+" + w
				}
				if got[i][k] != w {
					t.Errorf("%s row %d %s = %q, API says %q", page, i, k, got[i][k], w)
				}
			}
		}
	}
	checkRows("page 1", all[:100])

	// Markup in a reason is text: the cell holds it verbatim, no element
	// came from it, and its script did not run.
	var xss struct {
		Reasons []string
		Imgs    int
		Scripts int
		Bold    int
		Title   string
	}
	b.eval(`({Reasons: [...document.querySelectorAll('td[data-k=reason]')].map(td => td.textContent),
		Imgs: document.querySelectorAll('#view img').length, Scripts: document.querySelectorAll('#view script').length,
		Bold: document.querySelectorAll('#view b').length, Title: document.title})`, &xss)
	for _, r := range xssReasons {
		if !slices.Contains(xss.Reasons, r) {
			t.Errorf("reason %q is not shown as text; reasons shown: %q", r, xss.Reasons[:4])
		}
	}
	if xss.Imgs != 0 || xss.Scripts != 0 || xss.Bold != 0 || xss.Title == "pwned" {
		t.Errorf("markup from a reason became elements: %d img, %d script, %d b, title %q", xss.Imgs, xss.Scripts, xss.Bold, xss.Title)
	}

	// Page on with Next.
	b.eval(`document.getElementById("page-next").click(), true`, nil)
	waitRoute("page 2", productHash+"?after=100&limit=100")
	checkRows("page 2", all[100:200])

	// Filter by type: the first 100 RESERVE entries.
	b.eval(`(() => { const s = document.getElementById("type-filter"); s.value = "RESERVE";
		s.dispatchEvent(new Event("change")); return true })()`, nil)
	waitRoute("RESERVE entries", productHash+"?limit=100&type=RESERVE")
	var reserves []map[string]any
	for _, e := range all {
		if e["type"] == "RESERVE" {
			reserves = append(reserves, e)
		}
	}
	checkRows("RESERVE filter", reserves[:100])
	b.eval(`document.getElementById("page-next").click(), true`, nil)
	waitRoute("RESERVE page 2", fmt.Sprintf("%s?after=%v&limit=100&type=RESERVE", productHash, reserves[99]["version"]))
	checkRows("RESERVE filter page 2", reserves[100:])

	// Open a reservation from its link in the ledger: a partial commit, so
	// its entries are a RESERVE and, later, a COMMIT and a RELEASE.
	b.navigate(srv.URL + "/ui/" + productHash)
	waitRoute("the product page again", productHash)
	b.eval(`document.querySelector('a[href$="/reservations/order-partial"]').click(), true`, nil)
	waitRoute("the reservation page", productHash+"/reservations/order-partial")
	hold := apiGet(esc + "/reservations/order-partial")
	b.waitFor("the reservation's entries", `!!document.querySelector('#view table.ledger')`)
	var facts map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll('table.facts td')].map(n => [n.dataset.k, n.textContent]))`, &facts)
	for _, k := range []string{"state", "quantity", "created_at", "expires_at", "settled_at"} {
		if want := fmt.Sprint(hold[k]); facts[k] != want {
			t.Errorf("reservation %s = %q, API says %q", k, facts[k], want)
		}
	}
	var holdEntries []map[string]any
	for _, e := range all {
		if e["reservation_id"] == "order-partial" {
			holdEntries = append(holdEntries, e)
		}
	}
	if len(holdEntries) != 3 {
		t.Fatalf("seeded order-partial has %d entries, want 3", len(holdEntries))
	}
	got := ledgerRows(b)
	if len(got) != 3 {
		t.Fatalf("reservation page shows %d entries, want 3", len(got))
	}
	for i, e := range holdEntries {
		if got[i]["version"] != fmt.Sprint(e["version"]) || got[i]["type"] != e["type"] {
			t.Errorf("reservation entry %d: version %s type %s, API says %v %v", i, got[i]["version"], got[i]["type"], e["version"], e["type"])
		}
	}

	// The lookup form of the home page: a released hold.
	b.navigate(srv.URL + "/ui/")
	b.waitFor("the home view", `!!document.querySelector('#view [data-ready] #home-reservation')`)
	b.eval(fmt.Sprintf(`(() => { document.getElementById("home-product").value = %q;
		document.getElementById("home-reservation").value = "order-1";
		document.getElementById("home-reservation").form.requestSubmit(); return true })()`, pid), nil)
	waitRoute("the looked-up reservation", productHash+"/reservations/order-1")
	b.eval(`Object.fromEntries([...document.querySelectorAll('table.facts td')].map(n => [n.dataset.k, n.textContent]))`, &facts)
	got = ledgerRows(b)
	if facts["state"] != "released" || len(got) != 2 || got[0]["type"] != "RESERVE" || got[1]["type"] != "RELEASE" {
		t.Errorf("order-1 shows state %q and entries %v, want released, RESERVE then RELEASE", facts["state"], got)
	}

	// An active hold, by its deep link: not settled, one entry.
	b.navigate(srv.URL + "/ui/" + productHash + "/reservations/order-2")
	waitRoute("an active hold", productHash+"/reservations/order-2")
	b.eval(`Object.fromEntries([...document.querySelectorAll('table.facts td')].map(n => [n.dataset.k, n.textContent]))`, &facts)
	got = ledgerRows(b)
	if facts["state"] != "active" || facts["settled_at"] != "—" || len(got) != 1 || got[0]["type"] != "RESERVE" {
		t.Errorf("order-2 shows %v and entries %v, want active, not settled, one RESERVE", facts, got)
	}

	// A product with no entries: the API's 404, shown as such.
	b.navigate(srv.URL + "/ui/#/products/nothing-here")
	waitRoute("an unknown product", "#/products/nothing-here")
	var shown string
	b.eval(`document.querySelector('#view .problem').textContent`, &shown)
	if !strings.HasPrefix(shown, "404 not_found") {
		t.Errorf("unknown product shows %q, want the 404 problem", shown)
	}

	// The stock at a time.
	asOf := all[50]["created_at"].(string)
	if w := ts.do(req{method: "GET", path: esc + "?as_of=" + url.QueryEscape(asOf)}); w.Code != 200 {
		t.Errorf("GET ?as_of=%s: %d %s", asOf, w.Code, w.Body)
	} else {
		want := decodeJSON(t, w.Body.Bytes())
		b.navigate(srv.URL + "/ui/" + productHash)
		waitRoute("the product page for as_of", productHash)
		b.eval(fmt.Sprintf(`(() => { document.getElementById("asof-input").value = %q;
			document.querySelector('#asof-input').form.requestSubmit(); return true })()`, asOf), nil)
		b.waitFor("the as-of card", `!!document.querySelector('#asof-result .stock')`)
		var asof map[string]string
		b.eval(`Object.fromEntries([...document.querySelectorAll('#asof-result [data-k]')].map(n => [n.dataset.k, n.textContent]))`, &asof)
		for _, k := range []string{"on_hand", "reserved", "available", "version"} {
			if w := fmt.Sprint(want[k]); asof[k] != w {
				t.Errorf("as-of %s = %q, API says %q", k, asof[k], w)
			}
		}
	}

	// Health at a glance.
	b.waitFor("the health strip", `!!document.querySelector('#health [data-k=shards]')`)
	var health map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll('#health [data-k]')].map(n => [n.dataset.k, n.textContent]))`, &health)
	if health["ready"] != "yes" || health["shards"] != "2" || health["failed"] != "none" || !strings.HasSuffix(health["replay"], " s") {
		t.Errorf("health strip %v, want ready yes, 2 shards, none failed, a replay time", health)
	}

	// The screenshot: the product page, first page of its ledger.
	b.navigate(srv.URL + "/ui/" + productHash + "?limit=25")
	waitRoute("the product page for the screenshot", productHash+"?limit=25")
	b.waitFor("the chart", `!!document.querySelector('svg.chart polyline')`)
	b.waitFor("the health strip", `!!document.querySelector('#health [data-k=shards]')`)
	png := b.screenshot()
	if !strings.HasPrefix(string(png), "\x89PNG") {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	out := *consoleScreenshot
	if out == "" {
		out = filepath.Join(t.TempDir(), "console.png")
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(png))

	// With access control on: 401 asks for a token, a wrong one is 403,
	// the right one is sent on every call and kept out of the page, the
	// URL and storage.
	if p := b.takeProblems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}
	g.on.Store(true)
	b.navigate(srv.URL + "/ui/" + productHash)
	b.waitFor("the 401 banner", `!document.getElementById("banner").hidden &&
		document.getElementById("banner").textContent.startsWith("401 unauthorized")`)
	setToken := func(tok string) {
		t.Helper()
		b.eval(fmt.Sprintf(`(() => { document.getElementById("token-input").value = %q;
			document.getElementById("token-form").requestSubmit(); return true })()`, tok), nil)
	}
	setToken("wrong")
	b.waitFor("the 403 banner", `document.getElementById("banner").textContent.startsWith("403 forbidden")`)
	g.takeAuth()
	setToken("good")
	b.waitFor("the stock card with a token", `!!document.querySelector('.stock [data-k=version]') && document.getElementById("banner").hidden`)
	for _, a := range g.takeAuth() {
		if a != "Bearer good" {
			t.Errorf("an API call carried Authorization %q, want the token entered", a)
		}
	}
	var leak struct {
		InPage, InURL bool
		Stored        int
	}
	b.eval(`({InPage: document.documentElement.outerHTML.includes("good\"") || [...document.querySelectorAll('input')].some(i => i.value === "good"),
		InURL: location.href.includes("good"), Stored: localStorage.length + sessionStorage.length})`, &leak)
	if leak.InPage || leak.InURL || leak.Stored != 0 {
		t.Errorf("the token leaked: %+v", leak)
	}
	if v := b.cspViolations(); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %q", v)
	}
	// The 401s and 403s above are logged by Chromium as failed loads only.
	if p := b.takeProblems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}
}

// ledgerRows returns the cells of the ledger table in the view, by field.
func ledgerRows(b *browser) []map[string]string {
	b.t.Helper()
	var r []map[string]string
	b.eval(`[...document.querySelectorAll('#view table.ledger tbody tr')].map(tr =>
		Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.k, td.textContent])))`, &r)
	return r
}

// TestConsoleFiles checks how the console's files are served, without a
// browser: the page and its two files with their types and policy, /ui sent
// to /ui/, anything else under /ui/ a 404 problem.
func TestConsoleFiles(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	for _, c := range []struct {
		path, contentType, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/ui/index.html", "text/html; charset=utf-8", `<main id="view">`},
		{"/ui/app.js", "text/javascript; charset=utf-8", `"use strict"`},
		{"/ui/app.css", "text/css; charset=utf-8", `.ledger`},
	} {
		w := ts.do(req{method: "GET", path: c.path})
		if w.Code != 200 || w.Header().Get("Content-Type") != c.contentType || !strings.Contains(w.Body.String(), c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, w.Code, w.Header().Get("Content-Type"), c.contains, strings.Contains(w.Body.String(), c.contains))
		}
		h := w.Header()
		if h.Get("Content-Security-Policy") != ui.ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", c.path, h)
		}
	}
	if w := ts.do(req{method: "GET", path: "/ui"}); w.Code != 301 || w.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	for _, p := range []string{"/ui/nope.js", "/ui/ui.go", "/ui/../openapi.json", "/ui/%2e%2e/openapi.json", "/ui/sub/app.js", "/ui/.app.js"} {
		w := ts.do(req{method: "GET", path: p})
		if w.Code == 200 {
			t.Errorf("GET %s: 200 %.80s", p, w.Body)
		} else if w.Code == 404 {
			problem(t, w, 404, "not_found")
		}
	}
	problem(t, ts.do(req{method: "POST", path: "/ui/", body: "{}"}), 405, "method_not_allowed")
}
