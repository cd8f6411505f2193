package httpapi

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// reader reads one document of a fixed schema, strictly: the caller asks for
// the kind of value it expects, and a value of another kind is an error, not
// a conversion. jsonReader and msgpackReader implement it, so both formats
// go through the same field rules (decodeWrite, decodeBatch).
type reader interface {
	// object starts an object (a msgpack map).
	object() error
	// key returns the next member name of the current object, or ok false
	// at its end. name is valid until the next call on the reader.
	key() (name []byte, ok bool, err error)
	// array starts an array; elem reports whether another element follows.
	array() error
	elem() (ok bool, err error)
	// str returns a string, valid until the next call on the reader.
	str() ([]byte, error)
	// int returns an integer written without fraction or exponent. One
	// outside int64 returns errOutOfRange (and is consumed).
	int() (int64, error)
	bool() (bool, error)
	// finish checks that nothing but (JSON) whitespace follows the document.
	finish() error
}

// errOutOfRange is an integer that does not fit int64.
var errOutOfRange = errors.New("integer out of range")

// typeError is a value of another kind than the schema's.
type typeError struct {
	want, got string
}

func (e *typeError) Error() string { return "must be " + e.want + ", not " + e.got }

// syntaxError is a document that is not well-formed.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string {
	return e.msg + " at byte " + strconv.Itoa(e.off)
}

// jsonReader reads JSON (RFC 8259) from a byte slice. first is true right
// after an object or array opens, before its first member or element.
type jsonReader struct {
	b       []byte
	i       int
	first   bool
	scratch []byte // unescaped strings
}

func (r *jsonReader) reset(b []byte) {
	r.b, r.i, r.first = b, 0, false
	r.scratch = r.scratch[:0]
}

func (r *jsonReader) syntax(msg string) error { return &syntaxError{msg: msg, off: r.i} }

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.i == len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// kind names the JSON value starting with c, for type errors.
func jsonKind(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	}
	return ""
}

// expect checks that the next value starts with one of the bytes in start;
// else it returns a type error (or a syntax error if nothing valid follows).
func (r *jsonReader) expect(want string, start byte) error {
	c := r.peek()
	if c == start {
		return nil
	}
	if c == 0 {
		return r.syntax("unexpected end of input")
	}
	if k := jsonKind(c); k != "" {
		return &typeError{want: want, got: k}
	}
	return r.syntax("invalid character " + strconv.QuoteRune(rune(c)))
}

func (r *jsonReader) object() error { return r.open("an object", '{') }

func (r *jsonReader) array() error { return r.open("an array", '[') }

// open moves past the opening bracket c of a container.
func (r *jsonReader) open(want string, c byte) error {
	if err := r.expect(want, c); err != nil {
		return err
	}
	r.i++
	r.first = true
	return nil
}

// next moves past the separator before the next member or element, or the
// closing bracket; it reports whether a member or element follows.
func (r *jsonReader) next(close byte) (bool, error) {
	c := r.peek()
	if c == close {
		r.i++
		r.first = false
		return false, nil
	}
	if !r.first {
		if c != ',' {
			if c == 0 {
				return false, r.syntax("unexpected end of input")
			}
			return false, r.syntax("expected ',' or '" + string(close) + "'")
		}
		r.i++
	}
	r.first = false
	return true, nil
}

func (r *jsonReader) key() ([]byte, bool, error) {
	ok, err := r.next('}')
	if !ok || err != nil {
		return nil, false, err
	}
	if r.peek() != '"' {
		return nil, false, r.syntax("expected a member name")
	}
	name, err := r.string()
	if err != nil {
		return nil, false, err
	}
	if r.peek() != ':' {
		return nil, false, r.syntax("expected ':' after a member name")
	}
	r.i++
	return name, true, nil
}

func (r *jsonReader) elem() (bool, error) { return r.next(']') }

func (r *jsonReader) str() ([]byte, error) {
	if err := r.expect("a string", '"'); err != nil {
		return nil, err
	}
	return r.string()
}

// string reads the string at r.i (its opening quote). Without escapes it
// returns a view of the input; with escapes, the unescaped copy in scratch.
func (r *jsonReader) string() ([]byte, error) {
	r.i++
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			return s, nil
		case c == '\\':
			r.scratch = append(r.scratch[:0], r.b[start:r.i]...)
			return r.escaped()
		case c < 0x20:
			return nil, r.syntax("control character in a string")
		case c >= utf8.RuneSelf:
			n, err := r.multiByte()
			if err != nil {
				return nil, err
			}
			r.i += n
		default:
			r.i++
		}
	}
	return nil, r.syntax("unterminated string")
}

