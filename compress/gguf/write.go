package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME
// less its terminating NUL).
const MaxNameLen = 63

// WriteTensor describes a tensor to write: name, type and ggml dimensions
// (innermost first).
type WriteTensor struct {
	Name string
	Type GGMLType
	Dims []int
}

// Size returns the tensor's byte length, or an error naming it.
func (t WriteTensor) Size() (int64, error) {
	block, size, ok := t.Type.layout()
	if !ok {
		return 0, fmt.Errorf("tensor %q: type %s is not one this package writes", t.Name, t.Type)
	}
	if len(t.Dims) > MaxDims {
		return 0, fmt.Errorf("tensor %q: %d dimensions, more than ggml's %d", t.Name, len(t.Dims), MaxDims)
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 || d != 0 && n > formatbase.MaxTensorBytes/int64(d) {
			return 0, fmt.Errorf("tensor %q: dimensions %v out of range", t.Name, t.Dims)
		}
		n *= int64(d)
	}
	if len(t.Dims) > 0 && t.Dims[0]%block != 0 {
		return 0, fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block of %d", t.Name, t.Dims[0], t.Type, block)
	}
	return n / int64(block) * int64(size), nil
}

// Writer writes a GGUF version 3 file through formatbase.Output: it appears
// at its path only when complete. Tensors are written one at a time, in the
// order given to Create.
type Writer struct {
	out     *formatbase.Output
	tensors []WriteTensor
	sizes   []int64
	align   int64
	next    int
	pos     int64
}

// Create writes the header of a GGUF file with metadata md and the given
// tensors; their data follow with Write. The alignment is md's
// general.alignment when present, else 32.
func Create(path string, md Metadata, tensors []WriteTensor, opt formatbase.WriteOptions) (*Writer, error) {
	hdr, sizes, align, err := encodeHeader(md, tensors)
	if err != nil {
		return nil, fmt.Errorf("%s: gguf: %w", path, err)
	}
	out, err := formatbase.CreateOutput(path, opt)
	if err != nil {
		return nil, err
	}
	w := &Writer{out: out, tensors: tensors, sizes: sizes, align: align}
	if err := w.write(hdr); err != nil {
		out.Abort()
		return nil, err
	}
	return w, nil
}

// EncodeMetadata returns a GGUF file holding md and no tensors: the form in
// which a GGUF model's metadata travels inside a .pllm file.
func EncodeMetadata(md Metadata) ([]byte, error) {
	hdr, _, _, err := encodeHeader(md, nil)
	return hdr, err
}

// encodeHeader encodes the header, padded to the alignment, and returns it
// with each tensor's size.
func encodeHeader(md Metadata, tensors []WriteTensor) ([]byte, []int64, int64, error) {
	a, err := alignmentOf(md)
	if err != nil {
		return nil, nil, 0, err
	}
	align := int64(a)
	var b bytes.Buffer
	b.WriteString(Magic)
	put32(&b, Version)
	put64(&b, uint64(len(tensors)))
	put64(&b, uint64(len(md)))
	seen := map[string]bool{}
	for _, kv := range md {
		if seen[kv.Key] {
			return nil, nil, 0, fmt.Errorf("metadata key %q given twice", kv.Key)
		}
		seen[kv.Key] = true
		putStr(&b, kv.Key)
		put32(&b, uint32(kv.Value.Type))
		if err := putValue(&b, kv.Key, kv.Value, false); err != nil {
			return nil, nil, 0, err
		}
	}
	sizes := make([]int64, len(tensors))
	names := map[string]bool{}
	var off int64
	for i, t := range tensors {
		if t.Name == "" || len(t.Name) > MaxNameLen {
			return nil, nil, 0, fmt.Errorf("tensor name %q: want 1 to %d bytes", t.Name, MaxNameLen)
		}
		if names[t.Name] {
			return nil, nil, 0, fmt.Errorf("tensor %q given twice", t.Name)
		}
		names[t.Name] = true
		if sizes[i], err = t.Size(); err != nil {
			return nil, nil, 0, err
		}
		putStr(&b, t.Name)
		put32(&b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			put64(&b, uint64(d))
		}
		put32(&b, uint32(t.Type))
		put64(&b, uint64(off))
		off = alignUp(off+sizes[i], align)
	}
	if len(tensors) > 0 {
		b.Write(make([]byte, alignUp(int64(b.Len()), align)-int64(b.Len())))
	}
	return b.Bytes(), sizes, align, nil
}

func put32(b *bytes.Buffer, v uint32) { b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func put64(b *bytes.Buffer, v uint64) { b.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func putStr(b *bytes.Buffer, s string) {
	put64(b, uint64(len(s)))
	b.WriteString(s)
}

func putValue(b *bytes.Buffer, key string, v Value, inArray bool) error {
	switch {
	case v.Type == TypeString:
		putStr(b, v.Str)
	case v.Type == TypeArray:
		if inArray {
			return fmt.Errorf("metadata %q: nested arrays are not supported", key)
		}
		put32(b, uint32(v.Elem))
		put64(b, uint64(len(v.Items)))
		for _, it := range v.Items {
			if it.Type != v.Elem {
				return fmt.Errorf("metadata %q: a %s item in an array of %s", key, it.Type, v.Elem)
			}
			if err := putValue(b, key, it, true); err != nil {
				return err
			}
		}
	case v.Type.fixedSize() > 0:
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], v.Bits)
		b.Write(buf[:v.Type.fixedSize()])
	default:
		return fmt.Errorf("metadata %q: unknown value type %d", key, uint32(v.Type))
	}
	return nil
}

func (w *Writer) write(p []byte) error {
	_, err := w.out.Write(p)
	w.pos += int64(len(p))
	return err
}

// Write writes the data of the next tensor, which must be name.
func (w *Writer) Write(name string, data []byte) error {
	if w.next >= len(w.tensors) {
		return fmt.Errorf("%s: gguf: tensor %q written after all %d", w.out.Path(), name, len(w.tensors))
	}
	t := w.tensors[w.next]
	if t.Name != name {
		return fmt.Errorf("%s: gguf: tensor %q written where %q comes next", w.out.Path(), name, t.Name)
	}
	if int64(len(data)) != w.sizes[w.next] {
		return fmt.Errorf("%s: gguf: tensor %q: %d bytes, its type and dimensions need %d", w.out.Path(), name, len(data), w.sizes[w.next])
	}
	w.next++
	if err := w.write(data); err != nil {
		return err
	}
	// Every tensor is padded, the last too, as ggml's writer does: a
	// reader that loads the whole data section expects the padded length.
	return w.write(make([]byte, alignUp(w.pos, w.align)-w.pos))
}

// Close checks that every tensor was written and puts the file in place.
func (w *Writer) Close() error {
	if w.next != len(w.tensors) {
		w.out.Abort()
		return fmt.Errorf("%s: gguf: %d of %d tensors written", w.out.Path(), w.next, len(w.tensors))
	}
	return w.out.Commit()
}

// Abort discards the file; a no-op after Close.
func (w *Writer) Abort() { w.out.Abort() }
