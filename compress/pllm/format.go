// Package pllm reads and writes the .pllm container: one file holding a
// compressed model. The container is method-agnostic: it stores groups of
// named arrays whose meaning belongs to the compression method that wrote
// them, tensors kept uncompressed byte for byte, the model's side files
// (config.json, tokenizer files) and a JSON metadata record.
//
// FORMAT.md at the repository root documents the layout byte for byte.
// Every section carries a CRC-32C; a section table at the end of the file
// lets a reader find sections without reading payloads. Reader validates the
// whole file when it is opened and never trusts a length it has not bounded
// by the file size, so hostile input yields an error, never a panic or an
// unbounded allocation. Writer streams: memory does not grow with the size
// of the tensors written.
package pllm

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"unicode/utf8"
)

// Version is the format version this package writes and the only one it reads.
const Version = 1

// Fixed sizes of the framing, in bytes.
const (
	FileHeaderSize    = 16 // magic[8] version u32 flags u32
	TrailerSize       = 16 // index offset u64, end magic[8]
	SectionHeaderSize = 24 // kind u32, name_len u32, desc_len u32, flags u32, body_len u64
	SectionCRCSize    = 4
	IndexEntrySize    = 24 // offset u64, size u64, kind u32, reserved u32
)

// Limits that bound what a reader will allocate for framing data.
const (
	MaxNameLen       = 4096     // section, member and array names, method names
	MaxSideNameLen   = 255      // side file names (a single path element)
	MaxDescriptorLen = 64 << 20 // a section's JSON descriptor
	// MaxSections bounds the section count (a model has a few thousand
	// tensors at most), so that a hostile index cannot make the reader hold
	// a section record per 28 bytes of a huge file.
	MaxSections = 1 << 20
)

var (
	fileMagic = [8]byte{'P', 'L', 'L', 'M', '\r', '\n', 0x1a, '\n'}
	endMagic  = [8]byte{'P', 'L', 'L', 'M', '-', 'E', 'N', 'D'}
)

// Kind is the kind of a section.
type Kind uint32

// Section kinds. The numbers are part of the format.
const (
	KindMeta  Kind = 1 // the Meta record; exactly one per file
	KindGroup Kind = 2 // one compressed group
	KindRaw   Kind = 3 // one tensor stored uncompressed in its own dtype
	KindSide  Kind = 4 // one side file
	KindIndex Kind = 5 // the section table; exactly one, last
)

func (k Kind) String() string {
	switch k {
	case KindMeta:
		return "meta"
	case KindGroup:
		return "group"
	case KindRaw:
		return "raw"
	case KindSide:
		return "side"
	case KindIndex:
		return "index"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

func (k Kind) known() bool { return k >= KindMeta && k <= KindIndex }

// Encoding says how an array's values are stored.
type Encoding string

// Array encodings. The strings are part of the format.
const (
	// F32 stores IEEE 754 binary32 values, 4 bytes each, little-endian, bit-exact.
	F32 Encoding = "f32"
	// F16 stores IEEE 754 binary16 values, 2 bytes each, little-endian. The
	// writer rounds float32 to nearest even (overflow to ±Inf, NaN kept NaN);
	// the reader's float32 values are exact conversions of the stored halves.
	F16 Encoding = "f16"
	// Uint stores unsigned integers of Bits bits each (1..32), packed
	// LSB-first into a little-endian bit stream (see FORMAT.md).
	Uint Encoding = "uint"
	// Bytes stores opaque bytes.
	Bytes Encoding = "bytes"
)

// Array is one named array of a group. Exactly the slice matching Encoding is
// used: Floats for F32 and F16, Uints for Uint, Bytes for Bytes. Bits is the
// width of a Uint value and 0 for every other encoding.
type Array struct {
	Name     string
	Encoding Encoding
	Bits     int
	Floats   []float32
	Uints    []uint32
	Bytes    []byte
}

// F32Array returns an array stored as float32.
func F32Array(name string, v []float32) Array { return Array{Name: name, Encoding: F32, Floats: v} }

// F16Array returns an array stored as float16 (rounded to nearest even when written).
func F16Array(name string, v []float32) Array { return Array{Name: name, Encoding: F16, Floats: v} }

// UintArray returns an array of bit-packed unsigned values of the given width.
func UintArray(name string, bits int, v []uint32) Array {
	return Array{Name: name, Encoding: Uint, Bits: bits, Uints: v}
}

// BytesArray returns an array of opaque bytes.
func BytesArray(name string, v []byte) Array { return Array{Name: name, Encoding: Bytes, Bytes: v} }

// Count is the number of values in the array.
func (a Array) Count() int {
	switch a.Encoding {
	case F32, F16:
		return len(a.Floats)
	case Uint:
		return len(a.Uints)
	}
	return len(a.Bytes)
}

// CheckFinite reports the first NaN or ±Inf value of an f32 or f16 array,
// naming the array and the value's position. The container stores any
// float; a method whose arrays must be finite (all of this module's: see
// FORMAT.md) calls it when it reads them.
func (a Array) CheckFinite() error {
	for i, v := range a.Floats {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("array %q: value %d of %d is %v; stored floats must be finite", a.Name, i, len(a.Floats), v)
		}
	}
	return nil
}

// Info describes the array without its data.
func (a Array) Info() ArrayInfo {
	return ArrayInfo{Name: a.Name, Encoding: a.Encoding, Bits: a.Bits, Count: a.Count()}
}

// ArrayInfo describes an array without its data, as stored in a group's
// descriptor.
type ArrayInfo struct {
	Name     string   `json:"name"`
	Encoding Encoding `json:"encoding"`
	Bits     int      `json:"bits,omitempty"`
	Count    int      `json:"count"`
}

// BitsFor returns the width of a Uint array able to hold every value below n
// (ceil(log2 n), at least 1): the index width for a codebook of n entries.
func BitsFor(n uint64) int {
	if n <= 2 {
		return 1
	}
	return bits.Len64(n - 1)
}

// Member is one tensor a group compresses.
type Member struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	// DType is the tensor's dtype in the source checkpoint.
	DType DType `json:"dtype"`
	// Params is per-tensor data of the method (a scale, a measured error,
	// ...); valid JSON or empty. It is stored compacted.
	Params json.RawMessage `json:"params,omitempty"`
}