// escaped continues a string that has escapes, from r.i, into scratch.
func (r *jsonReader) escaped() ([]byte, error) {
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return r.scratch, nil
		case c == '\\':
			if r.i+1 >= len(r.b) {
				return nil, r.syntax("unterminated string")
			}
			e := r.b[r.i+1]
			r.i += 2
			switch e {
			case '"', '\\', '/':
				r.scratch = append(r.scratch, e)
			case 'b':
				r.scratch = append(r.scratch, '\b')
			case 'f':
				r.scratch = append(r.scratch, '\f')
			case 'n':
				r.scratch = append(r.scratch, '\n')
			case 'r':
				r.scratch = append(r.scratch, '\r')
			case 't':
				r.scratch = append(r.scratch, '\t')
			case 'u':
				c1, ok := r.hex4()
				if !ok {
					return nil, r.syntax("invalid \\u escape")
				}
				rr := rune(c1)
				if utf16.IsSurrogate(rr) {
					// Only a high surrogate followed by an escaped low one.
					ok := rr < 0xdc00 && r.i+1 < len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u'
					if ok {
						r.i += 2
						c2, ok2 := r.hex4()
						rr = utf16.DecodeRune(rr, rune(c2))
						ok = ok2 && rr != utf8.RuneError
					}
					if !ok {
						return nil, r.syntax("unpaired surrogate in a \\u escape")
					}
				}
				r.scratch = utf8.AppendRune(r.scratch, rr)
			default:
				return nil, r.syntax("invalid escape in a string")
			}
		case c < 0x20:
			return nil, r.syntax("control character in a string")
		case c >= utf8.RuneSelf:
			n, err := r.multiByte()
			if err != nil {
				return nil, err
			}
			r.scratch = append(r.scratch, r.b[r.i:r.i+n]...)
			r.i += n
		default:
			r.scratch = append(r.scratch, c)
			r.i++
		}
	}
	return nil, r.syntax("unterminated string")
}

func (r *jsonReader) hex4() (uint16, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	var v uint16
	for _, c := range r.b[r.i : r.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(c)
	}
	r.i += 4
	return v, true
}

func (r *jsonReader) int() (int64, error) {
	c := r.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, r.expect("an integer", '0')
	}
	start := r.i
	neg := c == '-'
	if neg {
		r.i++
	}
	digits := r.i
	var u uint64
	overflow := false
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		d := uint64(r.b[r.i] - '0')
		if u > (math.MaxUint64-d)/10 {
			overflow = true
		} else {
			u = u*10 + d
		}
		r.i++
	}
	switch n := r.i - digits; {
	case n == 0:
		r.i = start
		return 0, r.syntax("invalid number")
	case n > 1 && r.b[digits] == '0':
		r.i = start
		return 0, r.syntax("invalid number: leading zero")
	}
	if r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i = start
		return 0, &typeError{want: "an integer", got: "a number with a fraction or exponent"}
	}
	switch {
	case overflow || !neg && u > math.MaxInt64 || neg && u > 1<<63:
		return 0, errOutOfRange
	case neg:
		return -int64(u), nil // -1<<63 wraps to itself
	}
	return int64(u), nil
}

func (r *jsonReader) bool() (bool, error) {
	c := r.peek()
	lit := "true"
	if c == 'f' {
		lit = "false"
	} else if c != 't' {
		return false, r.expect("a boolean", 't')
	}
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return false, r.syntax("invalid literal")
	}
	r.i += len(lit)
	return c == 't', nil
}

func (r *jsonReader) finish() error {
	if r.ws(); r.i != len(r.b) {
		return r.syntax("unexpected data after the document")
	}
	return nil
}

// msgpackReader reads msgpack from a byte slice. rem holds, per open map or
// array, how many keys or elements are left.
type msgpackReader struct {
	b     []byte
	i     int
	rem   [4]uint32
	depth int
}

func (r *msgpackReader) reset(b []byte) { r.b, r.i, r.depth = b, 0, 0 }

func (r *msgpackReader) syntax(msg string) error { return &syntaxError{msg: msg, off: r.i} }

// msgpackKind names the msgpack value starting with c, for type errors.
func msgpackKind(c byte) string {
	switch {
	case c <= 0x7f || c >= 0xe0 || c >= 0xcc && c <= 0xd3:
		return "an integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "a map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "an array"
	case c <= 0xbf || c >= 0xd9 && c <= 0xdb:
		return "a string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2 || c == 0xc3:
		return "a boolean"
	case c == 0xca || c == 0xcb:
		return "a float"
	case c >= 0xc4 && c <= 0xc6:
		return "binary data"
	case c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8:
		return "an extension"
	}
	return ""
}

