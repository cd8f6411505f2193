package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"github.com/inventory-ledger/inventory/shard"
)

// Role is what a principal may do. Each role may do what the roles below
// it may.
type Role uint8

const (
	// RoleReader may call the GET endpoints under /v1.
	RoleReader Role = iota + 1
	// RoleWriter may also write: single writes and batches.
	RoleWriter
	// RoleAdmin may also call the operational endpoints (/metrics unless
	// it is open, anything under /admin or /v1/admin).
	RoleAdmin
)

var roleNames = map[string]Role{"reader": RoleReader, "writer": RoleWriter, "admin": RoleAdmin}

// ParseRole returns the role named s: reader, writer or admin.
func ParseRole(s string) (Role, bool) {
	r, ok := roleNames[s]
	return r, ok
}

func (r Role) String() string {
	switch r {
	case RoleReader:
		return "reader"
	case RoleWriter:
		return "writer"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// KeyRecord is one line of a keys file: a principal's name, its role and
// the SHA-256 of its secret in hex. The file holds no secret.
type KeyRecord struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	SHA256 string `json:"sha256"`
}

// keysFileBytesMax bounds a keys file: 10,000 principals of about 200 bytes.
const keysFileBytesMax = 2 << 20

// principal is an authenticated caller. actor is []string{name}, made once
// so that setting X-Actor on a request costs no allocation.
type principal struct {
	digest [sha256.Size]byte
	name   string
	role   Role
	actor  []string
}

// Keys is an immutable set of API keys by the SHA-256 digest of their
// secret. A reload builds a new Keys and swaps it in (Auth.Store); a Keys is
// never changed after ParseKeys returns it.
type Keys struct {
	byDigest map[[sha256.Size]byte]*principal
	records  []KeyRecord
}

// Len returns the number of principals.
func (k *Keys) Len() int { return len(k.records) }

// Records returns the principals as the file lists them (a copy).
func (k *Keys) Records() []KeyRecord { return append([]KeyRecord(nil), k.records...) }

// ParseKeys reads a keys file: a JSON array of KeyRecord, strictly (no
// unknown fields, nothing after the array). Names are 1-128 bytes of
// [A-Za-z0-9._~:@-] (they become created_by), unique, and not "anonymous"
// or "system", which the ledger uses itself; roles are reader, writer or
// admin; sha256 is 64 hex digits, unique. An empty array is valid: every
// protected request is then refused.
func ParseKeys(data []byte) (*Keys, error) {
	if len(data) > keysFileBytesMax {
		return nil, fmt.Errorf("keys file is %d bytes, over %d", len(data), keysFileBytesMax)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	var recs []KeyRecord
	if err := d.Decode(&recs); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	if recs == nil {
		return nil, errors.New("keys file: want a JSON array of {\"name\", \"role\", \"sha256\"}")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("keys file: data after the array")
	}
	k := &Keys{byDigest: make(map[[sha256.Size]byte]*principal, len(recs)), records: recs}
	names := make(map[string]bool, len(recs))
	for i, r := range recs {
		switch {
		case !shard.CheckID(r.Name):
			return nil, fmt.Errorf("keys file: entry %d: name %q must be 1-%d bytes of [A-Za-z0-9._~:@-]", i, r.Name, shard.IDBytesMax)
		case r.Name == shard.ActorDefault || r.Name == shard.ActorSystem:
			return nil, fmt.Errorf("keys file: entry %d: name %q is reserved for entries without a principal", i, r.Name)
		case names[r.Name]:
			return nil, fmt.Errorf("keys file: entry %d: name %q appears twice", i, r.Name)
		}
		names[r.Name] = true
		role, ok := ParseRole(r.Role)
		if !ok {
			return nil, fmt.Errorf("keys file: entry %d (%s): role %q must be reader, writer or admin", i, r.Name, r.Role)
		}
		var dg [sha256.Size]byte
		if len(r.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("keys file: entry %d (%s): sha256 must be %d hex digits", i, r.Name, 2*sha256.Size)
		}
		if _, err := hex.Decode(dg[:], []byte(r.SHA256)); err != nil {
			return nil, fmt.Errorf("keys file: entry %d (%s): sha256: %w", i, r.Name, err)
		}
		if _, dup := k.byDigest[dg]; dup {
			return nil, fmt.Errorf("keys file: entry %d (%s): the same secret as another entry", i, r.Name)
		}
		k.byDigest[dg] = &principal{digest: dg, name: r.Name, role: role, actor: []string{r.Name}}
	}
	return k, nil
}

// HashSecret returns what a keys file stores for secret: its SHA-256 in
// lowercase hex.
func HashSecret(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:])
}

// lookup returns the principal whose secret is secret. The secret is hashed
// once; the digest picks a candidate from the map, and the candidate's
// digest is compared in constant time. The map's own comparison only ever
// sees digests, which an attacker cannot steer byte by byte: timing tells
// nothing about the secret.
func (k *Keys) lookup(secret string) (*principal, bool) {
	// A stack buffer, so that hashing a usual secret does not allocate.
	var buf [128]byte
	dg := sha256.Sum256(append(buf[:0], secret...))
	p, ok := k.byDigest[dg]
	if !ok || !digestEqual(&p.digest, &dg) {
		return nil, false
	}
	return p, true
}

