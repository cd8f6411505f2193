package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serviceBin builds ./cmd/inventoryd into a temp dir for a test, which is
// skipped under -short, and returns the dir and the binary.
func serviceBin(t *testing.T) (dir, bin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the service")
	}
	dir = t.TempDir()
	bin, err := buildService(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// TestFlashSaleEndToEnd builds the real service, lets the harness start
// it, sells 200 units to 16 clients, and checks the verdict and reports.
func TestFlashSaleEndToEnd(t *testing.T) {
	dir, bin := serviceBin(t)
	jsonPath, chartPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.html")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-spawn", "-service-bin", bin, "-scenario", "flashsale",
		"-units", "200", "-c", "16", "-warmup", "0", "-duration", "20s", "-seed", "7", "-quiet",
		"-json", jsonPath, "-chart", chartPath}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Verified      bool               `json:"verified"`
		ThroughputRPS float64            `json:"throughput_rps"`
		Latency       map[string]float64 `json:"latency_ms"`
		Statuses      map[string]int64   `json:"statuses"`
		RunStatuses   map[string]int64   `json:"run_statuses"`
		RunErrorCodes map[string]int64   `json:"run_error_codes"`
		EndedEarly    bool               `json:"ended_early"`
		Verification  struct {
			Facts map[string]any `json:"facts"`
		} `json:"verification"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode %s: %v", jsonPath, err)
	}
	if !got.Verified {
		t.Errorf("verified = false\n%s", stdout.String())
	}
	if !got.EndedEarly {
		t.Errorf("the run did not end when the stock was gone")
	}
	if n := got.RunStatuses["201"]; n != 200 {
		t.Errorf("201 answers: got %d, want exactly 200 holds", n)
	}
	if f := got.Verification.Facts; f["ledger_reserves"] != 200.0 || f["holds_acknowledged"] != 200.0 || f["available"] != 0.0 {
		t.Errorf("facts: got %v, want 200 ledger reserves, 200 acknowledged holds, 0 available", f)
	}
	for code := range got.RunErrorCodes {
		if code != "insufficient_stock" {
			t.Errorf("error code %q seen, want only insufficient_stock", code)
		}
	}
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := got.Latency[k]; !ok {
			t.Errorf("latency_ms has no %q", k)
		}
	}
	if got.ThroughputRPS <= 0 {
		t.Errorf("throughput_rps = %v, want > 0", got.ThroughputRPS)
	}
	page, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(page); !strings.Contains(s, "<svg") || strings.Contains(s, "<script") || strings.Contains(s, "http://cdn") {
		t.Errorf("chart is not a self-contained SVG page")
	}
}

func TestLoopbackOnly(t *testing.T) {
	for target, ok := range map[string]bool{
		"http://127.0.0.1:8080":  true,
		"http://127.8.9.10:1":    true,
		"http://localhost:8080/": true,
		"http://10.0.0.1:8080":   false,
		"http://example.com":     false,
		"http://[::1]:8080":      false,
		"https://127.0.0.1:8080": false,
		"http://0.0.0.0:8080":    false,
	} {
		if _, err := checkLoopback(target); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) error %v, want ok=%v", target, err, ok)
		}
	}
}

// TestTokenLoadsAProtectedService: with -token (or INVENTORY_TOKEN) the
// harness loads and verifies a service with access control on; without it
// the service refuses every request and the run fails.
func TestTokenLoadsAProtectedService(t *testing.T) {
	dir, bin := serviceBin(t)
	keys := filepath.Join(dir, "keys.json")
	const secret = "inv_bench-test-secret"
	sum := sha256.Sum256([]byte(secret))
	rec := `[{"name": "bench-load", "role": "writer", "sha256": "` + hex.EncodeToString(sum[:]) + `"}]`
	if err := os.WriteFile(keys, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := startService(context.Background(), bin, []string{"--keys-file", keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.cleanup() })
	args := []string{"-target", svc.url, "-scenario", "flashsale", "-units", "50", "-c", "4",
		"-warmup", "0", "-duration", "10s", "-quiet"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code == exitOK {
		t.Errorf("without a token: exit 0, want a failure\n%s", stdout.String())
	}
	t.Setenv("INVENTORY_TOKEN", secret)
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Errorf("INVENTORY_TOKEN: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	t.Setenv("INVENTORY_TOKEN", "")
	if code := run(context.Background(), append(args, "-token", secret, "-nonce", "second"), &stdout, &stderr); code != exitOK {
		t.Errorf("-token: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

// TestMinimalAnswersVerify runs the checkout and mixed scenarios with
// -minimal: the answers then carry no product or type, which the harness
// takes from the ops, and verification must still match every
// acknowledged entry to the ledger.
func TestMinimalAnswersVerify(t *testing.T) {
	dir, bin := serviceBin(t)
	svc, err := startService(context.Background(), bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.cleanup() })
	for _, scenario := range []string{"checkout", "mixed"} {
		jsonPath := filepath.Join(dir, scenario+".json")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"-target", svc.url, "-scenario", scenario, "-minimal", "-c", "8",
			"-warmup", "0", "-duration", "2s", "-expire-ttl", "1s", "-quiet", "-json", jsonPath}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("%s: exit code %d\nstdout:\n%s\nstderr:\n%s", scenario, code, stdout.String(), stderr.String())
		}
		var got struct {
			Verified bool           `json:"verified"`
			Requests int64          `json:"requests"`
			Params   map[string]any `json:"params"`
		}
		b, _ := os.ReadFile(jsonPath)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !got.Verified || got.Requests == 0 || got.Params["prefer"] != "return=minimal" {
			t.Errorf("%s: verified %v after %d requests, params %v", scenario, got.Verified, got.Requests, got.Params)
		}
	}
}
