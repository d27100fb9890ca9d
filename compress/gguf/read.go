package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sort"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/internal/regularfile"
)

// MaxDims is ggml's GGML_MAX_DIMS: a tensor has at most four dimensions.
const MaxDims = 4

// TensorInfo describes one tensor as the file stores it.
type TensorInfo struct {
	Name string
	Type GGMLType
	// Dims are the dimensions innermost (contiguous) first, as ggml's ne;
	// the row-major shape is their reverse.
	Dims []int
	// Offset is the tensor's position in the file (the data section's
	// start plus the stored offset); Size its length in bytes.
	Offset, Size int64
}

// Shape returns the row-major shape, outermost first: Dims reversed.
func (t TensorInfo) Shape() []int {
	s := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		s[len(s)-1-i] = d
	}
	return s
}

// NumElements is the product of the dimensions.
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// MaxMetadataBytes bounds the metadata section. Parsed values take several
// times their encoded size in memory, so an absurd metadata section is
// refused rather than followed; real tokenizers take a few megabytes.
const MaxMetadataBytes = 64 << 20

// Header is a parsed GGUF header: everything but the tensor data.
type Header struct {
	Version   uint32
	Metadata  Metadata
	Tensors   []TensorInfo
	Alignment int
	// DataOffset is where the data section starts.
	DataOffset int64
}

