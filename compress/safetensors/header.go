// Package safetensors reads and writes the Hugging Face safetensors format:
// an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor, then the tensors' bytes.
//
// The reader is strict. A header is accepted only if all of this holds:
//   - N is at most MaxHeaderLen and at most the file size minus 8;
//   - the header is valid UTF-8 and one JSON object starting at its first
//     byte, followed only by whitespace (writers pad with spaces);
//   - no key appears twice, at any level;
//   - "__metadata__", if present, is an object of at most
//     MaxMetadataEntries string values;
//   - no string holds an unpaired UTF-16 surrogate escape ("\ud800"), which
//     names no character (encoding/json would turn it into U+FFFD);
//   - every other key is a non-empty tensor name whose value is an object
//     with exactly the keys "dtype" (a known whole-byte dtype), "shape" (an
//     array of at most MaxRank non-negative integers) and "data_offsets"
//     (two integers [begin, end], 0 <= begin <= end);
//   - end - begin equals the dtype's size times the product of the shape;
//   - sorted by offset, the tensors tile the data area exactly: no overlap,
//     no gap, and the last one ends at the end of the file (as the reference
//     Rust implementation requires), so truncated files are refused at Open.
//
// Parsing allocates a small multiple of the header's size, however many
// tensors it describes (see scanner), and finds tensors by name through a
// sorted index rather than a map.
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
	"slices"
	"sort"
	"strconv"
	"strings"
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

// MaxMetadataEntries bounds the "__metadata__" map. Writers store a handful
// of entries (e.g. "format": "pt"); the bound keeps a hostile header from
// spending its 100 MiB on map entries, which cost many times their bytes.
const MaxMetadataEntries = 1 << 16

// MaxRank bounds a tensor's number of dimensions (PyTorch's and NumPy's
// limit is 64), so that a shape costs a bounded amount of memory.
const MaxRank = 64

// Parse validates a JSON header (without the 8-byte length prefix) against
// a data area of dataLen bytes. Errors name the offending tensor; callers
// add the file name.
func Parse(header []byte, dataLen int64) (*Header, error) {
	h, _, err := parse(header, dataLen)
	return h, err
}

// parse is Parse that also returns the tensors' indices sorted by name, for
// lookups without a map (a map entry costs several times a tensor's bytes
// in the header).
func parse(header []byte, dataLen int64) (*Header, []int32, error) {
	if dataLen < 0 {
		return nil, nil, fmt.Errorf("negative data length %d", dataLen)
	}
	if len(header) > MaxHeaderLen {
		return nil, nil, fmt.Errorf("header is %d bytes, more than the %d-byte limit", len(header), MaxHeaderLen)
	}
	if !utf8.Valid(header) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, errors.New("header does not start with a JSON object '{'")
	}
	if !json.Valid(header) {
		return nil, nil, errors.New("header is not valid JSON")
	}
	// A first pass counts the keys so that the tensors take one allocation
	// of the right size, not a doubling slice's churn.
	n := 0
	count := &scanner{b: header}
	if err := count.members(false, func([]byte) error { n++; return count.skipValue() }); err != nil {
		return nil, nil, err
	}
	h := &Header{Tensors: make([]Tensor, 0, n)}
	sc := &scanner{b: header}
	haveMeta := false
	err := sc.object(func(key []byte) error {
		if string(key) == MetadataKey {
			if haveMeta {
				return fmt.Errorf("key %q appears twice", MetadataKey)
			}
			haveMeta = true
			m, err := sc.metadata()
			h.Metadata = m
			return err
		}
		if len(key) == 0 {
			return errors.New("empty tensor name")
		}
		t, err := sc.tensor(string(key))
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, t)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// json.Valid guarantees the rest is whitespace; check anyway so that
	// the scanner cannot silently stop early.
	if !sc.atEnd() {
		return nil, nil, errors.New("data after the header's JSON object")
	}
	if _, err := byName(h.Tensors); err != nil {
		return nil, nil, err
	}
	if err := validateLayout(h.Tensors, dataLen); err != nil {
		return nil, nil, err
	}
	// The layout check sorted the tensors into file order; index them anew.
	idx, err := byName(h.Tensors)
	if err != nil {
		return nil, nil, err
	}
	return h, idx, nil
}