// NumElements is the member's real (unpadded) number of weights.
func (m Member) NumElements() int {
	n, _ := numElements(m.Shape)
	return int(n)
}

// Group is one compressed group: the tensors it stands for and the arrays the
// method needs to reconstruct them.
type Group struct {
	Name   string
	Method string
	// Params holds the method's settings for this group; valid JSON or
	// empty. It is stored compacted.
	Params  json.RawMessage
	Members []Member
	Arrays  []Array
}

// Array returns the group's array of the given name.
func (g Group) Array(name string) (Array, bool) {
	for _, a := range g.Arrays {
		if a.Name == name {
			return a, true
		}
	}
	return Array{}, false
}

// Info describes the group without its array data.
func (g Group) Info() GroupInfo {
	gi := GroupInfo{Name: g.Name, Method: g.Method, Params: g.Params, Members: g.Members}
	for _, a := range g.Arrays {
		gi.Arrays = append(gi.Arrays, a.Info())
	}
	return gi
}

// GroupInfo describes a group without its array data.
type GroupInfo struct {
	Name    string
	Method  string
	Params  json.RawMessage
	Members []Member
	Arrays  []ArrayInfo
}

// NumWeights is the real number of weights of the group's members: the
// denominator of the group's bits per weight.
func (g GroupInfo) NumWeights() int64 {
	var n int64
	for _, m := range g.Members {
		e, _ := numElements(m.Shape)
		n += e
	}
	return n
}

// Meta is the container's metadata record, stored as JSON.
type Meta struct {
	// Tool names the program and version that wrote the file.
	Tool string `json:"tool"`
	// SourceFormat is the format of the checkpoint that was compressed
	// ("safetensors", "llama2c").
	SourceFormat string `json:"source_format"`
	// ModelConfig is the model's Hugging Face config.json content, when known.
	ModelConfig json.RawMessage `json:"model_config,omitempty"`
	// Settings are the compression settings of the run (method-defined JSON).
	Settings json.RawMessage `json:"settings,omitempty"`
}

// groupDesc is the JSON descriptor of a group section.
type groupDesc struct {
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	Members []Member        `json:"members"`
	Arrays  []ArrayInfo     `json:"arrays"`
}

// rawDesc is the JSON descriptor of a raw tensor section.
type rawDesc struct {
	DType DType `json:"dtype"`
	Shape []int `json:"shape"`
}

// sideDesc is the JSON descriptor of a side file section: nothing yet.
type sideDesc struct{}

