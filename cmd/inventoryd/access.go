package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/inventory-ledger/inventory/httpapi"
	"github.com/inventory-ledger/inventory/shard"
)

// Access control at start-up: protected mode, the keys file, TLS, and the
// add-key and remove-key commands.

// loopback reports whether addr (host:port) listens on loopback only: an IP
// in 127.0.0.0/8 or ::1, or "localhost". An empty host or 0.0.0.0 is every
// interface; any other name could resolve anywhere.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkExposure is protected mode: without a keys file the API listens on
// loopback only, and pprof (which has no access control) always does,
// unless --insecure says otherwise.
func (c *Config) checkExposure() error {
	if c.Insecure {
		return nil
	}
	var errs []error
	if c.KeysFile == "" && !loopback(c.Addr) {
		errs = append(errs, fmt.Errorf("refusing to serve %s without access control: anyone who reaches it could write to the ledger. "+
			"Give a keys file (--keys-file or INVENTORY_KEYS_FILE; create keys with \"inventoryd add-key\"), "+
			"listen on a loopback address (127.0.0.1:8080), or pass --insecure (INVENTORY_INSECURE=1) to serve it open", c.Addr))
	}
	if c.AdminAddr != "" && !loopback(c.AdminAddr) {
		errs = append(errs, fmt.Errorf("refusing to serve pprof on %s: it has no access control; "+
			"use a loopback --admin-addr or pass --insecure (INVENTORY_INSECURE=1)", c.AdminAddr))
	}
	return errors.Join(errs...)
}

// exposureWarnings returns what start-up logs at WARN about exposure.
func (c *Config) exposureWarnings() []string {
	var w []string
	if c.Insecure && c.KeysFile == "" && !loopback(c.Addr) {
		w = append(w, "INSECURE: serving "+c.Addr+" WITHOUT ACCESS CONTROL (--insecure): anyone who reaches this port can move stock and choose created_by")
	}
	if c.Insecure && c.AdminAddr != "" && !loopback(c.AdminAddr) {
		w = append(w, "INSECURE: serving pprof on "+c.AdminAddr+" (--insecure): anyone who reaches it can read the process's memory profile")
	}
	if c.KeysFile != "" && c.TLSCert == "" && !loopback(c.Addr) {
		w = append(w, "API keys travel in clear text on "+c.Addr+": serve TLS (--tls-cert, --tls-key) or put a TLS-terminating proxy in front")
	}
	return w
}

// keysFileBytesMax bounds the keys file read (httpapi.ParseKeys refuses
// more than 2 MiB; one byte over is enough to tell).
const keysFileBytesMax = 2<<20 + 1

// loadKeys reads and parses a keys file.
func loadKeys(path string) (*httpapi.Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, keysFileBytesMax))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	k, err := httpapi.ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// certificate holds the TLS certificate in force; reload swaps it.
type certificate struct {
	cert, key string
	cur       atomic.Pointer[tls.Certificate]
}

func loadCertificate(cert, key string) (*certificate, error) {
	c := &certificate{cert: cert, key: key}
	return c, c.reload()
}

func (c *certificate) reload() error {
	kp, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cur.Store(&kp)
	return nil
}

// config returns the server's TLS configuration: TLS 1.2 and up, HTTP/1.1
// (the connection limit and timeouts are per connection, which HTTP/2's
// multiplexing would blur), the certificate in force at each handshake.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// reload is what SIGHUP does: read the keys file and the certificate again
// and put them in force for new requests and handshakes. Requests in flight
// keep the principal they were authenticated as; connections stay open. A
// file that does not load leaves the one in force and is logged.
func reload(cfg *Config, auth *httpapi.Auth, cert *certificate, log *slog.Logger) {
	if auth != nil {
		if k, err := loadKeys(cfg.KeysFile); err != nil {
			log.Error("keys file not reloaded; the keys in force stay", "err", err)
		} else {
			auth.Store(k)
			log.Info("keys file reloaded", "file", cfg.KeysFile, "principals", k.Len())
		}
	}
	if cert != nil {
		if err := cert.reload(); err != nil {
			log.Error("certificate not reloaded; the one in force stays", "err", err)
		} else {
			log.Info("certificate reloaded", "cert", cfg.TLSCert)
		}
	}
}

