package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runKeyCommand runs "inventoryd <args>" and returns its stdout; it must
// succeed.
func runKeyCommand(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("inventoryd %v: %v\n%s", args, err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// addKey adds a principal to file with the binary's add-key command and
// returns its secret.
func addKeyCmd(t *testing.T, file, name, role string) string {
	t.Helper()
	return runKeyCommand(t, "add-key", "--keys-file", file, "--name", name, "--role", role)
}

// startCmd returns an inventoryd command on dir with args and extra
// environment (KEY=VALUE), and nothing else from this process's
// INVENTORY_* variables.
func startCmd(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"--data-dir", dir, "--shards", "2"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INVENTORY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// TestProtectedMode: without keys the service starts only on loopback
// addresses; any other address is refused before the data directory is
// touched, unless --insecure (INVENTORY_INSECURE=1, as the container sets
// it) says otherwise, and then it says so at WARN. The container's own
// variables (INVENTORY_ADDR=0.0.0.0:8080) are used as they are set there.
func TestProtectedMode(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"container default", []string{"INVENTORY_ADDR=0.0.0.0:0"}, nil},
		{"every interface", nil, []string{"--addr", ":0"}},
		{"ipv6 any", nil, []string{"--addr", "[::]:0"}},
		{"a host name", nil, []string{"--addr", "example.com:0"}},
		{"insecure off", []string{"INVENTORY_ADDR=0.0.0.0:0", "INVENTORY_INSECURE=0"}, nil},
		{"pprof beyond loopback", nil, []string{"--addr", "127.0.0.1:0", "--admin-addr", "0.0.0.0:0"}},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		out, err := startCmd(dir, c.env, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refusing to serve") || !strings.Contains(string(out), "INVENTORY_INSECURE=1") {
			t.Errorf("%s: err %v, output %s; want a refusal naming INVENTORY_INSECURE=1", c.name, err, out)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s: the data directory was created before the refusal", c.name)
		}
	}

	// INVENTORY_INSECURE=1 opens it, loudly.
	dir := t.TempDir()
	s := launch(t, dir, startCmd(dir, []string{"INVENTORY_ADDR=0.0.0.0:0", "INVENTORY_INSECURE=1"}))
	if !strings.Contains(s.logs.String(), "INSECURE: serving 0.0.0.0:0 WITHOUT ACCESS CONTROL") {
		t.Errorf("no INSECURE warning at start; logs:\n%s", s.logs)
	}
	if r := s.write("p", "k1", map[string]any{"type": "ADD", "quantity": 1}); r.status != http.StatusCreated {
		t.Errorf("insecure write: %d %s", r.status, r.raw)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done

	// A keys file makes any address acceptable.
	keys := filepath.Join(t.TempDir(), "keys.json")
	addKeyCmd(t, keys, "ops", "admin")
	dir = t.TempDir()
	s = launch(t, dir, startCmd(dir, []string{"INVENTORY_ADDR=0.0.0.0:0", "INVENTORY_KEYS_FILE=" + keys}))
	if strings.Contains(s.logs.String(), "INSECURE") {
		t.Errorf("INSECURE warning with a keys file; logs:\n%s", s.logs)
	}
	if r := s.write("p", "k1", map[string]any{"type": "ADD", "quantity": 1}); r.status != http.StatusUnauthorized {
		t.Errorf("write without a key: %d %s", r.status, r.raw)
	}
}

// TestKeysCommands: add-key prints a secret once and stores only its hash
// (mode 0600); a second key of the same name is refused; remove-key drops
// it.
func TestKeysCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	secret := addKeyCmd(t, file, "checkout-svc", "writer")
	if !strings.HasPrefix(secret, "inv_") || len(secret) < 40 {
		t.Fatalf("secret %q", secret)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(secret[4:])) {
		t.Errorf("the keys file holds the secret:\n%s", b)
	}
	var recs []map[string]string
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte(secret))
	if len(recs) != 1 || recs[0]["name"] != "checkout-svc" || recs[0]["role"] != "writer" || recs[0]["sha256"] != hex.EncodeToString(d[:]) {
		t.Errorf("keys file %s", b)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("keys file mode %v, want 0600", fi.Mode().Perm())
	}
	other := runKeyCommand(t, "add-key", "--keys-file", file, "--name", "ops", "--role", "admin")
	if other == secret {
		t.Error("two keys with one secret")
	}
	for _, args := range [][]string{
		{"add-key", "--keys-file", file, "--name", "checkout-svc", "--role", "reader"}, // taken
		{"add-key", "--keys-file", file, "--name", "x", "--role", "root"},
		{"add-key", "--keys-file", file, "--name", "system", "--role", "admin"},
		{"add-key", "--keys-file", file, "--name", "bad name", "--role", "admin"},
		{"add-key", "--name", "y", "--role", "admin"}, // no file
		{"remove-key", "--keys-file", file, "--name", "nobody"},
	} {
		if out, err := exec.Command(binary, args...).CombinedOutput(); err == nil {
			t.Errorf("inventoryd %v succeeded: %s", args, out)
		}
	}
	after, _ := os.ReadFile(file)
	if n := strings.Count(string(after), `"name"`); n != 2 {
		t.Errorf("refused commands changed the file: %d principals\n%s", n, after)
	}
	// The variable names the file too.
	cmd := exec.Command(binary, "remove-key", "--name", "ops")
	cmd.Env = append(os.Environ(), "INVENTORY_KEYS_FILE="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("remove-key: %v %s", err, out)
	}
	after, _ = os.ReadFile(file)
	if strings.Contains(string(after), `"ops"`) || !strings.Contains(string(after), "checkout-svc") {
		t.Errorf("after remove-key:\n%s", after)
	}
}

