// Package safetensors reads and writes the Hugging Face safetensors format:
// an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor, then the tensors' bytes.
//
// The reader is strict. A header is accepted only if all of this holds:
//   - N is at most MaxHeaderLen and at most the file size minus 8;
//   - the header is valid UTF-8 and one JSON object starting at its first
//     byte, followed only by whitespace (writers pad with spaces);
//   - no key appears twice, at any level;
//   - "__metadata__", if present, is an object of string values;
//   - every other key is a non-empty tensor name whose value is an object
//     with exactly the keys "dtype" (a known whole-byte dtype), "shape" (an
//     array of non-negative integers) and "data_offsets" (two integers
//     [begin, end], 0 <= begin <= end);
//   - end - begin equals the dtype's size times the product of the shape;
//   - sorted by offset, the tensors tile the data area exactly: no overlap,
//     no gap, and the last one ends at the end of the file (as the reference
//     Rust implementation requires), so truncated files are refused at Open.
//
// Reads are per tensor with ReadAt, so memory does not grow with the file,
// and a File is safe for concurrent use. The Writer streams tensors in a
// fixed order into a temporary file that replaces the destination only when
// complete.
package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// MaxHeaderLen bounds the JSON header (100 MiB), so a corrupt length cannot
// make Open allocate without limit.
const MaxHeaderLen = 100 << 20

// MetadataKey is the reserved header key holding free-form string metadata.
const MetadataKey = "__metadata__"

// Tensor is one tensor of a safetensors file: its description and the byte
// range [Begin, End) of its data, relative to the start of the data area
// (the header's "data_offsets").
type Tensor struct {
	formatbase.TensorInfo
	Begin, End int64
}

// Header is a parsed, validated safetensors header.
type Header struct {
	// Tensors in file order (by data offset; zero-length tensors sharing an
	// offset keep their header order).
	Tensors []Tensor
	// Metadata is the "__metadata__" map, nil when absent.
	Metadata map[string]string
}

// Parse validates a JSON header (without the 8-byte length prefix) against
// a data area of dataLen bytes. Errors name the offending tensor; callers
// add the file name.
func Parse(header []byte, dataLen int64) (*Header, error) {
	if dataLen < 0 {
		return nil, fmt.Errorf("negative data length %d", dataLen)
	}
	if len(header) > MaxHeaderLen {
		return nil, fmt.Errorf("header is %d bytes, more than the %d-byte limit", len(header), MaxHeaderLen)
	}
	if !utf8.Valid(header) {
		return nil, errors.New("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, errors.New("header does not start with a JSON object '{'")
	}
	if !json.Valid(header) {
		return nil, errors.New("header is not valid JSON")
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(header))}
	p.dec.UseNumber()
	h := &Header{}
	err := p.object(func(key string) error {
		if key == MetadataKey {
			m, err := p.metadata()
			h.Metadata = m
			return err
		}
		if key == "" {
			return errors.New("empty tensor name")
		}
		t, err := p.tensor(key)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// json.Valid guarantees the rest is whitespace; check anyway so that
	// the parser cannot silently stop early.
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, errors.New("data after the header's JSON object")
	}
	if err := validateLayout(h.Tensors, dataLen); err != nil {
		return nil, err
	}
	return h, nil
}

// validateLayout checks each tensor's byte length and that, sorted by
// offset, the tensors tile [0, dataLen) exactly. It sorts ts in place.
func validateLayout(ts []Tensor, dataLen int64) error {
	for _, t := range ts {
		n, err := t.ByteLen()
		if err != nil {
			return err
		}
		if t.Begin > t.End {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] end before they begin", t.Name, t.Begin, t.End)
		}
		if t.End > dataLen {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] extend past the %d-byte data area (truncated file?)", t.Name, t.Begin, t.End, dataLen)
		}
		if t.End-t.Begin != n {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", t.Name, t.Shape, t.DType, n, t.Begin, t.End, t.End-t.Begin)
		}
	}
	// Sorting by end as well puts a zero-length tensor before a tensor that
	// starts at the same offset, so it does not look like an overlap.
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Begin != ts[j].Begin {
			return ts[i].Begin < ts[j].Begin
		}
		return ts[i].End < ts[j].End
	})
	var pos int64
	for i, t := range ts {
		switch {
		case t.Begin < pos:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q", t.Name, t.Begin, t.End, ts[i-1].Name)
		case t.Begin > pos:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] leave a gap of %d unused bytes before it", t.Name, t.Begin, t.End, t.Begin-pos)
		}
		pos = t.End
	}
	if pos != dataLen {
		return fmt.Errorf("%d bytes after the last tensor are not described by the header", dataLen-pos)
	}
	return nil
}

