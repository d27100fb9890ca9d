package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// Writer streams a safetensors file. Every tensor is declared up front, so
// the header, with exact offsets, is written first and each tensor's bytes
// go straight to disk: memory holds one tensor at a time, never the model.
type Writer struct {
	out     *formatbase.Output
	tensors []Tensor
	next    int
	err     error // sticky I/O error
}

// Create is CreateWith without Overwrite: an existing file at path is an
// error.
func Create(path string, tensors []formatbase.TensorInfo, metadata map[string]string) (*Writer, error) {
	return CreateWith(path, tensors, metadata, formatbase.WriteOptions{})
}

// CreateWith starts a safetensors file holding tensors, in the given order,
// and the optional string metadata (stored as "__metadata__"). Tensors are
// then passed to Write in that same order, and Close moves the finished file
// to path. Names must be unique, non-empty, valid UTF-8 and not
// "__metadata__"; dtypes must be known.
func CreateWith(path string, tensors []formatbase.TensorInfo, metadata map[string]string, opt formatbase.WriteOptions) (*Writer, error) {
	ts := make([]Tensor, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var pos int64
	for i, info := range tensors {
		switch {
		case info.Name == "" || info.Name == MetadataKey || !utf8.ValidString(info.Name):
			return nil, fmt.Errorf("%s: invalid tensor name %q", path, info.Name)
		case seen[info.Name]:
			return nil, fmt.Errorf("%s: tensor %q given twice", path, info.Name)
		}
		seen[info.Name] = true
		n, err := info.ByteLen()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		info.Shape = append([]int(nil), info.Shape...)
		ts[i] = Tensor{TensorInfo: info, Begin: pos, End: pos + n}
		if pos += n; pos > formatbase.MaxTensorBytes {
			return nil, fmt.Errorf("%s: tensors total more than %d bytes", path, int64(formatbase.MaxTensorBytes))
		}
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s: metadata %q is not valid UTF-8", path, k)
		}
	}
	hdr := encodeHeader(ts, metadata)
	// The reader's rules are the format's definition; a header it would
	// refuse must never reach the disk.
	if _, err := Parse(hdr, pos); err != nil {
		return nil, fmt.Errorf("%s: internal error, header would be refused: %w", path, err)
	}
	out, err := formatbase.CreateOutput(path, opt)
	if err != nil {
		return nil, err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	w := &Writer{out: out, tensors: ts}
	if _, err := out.Write(lenBuf[:]); err != nil {
		out.Abort()
		return nil, err
	}
	if _, err := out.Write(hdr); err != nil {
		out.Abort()
		return nil, err
	}
	return w, nil
}

// Write writes the next tensor's bytes. name must be the next tensor in the
// order given to Create and data exactly its size. A mistaken call writes
// nothing and may be retried; an I/O error makes every later call, and
// Close, fail.
func (w *Writer) Write(name string, data []byte) error {
	t, err := w.nextTensor("Write", name)
	if err != nil {
		return err
	}
	if int64(len(data)) != t.End-t.Begin {
		return fmt.Errorf("%s: tensor %q: got %d bytes, shape %v of %s needs %d", w.out.Path(), name, len(data), t.Shape, t.DType, t.End-t.Begin)
	}
	if _, err := w.out.Write(data); err != nil {
		w.err = err
		return err
	}
	w.next++
	return nil
}

// nextTensor returns the tensor a call of method with name must write.
func (w *Writer) nextTensor(method, name string) (Tensor, error) {
	if w.err != nil {
		return Tensor{}, w.err
	}
	if w.next >= len(w.tensors) {
		return Tensor{}, fmt.Errorf("%s: %s(%q): all %d tensors are already written", w.out.Path(), method, name, len(w.tensors))
	}
	t := w.tensors[w.next]
	if name != t.Name {
		return Tensor{}, fmt.Errorf("%s: %s(%q): tensor %q comes next (tensors are written in the order given to Create)", w.out.Path(), method, name, t.Name)
	}
	return t, nil
}

// WriteFrom writes the next tensor's bytes read from src, which must
// supply at least its size; exactly that many bytes are taken, through a
// small buffer, so a tensor larger than memory allows can be copied from
// another file. Any error makes every later call, and Close, fail: part of
// the tensor may already be written.
func (w *Writer) WriteFrom(name string, src io.Reader) error {
	t, err := w.nextTensor("WriteFrom", name)
	if err != nil {
		return err
	}
	// Not io.CopyN, which drops an error that comes with the last bytes
	// (a checksum found wrong at the end of a stream).
	n, err := io.Copy(w.out, io.LimitReader(src, t.End-t.Begin))
	if err == nil && n != t.End-t.Begin {
		err = fmt.Errorf("%s: tensor %q: source ended after %d of %d bytes", w.out.Path(), name, n, t.End-t.Begin)
	}
	if err != nil {
		w.err = err
		return err
	}
	w.next++
	return nil
}

// WriteFloat32 converts values to the next tensor's dtype (F32, F16 or
// BF16, rounding to nearest even) and writes them.
func (w *Writer) WriteFloat32(name string, values []float32) error {
	if w.next < len(w.tensors) && w.tensors[w.next].Name == name {
		data, err := formatbase.EncodeFloat32(w.tensors[w.next].DType, values)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %w", w.out.Path(), name, err)
		}
		return w.Write(name, data)
	}
	return w.Write(name, nil) // reports the ordering mistake
}

// Close checks that every tensor was written, syncs the file and moves it to
// its destination. On any error the partial file is removed.
func (w *Writer) Close() error {
	err := w.err
	if err == nil && w.next < len(w.tensors) {
		err = fmt.Errorf("%s: closed after %d of %d tensors; %q and later were never written", w.out.Path(), w.next, len(w.tensors), w.tensors[w.next].Name)
	}
	if err != nil {
		w.out.Abort()
		return err
	}
	w.err = errors.New(w.out.Path() + ": writer is closed")
	return w.out.Commit()
}

// Abort discards the file being written. It is safe to call after Close,
// where it does nothing, so `defer w.Abort()` is the usual pattern.
func (w *Writer) Abort() {
	w.out.Abort()
	if w.err == nil {
		w.err = errors.New(w.out.Path() + ": writer is aborted")
	}
}