// byName returns the indices of ts sorted by name, or an error naming the
// first name (in sorted order) that appears twice.
func byName(ts []Tensor) ([]int32, error) {
	idx := make([]int32, len(ts))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int { return strings.Compare(ts[a].Name, ts[b].Name) })
	for i := 1; i < len(idx); i++ {
		if ts[idx[i]].Name == ts[idx[i-1]].Name {
			return nil, fmt.Errorf("key %q appears twice", ts[idx[i]].Name)
		}
	}
	return idx, nil
}

// lookup finds name among ts through byName's index.
func lookup(ts []Tensor, idx []int32, name string) (int, bool) {
	i, found := slices.BinarySearchFunc(idx, name, func(j int32, name string) int { return strings.Compare(ts[j].Name, name) })
	if !found {
		return 0, false
	}
	return int(idx[i]), true
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

func (s *scanner) metadata() (map[string]string, error) {
	m := map[string]string{}
	err := s.object(func(key []byte) error {
		if _, dup := m[string(key)]; dup {
			return fmt.Errorf("key %q appears twice", key)
		}
		if len(m) == MaxMetadataEntries {
			return fmt.Errorf("more than %d entries", MaxMetadataEntries)
		}
		if s.peek() != '"' {
			return fmt.Errorf("value of %q is %s, not a string", key, s.describe())
		}
		k := string(key)
		v, err := s.str()
		if err != nil {
			return err
		}
		m[k] = string(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", MetadataKey, err)
	}
	return m, nil
}

func (s *scanner) tensor(name string) (Tensor, error) {
	t := Tensor{TensorInfo: formatbase.TensorInfo{Name: name}}
	var haveDType, haveShape, haveOffsets bool
	err := s.object(func(key []byte) error {
		dup := false
		switch string(key) {
		case "dtype":
			dup, haveDType = haveDType, true
		case "shape":
			dup, haveShape = haveShape, true
		case "data_offsets":
			dup, haveOffsets = haveOffsets, true
		default:
			return fmt.Errorf("unknown key %q", key)
		}
		if dup {
			return fmt.Errorf("key %q appears twice", key)
		}
		switch string(key) {
		case "dtype":
			if s.peek() != '"' {
				return fmt.Errorf("dtype is %s, not a string", s.describe())
			}
			v, err := s.str()
			if err != nil {
				return err
			}
			d, known := knownDType(v)
			if !known {
				return fmt.Errorf("unsupported dtype %q", v)
			}
			t.DType = d
		case "shape":
			var buf [MaxRank]int64
			dims, err := s.ints("shape", buf[:0])
			if err != nil {
				return err
			}
			t.Shape = make([]int, len(dims))
			for i, d := range dims {
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			var buf [MaxRank]int64
			offs, err := s.ints("data_offsets", buf[:0])
			if err != nil {
				return err
			}
			if len(offs) != 2 {
				return fmt.Errorf("data_offsets has %d values, want 2", len(offs))
			}
			t.Begin, t.End = offs[0], offs[1]
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

// dtypes are the element types a header may name, in formatbase's spelling.
var dtypes = []formatbase.DType{
	formatbase.BOOL, formatbase.U8, formatbase.I8, formatbase.F8E5M2, formatbase.F8E4M3, formatbase.F8E8M0,
	formatbase.I16, formatbase.U16, formatbase.F16, formatbase.BF16, formatbase.I32, formatbase.U32, formatbase.F32,
	formatbase.C64, formatbase.F64, formatbase.I64, formatbase.U64,
}

// knownDType returns the constant spelled s, so that millions of tensors
// share a handful of strings instead of one allocation each.
func knownDType(s []byte) (formatbase.DType, bool) {
	for _, d := range dtypes {
		if string(s) == string(d) {
			_, whole := d.Size()
			return d, whole
		}
	}
	return "", false
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
