package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/inventory-ledger/inventory/shard"
)

// Body limits of API.md. They bound the memory one request can take before
// the engine sees it.
const (
	// writeBytesMax bounds a single write's body: a write is a few hundred
	// bytes at most (a 256-byte reason and two ids), so 64 KiB is generous.
	writeBytesMax = 64 << 10
	// batchBytesMax bounds a batch body: 1,000 ops of about 4 KiB each.
	batchBytesMax = 4 << 20
)

// Media types.
const (
	mediaJSON    = "application/json"
	mediaMsgpack = "application/msgpack"
	mediaProblem = "application/problem+json"
)

// Header values shared by every response that carries them. net/http only
// reads header slices, so sharing them saves an allocation per response.
var (
	hdrJSON    = []string{mediaJSON}
	hdrMsgpack = []string{mediaMsgpack}
	hdrProblem = []string{mediaProblem}
	hdrTrue    = []string{"true"}
	hdrVary    = []string{"Accept"}
	hdrNoStore = []string{"no-store"}
	hdrRetry   = []string{retryAfterSeconds}
)

// format is a body encoding.
type format uint8

const (
	formatJSON format = iota
	formatMsgpack
)

// isMsgpack reports whether media type t (without parameters) is msgpack.
func isMsgpack(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	return ok && strings.EqualFold(typ, "application") && isMsgpackSubtype(sub)
}

// isMsgpackSubtype reports whether application/sub is msgpack: its
// registered name or one of the two names in use before it.
func isMsgpackSubtype(sub string) bool {
	return strings.EqualFold(sub, "msgpack") || strings.EqualFold(sub, "x-msgpack") ||
		strings.EqualFold(sub, "vnd.msgpack")
}

// bodyFormat returns the format of the request body from Content-Type:
// msgpack for application/msgpack (also x-msgpack, vnd.msgpack), JSON
// otherwise ("JSON by default", API.md): a missing type, application/json,
// and the text/plain or form type that curl -d sends all mean JSON, which
// the strict decoder then requires. A charset, if given, must be UTF-8.
func bodyFormat(h http.Header) (format, *shard.Error) {
	v := h["Content-Type"]
	if len(v) == 0 {
		return formatJSON, nil
	}
	if len(v) > 1 {
		return 0, invalid("the Content-Type header is repeated")
	}
	if v[0] == mediaJSON {
		return formatJSON, nil
	}
	t, params, _ := strings.Cut(v[0], ";")
	t = strings.TrimSpace(t)
	f := formatJSON
	if isMsgpack(t) {
		f = formatMsgpack
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "charset") &&
			!strings.EqualFold(strings.Trim(strings.TrimSpace(value), `"`), "utf-8") {
			return 0, invalid("the body must be UTF-8 (Content-Type charset)")
		}
	}
	return f, nil
}

// responseFormat picks the response encoding from Accept, negotiated as
// RFC 9110 §12.5.1 says: each of our two representations takes the q of the
// most specific media range that matches it (application/json or a msgpack
// type, then application/*, then */*); q=0 means "not acceptable"; a range
// whose q is malformed is unusable and ignored. The msgpack aliases count as
// one type, and a type listed more than once takes its lowest q.
//
// msgpack is chosen only when a msgpack type is named with q > 0 and JSON's
// q is not higher (a tie goes to msgpack, which the client went out of its
// way to name). Everything else gets JSON, the default: an Accept without a
// msgpack type, and one that makes nothing acceptable (RFC 9110 allows that
// instead of 406). Problems are always JSON.
func responseFormat(h http.Header) format {
	v := h["Accept"]
	if len(v) == 0 {
		return formatJSON
	}
	named := false
	for _, s := range v {
		if containsFold(s, "msgpack") {
			named = true
		}
	}
	if !named {
		return formatJSON
	}
	var m, j acceptRank
	for _, s := range v {
		for s != "" {
			var r string
			r, s, _ = strings.Cut(s, ",")
			t, params, _ := strings.Cut(r, ";")
			q, ok := weight(params)
			if !ok {
				continue
			}
			typ, sub, ok := strings.Cut(strings.TrimSpace(t), "/")
			if !ok {
				continue
			}
			switch {
			case typ == "*" && sub == "*":
				m.match(rangeAny, q)
				j.match(rangeAny, q)
			case strings.EqualFold(typ, "application") && sub == "*":
				m.match(rangeType, q)
				j.match(rangeType, q)
			case strings.EqualFold(typ, "application") && isMsgpackSubtype(sub):
				m.match(rangeExact, q)
			case strings.EqualFold(typ, "application") && strings.EqualFold(sub, "json"):
				j.match(rangeExact, q)
			}
		}
	}
	if m.specific == rangeExact && m.q > 0 && m.q >= j.q {
		return formatMsgpack
	}
	return formatJSON
}

// Specificity of the media range that set a representation's q.
const (
	rangeNone  = iota // no range matched: not acceptable
	rangeAny          // */*
	rangeType         // application/*
	rangeExact        // the type itself
)

// acceptRank is the q of one representation, in thousandths, and how
// specific the range that set it was.
type acceptRank struct {
	specific int
	q        int
}

// match records a range of specificity sp and weight q that matches: a more
// specific range replaces what less specific ones said; among equally
// specific ones the lowest q counts, so a refusal is never outvoted.
func (a *acceptRank) match(sp, q int) {
	switch {
	case sp > a.specific:
		a.specific, a.q = sp, q
	case sp == a.specific:
		a.q = min(a.q, q)
	}
}

