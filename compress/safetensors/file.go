package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/internal/regularfile"
)

// File is an open safetensors file whose header has been validated. Tensor
// data is read on demand, one tensor at a time.
type File struct {
	path      string
	f         *os.File
	dataStart int64
	header    *Header
	byName    []int32 // indices of header.Tensors sorted by name
}

// Open opens and validates a safetensors file; see the package comment for
// the rules. A file whose tensors do not exactly fill it, such as a
// truncated one, is refused here rather than at the first read.
func Open(path string) (*File, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		return nil, err
	}
	sf, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

func open(path string, f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: safetensors: file is %d bytes, too short for the 8-byte header length", path, size)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderLen {
		return nil, fmt.Errorf("%s: safetensors: header length %d exceeds the %d-byte limit (not a safetensors file?)", path, n, MaxHeaderLen)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%s: safetensors: header length %d exceeds the %d bytes after the length field (truncated file?)", path, n, size-8)
	}
	hdr := make([]byte, n)
	if _, err := f.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	h, byName, err := parse(hdr, size-8-int64(n))
	if err != nil {
		return nil, fmt.Errorf("%s: safetensors: %w", path, err)
	}
	return &File{path: path, f: f, dataStart: 8 + int64(n), header: h, byName: byName}, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Tensors returns the tensors in file order. The slice is shared; do not
// modify it.
func (f *File) Tensors() []Tensor { return f.header.Tensors }

// Infos returns the tensor descriptions in file order.
func (f *File) Infos() []formatbase.TensorInfo {
	out := make([]formatbase.TensorInfo, len(f.header.Tensors))
	for i, t := range f.header.Tensors {
		out[i] = t.TensorInfo
	}
	return out
}

// Metadata returns the header's "__metadata__" map (nil when absent).
func (f *File) Metadata() map[string]string { return f.header.Metadata }

// Tensor returns the named tensor's description and offsets.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := lookup(f.header.Tensors, f.byName, name)
	if !ok {
		return Tensor{}, false
	}
	return f.header.Tensors[i], true
}

// Raw returns the named tensor's stored bytes (little-endian, row-major).
func (f *File) Raw(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	buf := make([]byte, t.End-t.Begin)
	if err := f.ReadInto(t, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// Stream returns a reader of the named tensor's stored bytes and their
// count, for copying a tensor larger than one should hold.
func (f *File) Stream(name string) (io.Reader, int64, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, 0, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	n := t.End - t.Begin
	return formatbase.TensorStream(f.f, f.path, name, f.dataStart+t.Begin, n), n, nil
}

// ReadInto reads tensor t (from Tensors or Tensor) into buf, which must be
// exactly its size; it lets a caller reuse one buffer across tensors.
func (f *File) ReadInto(t Tensor, buf []byte) error {
	if int64(len(buf)) != t.End-t.Begin {
		return fmt.Errorf("%s: tensor %q is %d bytes, buffer holds %d", f.path, t.Name, t.End-t.Begin, len(buf))
	}
	if _, err := f.f.ReadAt(buf, f.dataStart+t.Begin); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank after Open
		}
		return fmt.Errorf("%s: reading tensor %q: %w", f.path, t.Name, err)
	}
	return nil
}

// Float32 returns the named tensor converted to float32 (F32, F16 or BF16).
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	raw, err := f.Raw(name)
	if err != nil {
		return nil, err
	}
	v, err := formatbase.DecodeFloat32(t.DType, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.path, name, err)
	}
	return v, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