// TestKeysEndToEnd: against the binary, created_by is the principal, roles
// hold, and SIGHUP swaps the keys without dropping a request in flight: a
// request authenticated before the reload completes after it, on a key the
// reload removed.
func TestKeysEndToEnd(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	writer := addKeyCmd(t, keys, "checkout-svc", "writer")
	reader := addKeyCmd(t, keys, "dashboard", "reader")
	monitor := addKeyCmd(t, keys, "monitor", "admin")
	dir := t.TempDir()
	s := start(t, dir, "--keys-file", keys)
	bearer := func(secret string) []string { return []string{"Authorization", "Bearer " + secret} }
	add := func(key string, hdr []string) response {
		return s.do("POST", "/v1/products/p/transactions", map[string]any{"type": "ADD", "quantity": 1},
			append([]string{"Idempotency-Key", key, "X-Actor", "mallory"}, hdr...)...)
	}
	r := add("k1", bearer(writer))
	if r.status != http.StatusCreated {
		t.Fatalf("writer: %d %s", r.status, r.raw)
	}
	if got := r.body["transaction"].(map[string]any)["created_by"]; got != "checkout-svc" {
		t.Errorf("created_by %v, want checkout-svc", got)
	}
	if r := add("k2", bearer(reader)); r.status != http.StatusForbidden || r.body["code"] != "forbidden" {
		t.Errorf("reader writes: %d %s", r.status, r.raw)
	}
	if r := add("k2", nil); r.status != http.StatusUnauthorized || r.body["code"] != "unauthorized" ||
		r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("no key: %d %v %s", r.status, r.header, r.raw)
	}
	if r := s.do("GET", "/v1/products/p", nil, bearer(reader)...); r.status != http.StatusOK {
		t.Errorf("reader reads: %d %s", r.status, r.raw)
	}
	if r := s.do("GET", "/metrics", nil, bearer(writer)...); r.status != http.StatusForbidden {
		t.Errorf("writer scrapes /metrics: %d", r.status)
	}

	// A request in flight: headers with the writer's key sent, the body not
	// yet.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"type":"ADD","quantity":2}`
	fmt.Fprintf(conn, "POST /v1/products/p/transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Idempotency-Key: inflight\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", writer, len(body), body[:5])
	// Once the handler reads the body, access control is behind it.
	deadline := time.Now().Add(5 * time.Second)
	for !bodyInflight(s, monitor) {
		if time.Now().After(deadline) {
			t.Fatal("the request in flight never reached its body")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Replace the writer by a new admin; reload.
	runKeyCommand(t, "remove-key", "--keys-file", keys, "--name", "checkout-svc")
	admin := addKeyCmd(t, keys, "ops", "admin")
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for s.do("GET", "/v1/products/p", nil, bearer(admin)...).status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the new key never worked; logs:\n%s", s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := add("k3", bearer(writer)); r.status != http.StatusUnauthorized {
		t.Errorf("removed key after reload: %d %s", r.status, r.raw)
	}
	if r := add("k4", bearer(reader)); r.status != http.StatusForbidden {
		t.Errorf("kept reader after reload: %d", r.status)
	}
	// The request in flight completes.
	io.WriteString(conn, body[5:])
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("request in flight across the reload: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"created_by":"checkout-svc"`) {
		t.Errorf("request in flight across the reload: %d %s", resp.StatusCode, b)
	}

	// A keys file that does not parse leaves the keys in force.
	os.WriteFile(keys, []byte("[{"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(s.logs.String(), "keys file not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the failed reload; logs:\n%s", s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := s.do("GET", "/v1/products/p", nil, bearer(admin)...); r.status != http.StatusOK {
		t.Errorf("after a failed reload: %d", r.status)
	}
}

// bodyInflight reports whether some request holds body bytes
// (inventory_http_body_inflight_bytes > 0), scraped with an admin secret.
func bodyInflight(s *server, secret string) bool {
	r := s.do("GET", "/metrics", nil, "Authorization", "Bearer "+secret)
	for _, line := range strings.Split(string(r.raw), "\n") {
		if v, ok := strings.CutPrefix(line, "inventory_http_body_inflight_bytes "); ok {
			return v != "0"
		}
	}
	return false
}

// testCert makes a self-signed ECDSA certificate for 127.0.0.1 and writes
// it and its key as PEM files into dir; it returns the certificate.
func testCert(t *testing.T, dir string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "inventoryd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as an operator's tooling would.
	for name, block := range map[string]*pem.Block{"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "EC PRIVATE KEY", Bytes: kder}} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLS: the binary serves HTTPS with a certificate made here, keys and
// all, refuses plain HTTP on that port, and takes a new certificate on
// SIGHUP.
func TestTLS(t *testing.T) {
	certs := t.TempDir()
	first := testCert(t, certs, 1)
	pool := x509.NewCertPool()
	pool.AddCert(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	keys := filepath.Join(t.TempDir(), "keys.json")
	secret := addKeyCmd(t, keys, "checkout-svc", "writer")
	dir := t.TempDir()
	cmd := exec.Command(binary, "--addr", "127.0.0.1:0", "--data-dir", dir, "--shards", "2", "--keys-file", keys,
		"--tls-cert", filepath.Join(certs, "cert.pem"), "--tls-key", filepath.Join(certs, "key.pem"))
	s := launchWith(t, dir, cmd, "https", client)
	r := s.do("POST", "/v1/products/p/transactions", map[string]any{"type": "ADD", "quantity": 3},
		"Idempotency-Key", "k1", "Authorization", "Bearer "+secret)
	if r.status != http.StatusCreated || r.body["transaction"].(map[string]any)["created_by"] != "checkout-svc" {
		t.Fatalf("write over TLS: %d %s", r.status, r.raw)
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(s.url, "https://") + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}

	// A new certificate, then SIGHUP: new handshakes present it.
	second := testCert(t, certs, 2)
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		serial := conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
		if serial.Cmp(second.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serial %v after SIGHUP; logs:\n%s", serial, s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSFlagsGoTogether: one of --tls-cert and --tls-key alone, or files
// that do not load, stop the start.
func TestTLSFlagsGoTogether(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--tls-cert", "x.pem"},
		{"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.pem")},
	} {
		out, err := startCmd(filepath.Join(dir, "data"), nil, append([]string{"--addr", "127.0.0.1:0"}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "tls") {
			t.Errorf("%v: err %v, output %s", args, err, out)
		}
	}
}

// TestLoopback pins which addresses protected mode accepts without keys.
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.9.9.9:1": true, "[::1]:8080": true, "localhost:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "10.0.0.1:8080": false,
		"192.168.1.2:80": false, "example.com:80": false, "localhost.example.com:80": false,
		"[::ffff:127.0.0.1]:80": true, "127.0.0.1": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
	c := Config{Addr: "0.0.0.0:8080"}
	if c.checkExposure() == nil {
		t.Error("0.0.0.0 without keys accepted")
	}
	c.Insecure = true
	if c.checkExposure() != nil || len(c.exposureWarnings()) != 1 {
		t.Errorf("--insecure: %v, warnings %q", c.checkExposure(), c.exposureWarnings())
	}
	c = Config{Addr: "0.0.0.0:8080", KeysFile: "keys.json"}
	if w := c.exposureWarnings(); c.checkExposure() != nil || len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Errorf("keys without TLS: %v, warnings %q", c.checkExposure(), w)
	}
	c.TLSCert, c.TLSKey = "c.pem", "k.pem"
	if w := c.exposureWarnings(); len(w) != 0 {
		t.Errorf("keys with TLS: warnings %q", w)
	}
}