// Parse reads a GGUF header from r, a file of the given size, and checks
// every tensor against it (see the package comment).
func Parse(r io.ReaderAt, size int64) (*Header, error) {
	p := &parser{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	return p.header()
}

type parser struct {
	r    *bufio.Reader
	pos  int64
	size int64
	err  error
	buf  [8]byte
}

func (p *parser) left() int64 { return p.size - p.pos }

func (p *parser) fail(format string, a ...any) {
	if p.err == nil {
		p.err = fmt.Errorf(format, a...)
	}
}

// read fills n bytes of p.buf, or records a truncation naming what was
// being read.
func (p *parser) read(n int, what func() string) []byte {
	if p.err != nil {
		return p.buf[:n]
	}
	if int64(n) > p.left() {
		p.fail("truncated: %s at offset %d needs %d bytes, the file has %d left", what(), p.pos, n, p.left())
		return p.buf[:n]
	}
	if _, err := io.ReadFull(p.r, p.buf[:n]); err != nil {
		p.fail("reading %s at offset %d: %v", what(), p.pos, err)
	}
	p.pos += int64(n)
	return p.buf[:n]
}

func (p *parser) u32(what func() string) uint32 {
	return binary.LittleEndian.Uint32(p.read(4, what))
}

func (p *parser) u64(what func() string) uint64 {
	return binary.LittleEndian.Uint64(p.read(8, what))
}

func (p *parser) str(what func() string) string {
	n := p.u64(func() string { return what() + " length" })
	if p.err != nil {
		return ""
	}
	if n > uint64(p.left()) {
		p.fail("truncated: %s at offset %d claims %d bytes, the file has %d left", what(), p.pos-8, n, p.left())
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.r, b); err != nil {
		p.fail("reading %s at offset %d: %v", what(), p.pos, err)
		return ""
	}
	p.pos += int64(n)
	return string(b)
}

func label(s string) func() string { return func() string { return s } }

// count reads an element count and checks that count elements of at least
// minSize bytes each fit in what is left, so that nothing is allocated for
// a count the file cannot back.
func (p *parser) count(what string, minSize int) int {
	n := p.u64(label(what))
	if p.err != nil {
		return 0
	}
	if hi, lo := bits.Mul64(n, uint64(minSize)); hi != 0 || lo > uint64(p.left()) {
		p.fail("%s %d at offset %d is more than the %d bytes left could hold", what, n, p.pos-8, p.left())
		return 0
	}
	return int(n)
}

func (p *parser) header() (*Header, error) {
	if p.size < 4+4+8+8 {
		return nil, fmt.Errorf("file is %d bytes, shorter than the 24-byte GGUF header", p.size)
	}
	magic := p.read(4, label("magic"))
	if string(magic) != Magic {
		return nil, fmt.Errorf("not a GGUF file: starts with %q, not %q", magic, Magic)
	}
	h := &Header{Version: p.u32(label("version"))}
	switch v := h.Version; {
	case v == 2 || v == 3:
	case v == 1:
		return nil, fmt.Errorf("GGUF version 1 is not supported (llama.cpp no longer reads it either); convert the file with a current llama.cpp")
	case bits.ReverseBytes32(v) == 2 || bits.ReverseBytes32(v) == 3:
		return nil, fmt.Errorf("big-endian GGUF (version %d) is not supported", bits.ReverseBytes32(v))
	default:
		return nil, fmt.Errorf("GGUF version %d is not supported (want 2 or 3)", v)
	}
	nt := p.u64(label("tensor count"))
	nkv := p.count("metadata count", 8+4+1)
	// A tensor descriptor is at least a name length, n_dims, type and offset.
	if hi, lo := bits.Mul64(nt, 24); p.err == nil && (hi != 0 || lo > uint64(p.left())) {
		return nil, fmt.Errorf("tensor count %d is more than the %d bytes left could describe", nt, p.left())
	}
	if p.err != nil {
		return nil, p.err
	}
	seen := make(map[string]bool, nkv)
	h.Metadata = make(Metadata, 0, nkv)
	for i := 0; i < nkv && p.err == nil; i++ {
		key := p.str(func() string { return fmt.Sprintf("metadata key %d", i) })
		if p.err != nil {
			break
		}
		if seen[key] {
			return nil, fmt.Errorf("metadata key %q appears twice", key)
		}
		seen[key] = true
		t := ValueType(p.u32(func() string { return fmt.Sprintf("type of metadata %q", key) }))
		v := p.value(key, t, false)
		h.Metadata = append(h.Metadata, KV{Key: key, Value: v})
		if p.err == nil && p.pos > MaxMetadataBytes {
			return nil, fmt.Errorf("the metadata runs past %d bytes (at key %q), more than this tool reads", MaxMetadataBytes, key)
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	var err error
	if h.Alignment, err = alignmentOf(h.Metadata); err != nil {
		return nil, err
	}
	h.Tensors = make([]TensorInfo, 0, nt)
	names := make(map[string]bool, nt)
	for i := 0; i < int(nt); i++ {
		t, err := p.tensorInfo(i)
		if err != nil {
			return nil, err
		}
		if names[t.Name] {
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		names[t.Name] = true
		h.Tensors = append(h.Tensors, t)
	}
	h.DataOffset = alignUp(p.pos, int64(h.Alignment))
	if err := h.placeTensors(p.size); err != nil {
		return nil, err
	}
	return h, nil
}

// value reads one metadata value of type t.
func (p *parser) value(key string, t ValueType, inArray bool) Value {
	what := func() string { return fmt.Sprintf("value of metadata %q", key) }
	v := Value{Type: t}
	switch {
	case t == TypeString:
		v.Str = p.str(what)
	case t == TypeArray:
		if inArray {
			p.fail("metadata %q: nested arrays are not supported (llama.cpp refuses them too)", key)
			return v
		}
		v.Elem = ValueType(p.u32(func() string { return fmt.Sprintf("element type of metadata %q", key) }))
		if p.err != nil {
			return v
		}
		if v.Elem != TypeArray && v.Elem.minSize() == 0 {
			p.fail("metadata %q: unknown array element type %d", key, uint32(v.Elem))
			return v
		}
		n := p.count(fmt.Sprintf("metadata %q array length", key), max(v.Elem.minSize(), 1))
		if int64(n)*int64(max(v.Elem.minSize(), 1)) > MaxMetadataBytes {
			p.fail("metadata %q: an array of %d items is more than the %d bytes of metadata this tool reads", key, n, MaxMetadataBytes)
			return v
		}
		v.Items = make([]Value, 0, n)
		for i := 0; i < n && p.err == nil; i++ {
			v.Items = append(v.Items, p.value(key, v.Elem, true))
		}
	case t.fixedSize() > 0:
		b := p.read(t.fixedSize(), what)
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		v.Bits = u
		if t == TypeBool && u > 1 && p.err == nil {
			p.fail("metadata %q: boolean value %d is neither 0 nor 1", key, u)
		}
	default:
		p.fail("metadata %q: unknown value type %d", key, uint32(t))
	}
	return v
}

// alignmentOf returns general.alignment, checked, or the default.
func alignmentOf(md Metadata) (int, error) {
	v, ok := md.Get(KeyAlignment)
	if !ok {
		return DefaultAlignment, nil
	}
	if v.Type != TypeUint32 {
		return 0, fmt.Errorf("%s is a %s, want uint32", KeyAlignment, v.Type)
	}
	if v.Bits == 0 || v.Bits&(v.Bits-1) != 0 {
		return 0, fmt.Errorf("%s %d is not a power of two", KeyAlignment, v.Bits)
	}
	return int(v.Bits), nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

func (p *parser) tensorInfo(i int) (TensorInfo, error) {
	var t TensorInfo
	t.Name = p.str(func() string { return fmt.Sprintf("tensor %d name", i) })
	if p.err != nil {
		return t, p.err
	}
	if t.Name == "" {
		return t, fmt.Errorf("tensor %d has an empty name", i)
	}
	nd := p.u32(func() string { return fmt.Sprintf("tensor %q dimension count", t.Name) })
	if p.err != nil {
		return t, p.err
	}
	if nd > MaxDims {
		return t, fmt.Errorf("tensor %q has %d dimensions, more than ggml's %d", t.Name, nd, MaxDims)
	}
	t.Dims = make([]int, nd)
	elems := uint64(1)
	for d := range t.Dims {
		n := p.u64(func() string { return fmt.Sprintf("tensor %q dimension %d", t.Name, d) })
		if p.err != nil {
			return t, p.err
		}
		hi, lo := bits.Mul64(elems, n)
		if n > formatbase.MaxTensorBytes || hi != 0 || lo > formatbase.MaxTensorBytes {
			return t, fmt.Errorf("tensor %q: dimensions too large", t.Name)
		}
		elems = lo
		t.Dims[d] = int(n)
	}
	t.Type = GGMLType(p.u32(func() string { return fmt.Sprintf("tensor %q type", t.Name) }))
	off := p.u64(func() string { return fmt.Sprintf("tensor %q offset", t.Name) })
	if p.err != nil {
		return t, p.err
	}
	block, size, ok := t.Type.layout()
	if !ok {
		return t, fmt.Errorf("tensor %q has type %s, which is not supported: F32, F16, BF16, Q8_0 (dequantized to F32), I8, I16, I32, I64 and F64 are; requantize the model to Q8_0 or F16 with llama.cpp's llama-quantize first", t.Name, t.Type)
	}
	if len(t.Dims) > 0 && t.Dims[0]%block != 0 {
		return t, fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block of %d", t.Name, t.Dims[0], t.Type, block)
	}
	t.Size = int64(elems) / int64(block) * int64(size)
	if off > formatbase.MaxTensorBytes {
		return t, fmt.Errorf("tensor %q: offset %d is past any file", t.Name, off)
	}
	t.Offset = int64(off) // relative until placeTensors
	return t, nil
}

// placeTensors checks every tensor's offset (aligned, inside the file, no
// two overlapping) and makes it absolute.
func (h *Header) placeTensors(fileSize int64) error {
	order := make([]int, len(h.Tensors))
	for i := range h.Tensors {
		t := &h.Tensors[i]
		order[i] = i
		if t.Offset%int64(h.Alignment) != 0 {
			return fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, h.Alignment)
		}
		end := h.DataOffset + t.Offset + t.Size
		if end > fileSize {
			return fmt.Errorf("truncated: tensor %q (%s %v) needs bytes %d to %d, the file has %d", t.Name, t.Type, t.Dims, h.DataOffset+t.Offset, end, fileSize)
		}
		t.Offset += h.DataOffset
	}
	sort.Slice(order, func(a, b int) bool { return h.Tensors[order[a]].Offset < h.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		a, b := h.Tensors[order[k-1]], h.Tensors[order[k]]
		if a.Offset+a.Size > b.Offset {
			return fmt.Errorf("tensors %q and %q overlap", a.Name, b.Name)
		}
	}
	return nil
}

// File is an open GGUF file; its tensors are read on demand, and it is safe
// for concurrent use.
type File struct {
	*Header
	path  string
	f     *os.File
	index map[string]int
}

// Open opens and checks a GGUF file.
func Open(path string) (*File, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := Parse(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: gguf: %w", path, err)
	}
	gf := &File{Header: h, path: path, f: f, index: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		gf.index[t.Name] = i
	}
	return gf, nil
}

// IsGGUF reports whether the file at path is a regular file that starts
// with the GGUF magic, whatever its name.
func IsGGUF(path string) bool {
	f, err := regularfile.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(Magic))
	_, err = io.ReadFull(f, b)
	return err == nil && string(b) == Magic
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Info returns the named tensor's description.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Raw returns the named tensor's bytes as stored.
func (f *File) Raw(name string) ([]byte, error) {
	t, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	buf := make([]byte, t.Size)
	if _, err := f.f.ReadAt(buf, t.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file shrank after Open
		}
		return nil, fmt.Errorf("%s: reading tensor %q: %w", f.path, name, err)
	}
	return buf, nil
}

// Stream returns a reader of the named tensor's bytes as stored, read from
// the file as they are consumed (a tensor need not fit in memory twice),
// and their count. A file cut short after Open gives io.ErrUnexpectedEOF.
func (f *File) Stream(name string) (io.Reader, int64, error) {
	t, ok := f.Info(name)
	if !ok {
		return nil, 0, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	return &shortReadCheck{r: io.NewSectionReader(f.f, t.Offset, t.Size), left: t.Size}, t.Size, nil
}

// shortReadCheck turns an end of file before left bytes into
// io.ErrUnexpectedEOF, as a reader of a known length should report it.
type shortReadCheck struct {
	r    io.Reader
	left int64
}

func (s *shortReadCheck) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
