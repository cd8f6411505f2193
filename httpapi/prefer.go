package httpapi

import (
	"net/http"
	"strings"
)

// returnPref is the client's RFC 7240 "return" preference on a write or a
// batch.
type returnPref uint8

const (
	// returnDefault: none given, or none usable. The full body, and no
	// Preference-Applied.
	returnDefault returnPref = iota
	// returnMinimal: each result shortened to its status (in a batch), the
	// ids and versions of the entries appended, and the balances after them.
	returnMinimal
	// returnRepresentation: the full body, which is the default anyway.
	returnRepresentation
)

// Header values of the answers that honour a return preference.
var (
	hdrVaryPrefer            = []string{"Accept, Prefer"}
	hdrAppliedMinimal        = []string{"return=minimal"}
	hdrAppliedRepresentation = []string{"return=representation"}
)

// applyReturn sets the headers of a write's or batch's 2xx answer: Vary,
// since the body depends on Accept and Prefer, and Preference-Applied when
// the client's return preference shaped the body.
func applyReturn(h http.Header, ret returnPref) {
	h["Vary"] = hdrVaryPrefer
	switch ret {
	case returnMinimal:
		h["Preference-Applied"] = hdrAppliedMinimal
	case returnRepresentation:
		h["Preference-Applied"] = hdrAppliedRepresentation
	}
}

// preferReturn returns the return preference of h's Prefer header fields,
// read as RFC 7240 §2 says: one comma-separated list over all the fields;
// preference names compared without regard to case, values with regard to
// it, a quoted value the same as a token; parameters and preferences other
// than return ignored; only the first return counts. A header that does not
// parse (bad characters, an unclosed quote, a stray separator) is ignored
// as a whole rather than refused: a preference is a hint, and an answer the
// client did not shape is still a correct answer.
func preferReturn(h http.Header) returnPref {
	fields := h["Prefer"]
	if len(fields) == 0 {
		return returnDefault
	}
	ret, seen := returnDefault, false
	for _, f := range fields {
		p := preferList{s: f}
		for {
			name, value, quoted, ok := p.next()
			if !ok {
				if p.bad {
					return returnDefault
				}
				break
			}
			if seen || !strings.EqualFold(name, "return") {
				continue
			}
			seen = true
			switch {
			case unquotedIs(value, quoted, "minimal"):
				ret = returnMinimal
			case unquotedIs(value, quoted, "representation"):
				ret = returnRepresentation
			}
		}
	}
	return ret
}

// preferList walks the preferences of one Prefer field value (RFC 7240 §2):
//
//	preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
//	parameter  = token [ BWS "=" BWS word ]
//	word       = token / quoted-string
//
// Empty list elements are skipped (RFC 9110 §5.6.1), and an empty value is
// taken as no value (RFC 7240 §2).
type preferList struct {
	s   string
	i   int
	bad bool // the value does not parse
}

// next returns the next preference: its name, and its value as written
// (between the quotes, escapes kept, when quoted is true). ok is false at
// the end of the list, or at a syntax error, which sets bad.
func (p *preferList) next() (name, value string, quoted, ok bool) {
	for {
		p.ows()
		if p.i == len(p.s) {
			return "", "", false, false
		}
		if p.s[p.i] != ',' {
			break
		}
		p.i++
	}
	if name = p.token(); name == "" {
		return p.fail()
	}
	if value, quoted, ok = p.value(); !ok {
		return p.fail()
	}
	for {
		p.ows()
		if p.i == len(p.s) {
			return name, value, quoted, true
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			return name, value, quoted, true
		case ';':
			p.i++
			p.ows()
			if p.token() == "" { // "[ OWS parameter ]": a bare ";" is allowed
				continue
			}
			if _, _, ok := p.value(); !ok {
				return p.fail()
			}
		default:
			return p.fail()
		}
	}
}

func (p *preferList) fail() (string, string, bool, bool) {
	p.bad = true
	return "", "", false, false
}

// value reads an optional `BWS "=" BWS word` after a name.
func (p *preferList) value() (value string, quoted, ok bool) {
	save := p.i
	p.ows()
	if p.i == len(p.s) || p.s[p.i] != '=' {
		p.i = save
		return "", false, true
	}
	p.i++
	p.ows()
	if p.i < len(p.s) && p.s[p.i] == '"' {
		return p.quoted()
	}
	return p.token(), false, true // "" when the value is empty
}

// quoted reads a quoted-string and returns what is between the quotes.
func (p *preferList) quoted() (string, bool, bool) {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			return v, true, true
		case c == '\\':
			if p.i+1 == len(p.s) || !isQuotedPairByte(p.s[p.i+1]) {
				return "", false, false
			}
			p.i += 2
		case c == '\t' || c >= 0x20 && c != 0x7f:
			p.i++
		default:
			return "", false, false
		}
	}
	return "", false, false // unclosed
}

// token reads a token (RFC 9110 §5.6.2); "" if there is none here.
func (p *preferList) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// ows skips optional whitespace.
func (p *preferList) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isQuotedPairByte reports whether c may follow a backslash in a
// quoted-string: HTAB, SP, VCHAR or obs-text.
func isQuotedPairByte(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }

// unquotedIs reports whether a value as preferList returns it reads want,
// case-sensitively; a quoted value is compared with its escapes removed.
func unquotedIs(value string, quoted bool, want string) bool {
	if !quoted || strings.IndexByte(value, '\\') < 0 {
		return value == want
	}
	j := 0
	for i := 0; i < len(value); i++ {
		if value[i] == '\\' {
			i++ // quoted() checked that a byte follows
		}
		if j == len(want) || value[i] != want[j] {
			return false
		}
		j++
	}
	return j == len(want)
}