// payloadSize returns the stored byte size of count values in encoding e.
// It reports false for an unknown encoding, bad width or overflow.
func payloadSize(e Encoding, bitsPer, count int) (int64, bool) {
	if count < 0 {
		return 0, false
	}
	c := int64(count)
	const lim = math.MaxInt64 / 64
	if c > lim {
		return 0, false
	}
	switch e {
	case F32:
		if bitsPer != 0 {
			return 0, false
		}
		return 4 * c, true
	case F16:
		if bitsPer != 0 {
			return 0, false
		}
		return 2 * c, true
	case Bytes:
		if bitsPer != 0 {
			return 0, false
		}
		return c, true
	case Uint:
		if bitsPer < 1 || bitsPer > 32 {
			return 0, false
		}
		return (c*int64(bitsPer) + 7) / 8, true
	}
	return 0, false
}

// numElements is the product of shape's dimensions, false if a dimension is
// negative or the product overflows int64.
func numElements(shape []int) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

func checkName(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s name", what)
	case len(s) > max:
		return fmt.Errorf("%s name of %d bytes exceeds %d", what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s name %q is not valid UTF-8", what, s)
	}
	return nil
}

// checkSideName keeps side file names to one path element so that writing
// them out beside a reconstructed model can never escape the output folder.
func checkSideName(s string) error {
	if err := checkName("side file", s, MaxSideNameLen); err != nil {
		return err
	}
	if s == "." || s == ".." {
		return fmt.Errorf("side file name %q is not a file name", s)
	}
	for _, r := range s {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("side file name %q must be a single file name without separators or control characters", s)
		}
	}
	return nil
}

func checkShape(shape []int) (int64, error) {
	n, ok := numElements(shape)
	if !ok {
		return 0, fmt.Errorf("bad shape %v", shape)
	}
	return n, nil
}

// validateGroup checks a group descriptor for internal consistency and
// returns the real number of weights and the byte size of every array.
func validateGroup(d *groupDesc) (weights int64, sizes []int64, err error) {
	if err := checkName("method", d.Method, MaxNameLen); err != nil {
		return 0, nil, err
	}
	if len(d.Members) == 0 {
		return 0, nil, fmt.Errorf("no members")
	}
	seen := make(map[string]bool, len(d.Members))
	for _, m := range d.Members {
		if err := checkName("member", m.Name, MaxNameLen); err != nil {
			return 0, nil, err
		}
		if seen[m.Name] {
			return 0, nil, fmt.Errorf("duplicate member %q", m.Name)
		}
		seen[m.Name] = true
		n, err := checkShape(m.Shape)
		if err != nil {
			return 0, nil, fmt.Errorf("member %q: %v", m.Name, err)
		}
		if _, ok := m.DType.Size(); !ok {
			return 0, nil, fmt.Errorf("member %q: unknown dtype %q", m.Name, m.DType)
		}
		if weights > math.MaxInt64-n {
			return 0, nil, fmt.Errorf("member %q: weight count overflows", m.Name)
		}
		weights += n
	}
	if weights == 0 {
		return 0, nil, fmt.Errorf("members hold no weights")
	}
	seenA := make(map[string]bool, len(d.Arrays))
	sizes = make([]int64, len(d.Arrays))
	var total int64
	for i, a := range d.Arrays {
		if err := checkName("array", a.Name, MaxNameLen); err != nil {
			return 0, nil, err
		}
		if seenA[a.Name] {
			return 0, nil, fmt.Errorf("duplicate array %q", a.Name)
		}
		seenA[a.Name] = true
		sz, ok := payloadSize(a.Encoding, a.Bits, a.Count)
		if !ok {
			return 0, nil, fmt.Errorf("array %q: bad encoding %q, bits %d or count %d", a.Name, a.Encoding, a.Bits, a.Count)
		}
		if total > math.MaxInt64-sz {
			return 0, nil, fmt.Errorf("array %q: total size overflows", a.Name)
		}
		total += sz
		sizes[i] = sz
	}
	return weights, sizes, nil
}

// validateRaw checks a raw tensor descriptor and returns its data size.
func validateRaw(d *rawDesc) (elems, size int64, err error) {
	es, ok := d.DType.Size()
	if !ok {
		return 0, 0, fmt.Errorf("unknown dtype %q", d.DType)
	}
	n, err := checkShape(d.Shape)
	if err != nil {
		return 0, 0, err
	}
	if es > 0 && n > math.MaxInt64/int64(es) {
		return 0, 0, fmt.Errorf("shape %v too large", d.Shape)
	}
	return n, n * int64(es), nil
}
