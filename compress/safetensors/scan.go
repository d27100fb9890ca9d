package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// scanner walks a header that utf8.Valid and json.Valid have accepted, in
// place. Unlike encoding/json's Decoder.Token it allocates nothing per
// token: a header of a couple of million tiny tensors (100 MiB) must cost a
// few times its size in memory, not gigabytes. It still sees what decoding
// into maps hides: duplicate keys and the exact type of every value. Every
// read is bounds-checked, so a header that slipped past json.Valid would be
// refused, not crash the scanner.
type scanner struct {
	b []byte
	i int
}

var errEnd = errors.New("unexpected end of header")

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// atEnd reports whether only whitespace is left.
func (s *scanner) atEnd() bool {
	s.skipSpace()
	return s.i >= len(s.b)
}

// expect consumes the delimiter c.
func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return fmt.Errorf("expected %q, found %s", c, s.describe())
	}
	s.i++
	return nil
}

// object reads an object, calling value after each key with the scanner at
// the key's value, which value must consume. Keys are decoded but may alias
// the header (see str): copy what outlives the call. Duplicate keys are the
// caller's to find.
func (s *scanner) object(value func(key []byte) error) error { return s.members(true, value) }

// members is object, with keys decoded or (decode false: the counting pass,
// which checks nothing) skipped and passed as nil.
func (s *scanner) members(decode bool, value func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		var key []byte
		var err error
		switch {
		case decode:
			key, err = s.str()
		case s.peek() != '"':
			err = fmt.Errorf("expected a string, found %s", s.describe())
		default:
			err = s.skipString()
		}
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := value(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return fmt.Errorf("expected ',' or '}', found %s", s.describe())
		}
	}
}

// str reads a string and returns its decoded bytes. A string without
// escapes (nearly all) is returned as a slice of the header, without
// copying; one with escapes is decoded into new memory. A \u escape of a
// lone UTF-16 surrogate is refused: encoding/json would replace it with
// U+FFFD, and two different names in the file could then become one.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, fmt.Errorf("expected a string, found %s", s.describe())
	}
	start := s.i
	escaped := false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++ // the escaped byte is never the closing quote
		case '"':
			s.i++
			raw := s.b[start:s.i]
			if !escaped {
				return raw[1 : len(raw)-1], nil
			}
			return decodeEscaped(raw)
		}
	}
	return nil, errEnd
}

// decodeEscaped decodes a JSON string literal (quotes included) that holds
// escapes, refusing unpaired surrogate escapes.
func decodeEscaped(raw []byte) ([]byte, error) {
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		i += 4
		switch {
		case !ok:
			return nil, fmt.Errorf("string %s has a malformed \\u escape", raw)
		case r >= 0xdc00 && r < 0xe000:
			return nil, fmt.Errorf("string %s holds an unpaired UTF-16 surrogate escape \\u%04x, which names no character", raw, r)
		case r >= 0xd800 && r < 0xdc00:
			low, ok := rune(0), i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u'
			if ok {
				low, ok = hex4(raw, i+3)
			}
			if !ok || low < 0xdc00 || low >= 0xe000 {
				return nil, fmt.Errorf("string %s holds an unpaired UTF-16 surrogate escape \\u%04x, which names no character", raw, r)
			}
			i += 6
		}
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("string %s: %v", raw, err)
	}
	return []byte(v), nil
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads a JSON number literal as written.
func (s *scanner) number() []byte {
	s.skipSpace()
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			s.i++
		default:
			return s.b[start:s.i]
		}
	}
	return s.b[start:s.i]
}

// ints reads an array of at most cap(dst) non-negative integers written as
// JSON integers (no fraction or exponent), each within MaxTensorBytes,
// appending to dst, which never grows.
func (s *scanner) ints(what string, dst []int64) ([]int64, error) {
	if s.peek() != '[' {
		return nil, fmt.Errorf("%s: expected '[', found %s", what, s.describe())
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return dst, nil
	}
	for {
		if c := s.peek(); c != '-' && (c < '0' || c > '9') {
			return nil, fmt.Errorf("%s holds %s, not an integer", what, s.describe())
		}
		lit := s.number()
		v, ok := parseDim(lit)
		if !ok {
			return nil, fmt.Errorf("%s holds %s, not an integer in [0, 2^56]", what, lit)
		}
		if len(dst) == cap(dst) {
			return nil, fmt.Errorf("%s has more than %d values", what, cap(dst))
		}
		dst = append(dst, v)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return dst, nil
		default:
			return nil, fmt.Errorf("%s: expected ',' or ']', found %s", what, s.describe())
		}
	}
}

// parseDim accepts what strconv.ParseInt(lit, 10, 64) reads as a value in
// [0, MaxTensorBytes] ("-0" included), without allocating.
func parseDim(lit []byte) (int64, bool) {
	neg := len(lit) > 0 && lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
		if v > formatbase.MaxTensorBytes {
			return 0, false
		}
	}
	if neg && v != 0 {
		return 0, false
	}
	return v, true
}

// skipString consumes a string without decoding it.
func (s *scanner) skipString() error {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return nil
		}
	}
	return errEnd
}

// skipValue consumes one value of any kind without decoding or checking
// it (the counting pass: the parsing pass checks).
func (s *scanner) skipValue() error {
	switch s.peek() {
	case '"':
		return s.skipString()
	case '{':
		return s.members(false, func([]byte) error { return s.skipValue() })
	case '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skipValue(); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return fmt.Errorf("expected ',' or ']', found %s", s.describe())
			}
		}
	case 't', 'f', 'n':
		for s.i < len(s.b) && s.b[s.i] >= 'a' && s.b[s.i] <= 'z' {
			s.i++
		}
		return nil
	case 0:
		return errEnd
	}
	if len(s.number()) == 0 {
		return fmt.Errorf("unexpected %s", s.describe())
	}
	return nil
}

// describe names the value at the scanner for an error message, without
// consuming it: "an object", "an array", "null", a quoted string or the
// literal as written.
func (s *scanner) describe() string {
	switch c := s.peek(); c {
	case 0:
		return "the end of the header"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '}':
		return "the end of an object"
	case ']':
		return "the end of an array"
	case '"':
		at := s.i
		v, err := s.str()
		s.i = at
		if err != nil {
			return "a malformed string"
		}
		return strconv.Quote(string(v))
	}
	at := s.i
	end := at
	for end < len(s.b) && end-at < 32 && s.b[end] != ',' && s.b[end] != '}' && s.b[end] != ']' && s.b[end] != ' ' {
		end++
	}
	return string(s.b[at:end])
}
