package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: JSON messages ended by a NUL byte, on file
// descriptors 3 and 4), with one page attached. It is all the console's
// test needs, in less code than a protocol library would cost.
type browser struct {
	t        testing.TB
	cmd      *exec.Cmd
	toChrome *os.File
	session  string

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpMessage
	// problems collects what the page reported: uncaught exceptions and
	// console or log entries of level error (CSP violations among them).
	problems []string
	done     chan struct{}
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// findChromium returns the path of a Chromium (INVENTORY_CHROMIUM, or one
// of the usual names on PATH), or "" if there is none.
func findChromium() string {
	if p := os.Getenv("INVENTORY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserTimeout bounds each protocol call.
const browserTimeout = 15 * time.Second

// startBrowser starts Chromium with a fresh profile and opens a blank page
// of width × height CSS pixels. It skips the test if no Chromium is found.
func startBrowser(t testing.TB, width, height int) *browser {
	t.Helper()
	path := findChromium()
	if path == "" {
		t.Skip("no Chromium found (INVENTORY_CHROMIUM, or chromium, chromium-browser, google-chrome on PATH): " +
			"install Debian's chromium package to run the console's browser test")
	}
	// Chrome reads commands from its fd 3 and writes answers to its fd 4.
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, outW}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	cmdR.Close()
	outW.Close()
	b := &browser{t: t, cmd: cmd, toChrome: cmdW, waiting: map[int]chan cdpMessage{}, done: make(chan struct{})}
	go b.read(bufio.NewReaderSize(outR, 1<<20))
	t.Cleanup(func() {
		b.toChrome.Close() // Chrome exits when its pipe closes
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		outR.Close()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("chromium stderr (last 2000 bytes): %s", tail(stderr.Bytes(), 2000))
		}
	})

	var target struct{ TargetID string }
	b.callSession("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	b.callSession("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call("Runtime.enable", nil, nil)
	b.call("Log.enable", nil, nil)
	b.call("Page.enable", nil, nil)
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	// Every document records the Content-Security-Policy violations it
	// sees; navigate and cspViolations read them.
	b.call("Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": `window.__csp = [];
		document.addEventListener("securitypolicyviolation",
			e => window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sample || "")));`}, nil)
	return b
}

// cspViolations returns the policy violations the current document saw.
func (b *browser) cspViolations() []string {
	b.t.Helper()
	var v []string
	if err := b.tryEval(`window.__csp || []`, &v); err != nil {
		b.t.Errorf("reading CSP violations: %v", err)
	}
	return v
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// read delivers answers to their callers and records the page's problems.
func (b *browser) read(r *bufio.Reader) {
	defer close(b.done)
	for {
		line, err := r.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(line[:len(line)-1], &m); err != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.waiting[m.ID]; ok {
				delete(b.waiting, m.ID)
				ch <- m
			}
		} else if p := pageProblem(m); p != "" {
			b.problems = append(b.problems, p)
		}
		b.mu.Unlock()
	}
}

// pageProblem describes an event that shows the page misbehaving, or
// returns "".
func pageProblem(m cdpMessage) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		return "exception: " + string(m.Params)
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		json.Unmarshal(m.Params, &p)
		if p.Type == "error" || p.Type == "assert" {
			return "console: " + string(m.Params)
		}
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Text, URL string }
		}
		json.Unmarshal(m.Params, &p)
		// A 4xx answer the test asked for is logged as a network error;
		// anything else of level error (a CSP violation) is a problem.
		if p.Entry.Level == "error" && !strings.Contains(p.Entry.Text, "the server responded with a status of") {
			return "log: " + p.Entry.Text + " " + p.Entry.URL
		}
	}
	return ""
}

// takeProblems returns the problems recorded so far and forgets them.
func (b *browser) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

func (b *browser) call(method string, params, result any) {
	b.t.Helper()
	b.callSession(b.session, method, params, result)
}

// callSession sends one command and decodes its result into result.
func (b *browser) callSession(session, method string, params, result any) {
	b.t.Helper()
	if err := b.send(session, method, params, result); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
}

func (b *browser) send(session, method string, params, result any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	msg, err := json.Marshal(cdpMessage{ID: id, Method: method, Params: p, SessionID: session})
	if err != nil {
		return err
	}
	if _, err := b.toChrome.Write(append(msg, 0)); err != nil {
		return fmt.Errorf("write to chromium: %w", err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("chromium: %d %s", m.Error.Code, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.done:
		return errors.New("chromium closed the pipe")
	case <-time.After(browserTimeout):
		return errors.New("no answer from chromium")
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its JSON value into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	if err := b.tryEval(expr, out); err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
}

func (b *browser) tryEval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.send(b.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s %s", r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil {
		return nil
	}
	if len(r.Result.Value) == 0 {
		return errors.New("no value")
	}
	return json.Unmarshal(r.Result.Value, out)
}

// waitFor evaluates a boolean expression until it is true, for up to 10 s.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var ok bool
		err := b.tryEval(expr, &ok)
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			var html string
			b.tryEval(`document.getElementById("view") ? document.getElementById("view").innerText.slice(0, 2000) : document.documentElement.outerHTML.slice(0, 2000)`, &html)
			b.t.Fatalf("waiting for %s: %v (last error %v); page shows:\n%s", what, ctx.Err(), err, html)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// navigate loads url in the page, after checking that the document it
// leaves saw no Content-Security-Policy violation.
func (b *browser) navigate(url string) {
	b.t.Helper()
	if v := b.cspViolations(); len(v) > 0 {
		b.t.Errorf("Content-Security-Policy violations: %q", v)
	}
	var r struct{ ErrorText string }
	b.call("Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		b.t.Fatalf("navigate %s: %s", url, r.ErrorText)
	}
}

// screenshot returns a PNG of the whole page.
func (b *browser) screenshot() []byte {
	b.t.Helper()
	var r struct{ Data []byte }
	b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	return r.Data
}