// keyCommand parses the flags of add-key and remove-key.
func keyCommand(name string, args []string, getenv func(string) string, out io.Writer, withRole bool) (file, principal, role string, err error) {
	fs := flag.NewFlagSet("inventoryd "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&file, "keys-file", "", "keys file (default: INVENTORY_KEYS_FILE)")
	fs.StringVar(&principal, "name", "", "principal name, 1-128 bytes of [A-Za-z0-9._~:@-]; it becomes created_by")
	if withRole {
		fs.StringVar(&role, "role", "", "reader, writer or admin")
	}
	if err = fs.Parse(args); err != nil {
		return
	}
	if fs.NArg() > 0 {
		return "", "", "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if file == "" {
		file = getenv("INVENTORY_KEYS_FILE")
	}
	switch {
	case file == "":
		err = errors.New("--keys-file (or INVENTORY_KEYS_FILE) is required")
	case principal == "":
		err = errors.New("--name is required")
	case withRole && role == "":
		err = errors.New("--role is required: reader, writer or admin")
	}
	return
}

// readRecords returns the records of a keys file, none if it does not exist.
func readRecords(file string) ([]httpapi.KeyRecord, error) {
	k, err := loadKeys(file)
	if errors.Is(err, fs.ErrNotExist) {
		return []httpapi.KeyRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	return k.Records(), nil
}

// secretBytes is the entropy of a new secret: 256 bits.
const secretBytes = 32

// addKey is "inventoryd add-key": it makes a random secret, writes its hash
// to the keys file with the principal's name and role, and prints the
// secret, once, to stdout.
func addKey(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	file, name, role, err := keyCommand("add-key", args, getenv, stderr, true)
	if err != nil {
		return err
	}
	recs, err := readRecords(file)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Name == name {
			return fmt.Errorf("%s already has a key for %q; remove it first (inventoryd remove-key)", file, name)
		}
	}
	b := make([]byte, secretBytes)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	secret := "inv_" + base64.RawURLEncoding.EncodeToString(b)
	recs = append(recs, httpapi.KeyRecord{Name: name, Role: role, SHA256: httpapi.HashSecret(secret)})
	if err := writeRecords(file, recs); err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	fmt.Fprintf(stderr, "added %s (%s) to %s. The secret above is shown once and not stored; clients send it as \"Authorization: Bearer <secret>\". A running inventoryd takes the new key on SIGHUP.\n", name, role, file)
	return nil
}

// removeKey is "inventoryd remove-key": it drops a principal from the keys
// file.
func removeKey(args []string, getenv func(string) string, stderr io.Writer) error {
	file, name, _, err := keyCommand("remove-key", args, getenv, stderr, false)
	if err != nil {
		return err
	}
	recs, err := readRecords(file)
	if err != nil {
		return err
	}
	kept := recs[:0]
	for _, r := range recs {
		if r.Name != name {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(recs) {
		return fmt.Errorf("%s has no key for %q", file, name)
	}
	if err := writeRecords(file, kept); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "removed %s from %s. A running inventoryd refuses its key after SIGHUP.\n", name, file)
	return nil
}

// writeRecords replaces the keys file, once validated, atomically and
// durably (shard.WriteFileSync, mode 0600): a reload never sees half a file.
func writeRecords(file string, recs []httpapi.KeyRecord) error {
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := httpapi.ParseKeys(b); err != nil {
		return err
	}
	return shard.WriteFileSync(filepath.Dir(file), filepath.Base(file), b)
}