// parser walks the header's JSON tokens, which, unlike decoding into a map,
// sees duplicate keys and the exact type of every value.
type parser struct{ dec *json.Decoder }

// object reads a JSON object, calling value for each key to consume its
// value; duplicate keys are an error.
func (p *parser) object(value func(key string) error) error {
	if err := p.delim('{'); err != nil {
		return err
	}
	seen := map[string]bool{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("unexpected %v where an object key belongs", tok)
		}
		if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if err := value(key); err != nil {
			return err
		}
	}
	return p.delim('}')
}

func (p *parser) delim(d json.Delim) error {
	tok, err := p.dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("expected %q, found %v", d, describe(tok))
	}
	return nil
}

func (p *parser) metadata() (map[string]string, error) {
	m := map[string]string{}
	err := p.object(func(key string) error {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		s, ok := tok.(string)
		if !ok {
			return fmt.Errorf("value of %q is %s, not a string", key, describe(tok))
		}
		m[key] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", MetadataKey, err)
	}
	return m, nil
}

func (p *parser) tensor(name string) (Tensor, error) {
	t := Tensor{TensorInfo: formatbase.TensorInfo{Name: name}}
	var haveDType, haveShape, haveOffsets bool
	err := p.object(func(key string) error {
		switch key {
		case "dtype":
			tok, err := p.dec.Token()
			if err != nil {
				return err
			}
			s, ok := tok.(string)
			if !ok {
				return fmt.Errorf("dtype is %s, not a string", describe(tok))
			}
			t.DType, haveDType = formatbase.DType(s), true
			if _, known := t.DType.Size(); !known {
				return fmt.Errorf("unsupported dtype %q", s)
			}
		case "shape":
			dims, err := p.ints("shape")
			if err != nil {
				return err
			}
			t.Shape, haveShape = make([]int, len(dims)), true
			for i, d := range dims {
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			offs, err := p.ints("data_offsets")
			if err != nil {
				return err
			}
			if len(offs) != 2 {
				return fmt.Errorf("data_offsets has %d values, want 2", len(offs))
			}
			t.Begin, t.End, haveOffsets = offs[0], offs[1], true
		default:
			return fmt.Errorf("unknown key %q", key)
		}
		return nil
	})
	if err == nil {
		switch {
		case !haveDType:
			err = errors.New("no dtype")
		case !haveShape:
			err = errors.New("no shape")
		case !haveOffsets:
			err = errors.New("no data_offsets")
		}
	}
	if err != nil {
		return t, fmt.Errorf("tensor %q: %w", name, err)
	}
	return t, nil
}

// ints reads an array of non-negative integers, written as JSON integers
// (no fraction or exponent), each within MaxTensorBytes.
func (p *parser) ints(what string) ([]int64, error) {
	if err := p.delim('['); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var out []int64
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s holds %s, not an integer", what, describe(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || v < 0 || v > formatbase.MaxTensorBytes {
			return nil, fmt.Errorf("%s holds %s, not an integer in [0, 2^56]", what, num)
		}
		out = append(out, v)
	}
	if err := p.delim(']'); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch v {
		case '{', '}':
			return "an object"
		}
		return "an array"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	}
	return fmt.Sprint(tok)
}

// encodeHeader returns the JSON header for tensors laid out in the given
// order, "__metadata__" first with sorted keys, padded with spaces to a
// multiple of 8 bytes so that the data area is 8-byte aligned, as the
// reference implementation does.
func encodeHeader(ts []Tensor, metadata map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	if metadata != nil {
		writeString(&b, MetadataKey)
		b.WriteString(":{")
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	for i, t := range ts {
		if i > 0 || metadata != nil {
			b.WriteByte(',')
		}
		writeString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, t.Begin, t.End)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

func writeString(b *bytes.Buffer, s string) {
	// Without HTML escaping, names such as "a<b" stay readable; the result
	// is valid JSON either way.
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode appends a newline
}