// weight returns the q parameter among a media range's parameters, in
// thousandths (1000 if absent), and ok false if it is malformed or
// repeated. RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [
// "." 0*3("0") ] ).
func weight(params string) (int, bool) {
	q, seen := 1000, false
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		if seen {
			return 0, false
		}
		seen = true
		var ok bool
		if q, ok = parseQ(strings.TrimSpace(value)); !ok {
			return 0, false
		}
	}
	return q, true
}

// parseQ parses a qvalue into thousandths.
func parseQ(s string) (int, bool) {
	if s == "" || s[0] != '0' && s[0] != '1' {
		return 0, false
	}
	q := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return q, true
	}
	frac := s[1:]
	if frac[0] != '.' || len(frac) > 4 {
		return 0, false
	}
	for i, scale := 1, 100; i < len(frac); i, scale = i+1, scale/10 {
		c := frac[i]
		if c < '0' || c > '9' || q == 1000 && c != '0' {
			return 0, false
		}
		q += int(c-'0') * scale
	}
	return q, true
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// singleHeader returns the one value of header name, or ok false if absent;
// a repeated header is invalid.
func singleHeader(h http.Header, name string) (string, bool, *shard.Error) {
	v := h[name]
	switch len(v) {
	case 0:
		return "", false, nil
	case 1:
		return v[0], true, nil
	}
	return "", false, invalid("the " + name + " header is repeated")
}

// idempotencyKey returns the Idempotency-Key header of a single write.
func idempotencyKey(h http.Header) (string, *shard.Error) {
	v, ok, err := singleHeader(h, "Idempotency-Key")
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", invalid("the Idempotency-Key header is required on every write")
	case !shard.CheckKey(v):
		return "", invalid("Idempotency-Key must be 1-" + strconv.Itoa(shard.KeyBytesMax) + " bytes of printable ASCII")
	}
	return v, nil
}

// actor returns the X-Actor header, or "" (the engine's default) if absent.
func actor(h http.Header) (string, *shard.Error) {
	v, ok, err := singleHeader(h, "X-Actor")
	switch {
	case err != nil:
		return "", err
	case ok && !shard.CheckID(v):
		return "", invalid("X-Actor must be 1-" + strconv.Itoa(shard.IDBytesMax) + " bytes of [A-Za-z0-9._~:@-]")
	}
	return v, nil
}

// ifMatch returns the version of the If-Match header, or shard.NoVersion if
// absent. It takes exactly one strong, quoted, plain decimal version: "7" or
// "0"; no W/, no lists, no *, no leading zeros.
func ifMatch(h http.Header) (int64, *shard.Error) {
	v, ok, err := singleHeader(h, "If-Match")
	if err != nil {
		return 0, err
	}
	if !ok {
		return shard.NoVersion, nil
	}
	n, good := parseVersion(strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`))
	if !good || len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, invalid(`If-Match must be one quoted version such as "7"`)
	}
	return n, nil
}

// parseVersion parses a plain decimal integer ≥ 0 without sign or leading
// zeros that fits int64.
func parseVersion(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || n > (1<<63-1-int64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// rejectIfMatch refuses If-Match on a batch: one version cannot condition
// ops on several products, and ignoring it would apply a batch the client
// meant to be conditional. (Idempotency-Key, by contrast, is ignored there:
// each op carries its own key, so a retry is safe either way.)
func rejectIfMatch(h http.Header) *shard.Error {
	if _, ok := h["If-Match"]; ok {
		return invalid("a batch takes no If-Match header: give its ops an expected_version")
	}
	return nil
}

// noQuery refuses any query parameter, on the endpoints that take none.
func noQuery(r *http.Request) *shard.Error {
	if r.URL.RawQuery == "" {
		return nil
	}
	return query(r.URL.RawQuery, nil, nil)
}

// query parses the raw query, allowing only the named parameters, each at
// most once, each a decimal integer (without leading zeros); absent ones
// keep their value in vals.
func query(raw string, names []string, vals []int64) *shard.Error {
	return queryParams(raw, names, "", func(i int, v string) *shard.Error {
		v, err := url.QueryUnescape(v)
		if err != nil {
			return invalid("malformed query string")
		}
		neg := strings.HasPrefix(v, "-")
		n, ok := parseVersion(strings.TrimPrefix(v, "-"))
		if !ok {
			return invalid("query parameter " + strconv.Quote(names[i]) + " must be a decimal integer")
		}
		if neg {
			n = -n
		}
		vals[i] = n
		return nil
	})
}

// queryParams walks the raw query, allowing only the named parameters, each
// at most once, and passes each one's index in names and its value, still
// percent-encoded, to fn. An unknown name is refused with hint appended to
// the detail.
func queryParams(raw string, names []string, hint string, fn func(i int, v string) *shard.Error) *shard.Error {
	seen := 0
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return invalid("malformed query string")
		}
		i := slices.Index(names, k)
		if i < 0 {
			return invalid("unknown query parameter " + strconv.Quote(k) + hint)
		}
		if seen&(1<<i) != 0 {
			return invalid("query parameter " + strconv.Quote(k) + " is repeated")
		}
		seen |= 1 << i
		if err := fn(i, v); err != nil {
			return err
		}
	}
	return nil
}

// pathID returns a path parameter, percent-decoded when the client escaped
// it (the router matches the raw path).
func pathID(v string) string {
	if strings.IndexByte(v, '%') < 0 {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v // malformed escapes: invalid as an id anyway
}

func tooLarge(limit int64) *shard.Error {
	return newError(codePayloadTooLarge, "the body is over the limit of "+strconv.FormatInt(limit, 10)+" bytes for this endpoint")
}

// isBlank reports whether a JSON body is empty (or only whitespace), which
// gets a clearer detail than "unexpected end of input".
func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}