// digestEqual compares two digests in constant time.
func digestEqual(a, b *[sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Auth is the access control of a server: the keys in force, swapped
// atomically on reload (requests in flight keep the principal they were
// authenticated as), and whether /metrics is open.
type Auth struct {
	keys atomic.Pointer[Keys]
	// metricsOpen serves /metrics without a key.
	metricsOpen bool
}

// NewAuth returns access control with keys; metricsOpen leaves /metrics
// open to anyone who reaches the port.
func NewAuth(keys *Keys, metricsOpen bool) *Auth {
	a := &Auth{metricsOpen: metricsOpen}
	a.keys.Store(keys)
	return a
}

// Store puts keys in force for the requests that arrive from now on.
func (a *Auth) Store(keys *Keys) { a.keys.Store(keys) }

// Keys returns the keys in force.
func (a *Auth) Keys() *Keys { return a.keys.Load() }

// access is what a route needs. Routes are sorted into classes by their
// pattern and method (routeAccess), not listed one by one, so that a new
// route falls into its class.
type access uint8

const (
	// accessUnassigned is a route that fits no class: our bug, caught by
	// TestEveryRouteHasARole; served as admin-only meanwhile.
	accessUnassigned access = iota
	// accessOpen needs no key: probes, the API description, the console's
	// static files.
	accessOpen
	accessReader
	accessWriter
	accessAdmin
	// accessMetrics is /metrics: admin, or open under --metrics-open.
	accessMetrics
)

// routeAccess sorts a route into its class by echo pattern and method:
//
//   - /healthz, /readyz, /openapi.json, and /ui and everything under /ui/
//     (also when no route matches, by the request's path): open. The
//     operator console's files are static; the console asks its user for a
//     key and sends it on its own API calls.
//   - /metrics: admin unless --metrics-open.
//   - under /admin/ or /v1/admin/ (operational endpoints: snapshots,
//     reconciliation, ...): admin, any method.
//   - under /v1/: GET, HEAD and OPTIONS need a reader, any other method a
//     writer (single writes and POST /v1/batch).
//   - a request that matched no route (pattern ""): a reader, so that
//     without a key every path but the open ones answers 401 alike.
//   - anything else is unassigned.
func routeAccess(method, pattern, path string) access {
	switch {
	case pattern == "" && underUI(path):
		return accessOpen
	case pattern == "":
		return accessReader
	case pattern == routeHealth || pattern == routeReady || pattern == routeOpenAPI || underUI(pattern):
		return accessOpen
	case pattern == routeMetrics:
		return accessMetrics
	case strings.HasPrefix(pattern, "/admin/") || strings.HasPrefix(pattern, "/v1/admin/"):
		return accessAdmin
	case strings.HasPrefix(pattern, "/v1/"):
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return accessReader
		}
		return accessWriter
	}
	return accessUnassigned
}

// underUI reports whether an echo pattern or a path is /ui or under /ui/
// ("/ui*" and "/ui/*" are how echo's Static registers it).
func underUI(p string) bool {
	rest, ok := strings.CutPrefix(p, "/ui")
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '*')
}

// need returns the role a class needs, or 0 for none.
func (a *Auth) need(c access) Role {
	switch c {
	case accessOpen:
		return 0
	case accessReader:
		return RoleReader
	case accessWriter:
		return RoleWriter
	case accessMetrics:
		if a.metricsOpen {
			return 0
		}
	}
	return RoleAdmin
}

// WWW-Authenticate values of a 401 (RFC 6750 §3).
var (
	hdrBearer        = []string{`Bearer realm="inventory"`}
	hdrBearerInvalid = []string{`Bearer realm="inventory", error="invalid_token"`}
)

// authorize is access control, called by instrument after routing, so that
// the class comes from the route's pattern; nil when access control is off.
// A request that needs a role must carry "Authorization: Bearer <secret>"
// of a principal with that role or above: no or a malformed header, or an
// unknown secret, is 401 unauthorized; a role too low, 403 forbidden. An
// authenticated request's X-Actor header is replaced by the principal's
// name before the handler reads it, so created_by is the principal and a
// client cannot forge it.
func (s *server) authorize(c echo.Context) error {
	if s.auth == nil {
		return nil
	}
	r := c.Request()
	class := routeAccess(r.Method, c.Path(), r.URL.Path)
	if class == accessWriter && c.Get(echo.ContextKeyHeaderAllow) != nil {
		// The router found the path but not the method (it set Allow for
		// the 405): that answer, with the methods the route serves, goes
		// to a reader too: it writes nothing, and a reader may call the
		// route with GET anyway.
		class = accessReader
	}
	need := s.auth.need(class)
	if need == 0 {
		return nil
	}
	secret, ok := bearer(r.Header)
	if !ok {
		c.Response().Header()["Www-Authenticate"] = hdrBearer
		return newError(codeUnauthorized, `this endpoint needs an API key: send "Authorization: Bearer <secret>"`)
	}
	p, ok := s.auth.keys.Load().lookup(secret)
	if !ok {
		c.Response().Header()["Www-Authenticate"] = hdrBearerInvalid
		return newError(codeUnauthorized, "the API key is not valid")
	}
	if p.role < need {
		return newError(codeForbidden, "principal "+p.name+" has role "+p.role.String()+"; "+
			r.Method+" "+routeLabel(c.Path())+" needs "+need.String())
	}
	r.Header["X-Actor"] = p.actor
	return nil
}

// bearer returns the secret of the request's one Authorization header if it
// is "Bearer <secret>" (the scheme in any case, RFC 9110 §11.1).
func bearer(h http.Header) (string, bool) {
	v := h["Authorization"]
	if len(v) != 1 {
		return "", false
	}
	const scheme = "Bearer "
	if len(v[0]) <= len(scheme) || !strings.EqualFold(v[0][:len(scheme)], scheme) {
		return "", false
	}
	secret := strings.TrimLeft(v[0][len(scheme):], " ")
	return secret, secret != ""
}