func (r *msgpackReader) typeErr(want string) error {
	if r.i >= len(r.b) {
		return r.syntax("unexpected end of input")
	}
	if k := msgpackKind(r.b[r.i]); k != "" {
		return &typeError{want: want, got: k}
	}
	return r.syntax("invalid msgpack type byte")
}

// uint reads an n-byte big-endian unsigned integer.
func (r *msgpackReader) uint(n int) (uint64, error) {
	if len(r.b)-r.i < n {
		return 0, r.syntax("unexpected end of input")
	}
	var v uint64
	for _, c := range r.b[r.i : r.i+n] {
		v = v<<8 | uint64(c)
	}
	r.i += n
	return v, nil
}

// container reads a map or array header: fix is the fix-format base, n16 the
// 16-bit form's type byte (the 32-bit one follows it).
func (r *msgpackReader) container(want string, fix, n16 byte) error {
	if r.i >= len(r.b) {
		return r.syntax("unexpected end of input")
	}
	c := r.b[r.i]
	var n uint64
	var err error
	switch {
	case c&0xf0 == fix:
		n = uint64(c & 0x0f)
		r.i++
	case c == n16:
		r.i++
		n, err = r.uint(2)
	case c == n16+1:
		r.i++
		n, err = r.uint(4)
	default:
		return r.typeErr(want)
	}
	if err != nil {
		return err
	}
	// Every key and element takes at least one byte: a count beyond the
	// input is malformed, whatever it claims.
	if n > uint64(len(r.b)-r.i) {
		return r.syntax("container longer than the input")
	}
	if r.depth == len(r.rem) {
		return r.syntax("nested too deeply")
	}
	r.rem[r.depth] = uint32(n)
	r.depth++
	return nil
}

func (r *msgpackReader) object() error { return r.container("a map", 0x80, 0xde) }
func (r *msgpackReader) array() error  { return r.container("an array", 0x90, 0xdc) }

func (r *msgpackReader) elem() (bool, error) {
	if r.rem[r.depth-1] == 0 {
		r.depth--
		return false, nil
	}
	r.rem[r.depth-1]--
	return true, nil
}

func (r *msgpackReader) key() ([]byte, bool, error) {
	ok, _ := r.elem()
	if !ok {
		return nil, false, nil
	}
	name, err := r.str()
	if err != nil {
		var te *typeError
		if errors.As(err, &te) {
			return nil, false, r.syntax("map keys must be strings")
		}
		return nil, false, err
	}
	return name, true, nil
}

func (r *msgpackReader) str() ([]byte, error) {
	if r.i >= len(r.b) {
		return nil, r.syntax("unexpected end of input")
	}
	c := r.b[r.i]
	var n uint64
	var err error
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
		r.i++
	case c >= 0xd9 && c <= 0xdb:
		r.i++
		n, err = r.uint(1 << (c - 0xd9))
	default:
		return nil, r.typeErr("a string")
	}
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.i) {
		return nil, r.syntax("string longer than the input")
	}
	s := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return s, nil
}

func (r *msgpackReader) int() (int64, error) {
	if r.i >= len(r.b) {
		return 0, r.syntax("unexpected end of input")
	}
	c := r.b[r.i]
	switch {
	case c <= 0x7f:
		r.i++
		return int64(c), nil
	case c >= 0xe0:
		r.i++
		return int64(int8(c)), nil
	case c >= 0xcc && c <= 0xcf: // uint8..uint64
		r.i++
		v, err := r.uint(1 << (c - 0xcc))
		if err != nil {
			return 0, err
		}
		if v > math.MaxInt64 {
			return 0, errOutOfRange
		}
		return int64(v), nil
	case c >= 0xd0 && c <= 0xd3: // int8..int64
		r.i++
		n := 1 << (c - 0xd0)
		v, err := r.uint(n)
		if err != nil {
			return 0, err
		}
		shift := 64 - 8*n
		return int64(v<<shift) >> shift, nil
	}
	return 0, r.typeErr("an integer")
}

func (r *msgpackReader) bool() (bool, error) {
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case 0xc2:
			r.i++
			return false, nil
		case 0xc3:
			r.i++
			return true, nil
		}
	}
	return false, r.typeErr("a boolean")
}

func (r *msgpackReader) finish() error {
	if r.i != len(r.b) {
		return r.syntax("unexpected data after the document")
	}
	return nil
}

// multiByte returns the length of the multi-byte UTF-8 sequence at r.i in a
// string, or the syntax error for invalid UTF-8.
func (r *jsonReader) multiByte() (int, error) {
	if _, n := utf8.DecodeRune(r.b[r.i:]); n > 1 {
		return n, nil
	}
	return 0, r.syntax("invalid UTF-8 in a string")
}
