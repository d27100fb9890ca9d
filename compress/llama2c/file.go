package llama2c

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/internal/regularfile"
)

// magicV1 opens the newer llama2.c exports (version 1 and 2): "ak42".
const magicV1 = 0x616b3432

// File is an open legacy checkpoint whose size has been checked against its
// header. Tensors are read on demand, one at a time; a File is safe for
// concurrent use.
type File struct {
	path    string
	f       *os.File
	cfg     Config
	entries []entry
	index   map[string]int
}

// Open opens a legacy (version 0) llama2.c checkpoint. The header must be
// sensible (see Config.Validate) and the file exactly as long as the header
// implies, so truncated or foreign files are refused here with a one-line
// error naming the file.
func Open(path string) (*File, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		return nil, err
	}
	lf, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: llama2c: %w", path, err)
	}
	return lf, nil
}

func open(path string, f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	size := st.Size()
	if size < HeaderSize {
		return nil, fmt.Errorf("file is %d bytes, shorter than the %d-byte header", size, HeaderSize)
	}
	var hdr [HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	cfg, err := parseHeader(hdr[:])
	if err != nil {
		return nil, err
	}
	want, err := cfg.FileSize()
	if err != nil {
		return nil, fmt.Errorf("header (%v): %w", cfg, err)
	}
	switch {
	case size < want:
		return nil, fmt.Errorf("truncated: file is %d bytes, header (%v) needs %d", size, cfg, want)
	case size > want:
		return nil, fmt.Errorf("file is %d bytes, %d more than header (%v) implies", size, size-want, cfg)
	}
	lf := &File{path: path, f: f, cfg: cfg, entries: cfg.layout()}
	lf.index = make(map[string]int, len(lf.entries))
	for i, e := range lf.entries {
		lf.index[e.info.Name] = i
	}
	return lf, nil
}

func parseHeader(b []byte) (Config, error) {
	var v [7]int
	for i := range v {
		v[i] = int(int32(binary.LittleEndian.Uint32(b[4*i:])))
	}
	if uint32(v[0]) == magicV1 {
		return Config{}, fmt.Errorf(`starts with magic "ak42" of a llama2.c version 1 or 2 export; only the legacy version 0 format is supported`)
	}
	c := Config{Dim: v[0], HiddenDim: v[1], NLayers: v[2], NHeads: v[3], NKVHeads: v[4], VocabSize: v[5], SeqLen: v[6], SharedClassifier: true}
	if c.VocabSize < 0 {
		c.VocabSize, c.SharedClassifier = -c.VocabSize, false
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("not a legacy checkpoint, header (%v): %w", c, err)
	}
	return c, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Config returns the header.
func (f *File) Config() Config { return f.cfg }

// LlamaConfig returns the model's Hugging Face configuration.
func (f *File) LlamaConfig() formatbase.LlamaConfig { return f.cfg.LlamaConfig() }

// ConfigJSON returns a Hugging Face config.json synthesized from the header.
func (f *File) ConfigJSON() []byte { return f.cfg.ConfigJSON() }

// Tensors returns the Hugging Face tensors in file order.
func (f *File) Tensors() []formatbase.TensorInfo {
	out := make([]formatbase.TensorInfo, len(f.entries))
	for i, e := range f.entries {
		out[i] = e.info
	}
	return out
}

// Info returns the named tensor's description.
func (f *File) Info(name string) (formatbase.TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return formatbase.TensorInfo{}, false
	}
	return f.entries[i].info, true
}

// Raw returns the named tensor as little-endian float32 bytes in the
// Hugging Face layout (q_proj and k_proj rows permuted).
func (f *File) Raw(name string) ([]byte, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	e := f.entries[i]
	buf := make([]byte, 4*e.info.NumElements())
	if _, err := f.f.ReadAt(buf, e.offset); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank after Open
		}
		return nil, fmt.Errorf("%s: reading tensor %q: %w", f.path, name, err)
	}
	if e.heads == 0 {
		return buf, nil
	}
	out := make([]byte, len(buf))
	permuteRows(out, buf, e.heads, 4*e.info.Shape[1], false)
	return out, nil
}

// Stream returns a reader of the named tensor's bytes as Raw returns them,
// and their count. Tensors stored in order are read through the caller's
// buffers; q_proj and k_proj, whose rows are permuted, are read whole.
func (f *File) Stream(name string) (io.Reader, int64, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	e := f.entries[i]
	n := 4 * int64(e.info.NumElements())
	if e.heads == 0 {
		return formatbase.TensorStream(f.f, f.path, name, e.offset, n), n, nil
	}
	raw, err := f.Raw(name)
	if err != nil {
		return nil, 0, err
	}
	return bytes.NewReader(raw), n, nil
}

// Float32 returns the named tensor in the Hugging Face layout.
func (f *File) Float32(name string) ([]float32, error) {
	raw, err := f.Raw(name)
	if err != nil {
		return nil, err
	}
	return formatbase.DecodeFloat32(formatbase.F32, raw)
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Write is WriteWith without Overwrite: an existing file at path is an
// error.
func Write(path string, cfg formatbase.LlamaConfig, get func(name string) ([]float32, error)) error {
	return WriteWith(path, cfg, get, formatbase.WriteOptions{})
}

// WriteWith writes a legacy (version 0) checkpoint that llama2.c's run.c
// loads. cfg gives the header (see ConfigFromLlama); get is called once for
// each tensor of Config.Tensors, in file order, and returns its float32
// values in the Hugging Face layout, including FreqCisReal and FreqCisImag
// (FreqCis computes them when the source has none) and, when the embeddings
// are not tied, lm_head.weight. Only one tensor is held at a time. The file
// is written to a temporary name beside path and renamed when complete; on
// error nothing is left behind.
func WriteWith(path string, cfg formatbase.LlamaConfig, get func(name string) ([]float32, error), opt formatbase.WriteOptions) error {
	return WriteFrom(path, cfg, func(name string) (io.Reader, int64, error) {
		vals, err := get(name)
		if err != nil {
			return nil, 0, err
		}
		raw, err := formatbase.EncodeFloat32(formatbase.F32, vals)
		if err != nil {
			return nil, 0, err
		}
		return bytes.NewReader(raw), int64(len(raw)), nil
	}, opt)
}

// WriteFrom is WriteWith with each tensor given as a reader of its
// little-endian F32 bytes and their count, which must be the tensor's size.
// Tensors stored in order (the embedding, the norms, the output layer)
// are copied through a small buffer, so none is ever held whole; q_proj
// and k_proj, whose rows are permuted, are read whole.
func WriteFrom(path string, cfg formatbase.LlamaConfig, open func(name string) (io.Reader, int64, error), opt formatbase.WriteOptions) error {
	c, err := ConfigFromLlama(cfg)
	if err != nil {
		return fmt.Errorf("%s: llama2c: %w", path, err)
	}
	if _, err := c.FileSize(); err != nil {
		return fmt.Errorf("%s: llama2c: header (%v): %w", path, c, err)
	}
	out, err := formatbase.CreateOutput(path, opt)
	if err != nil {
		return err
	}
	defer out.Abort() // no-op after Commit
	var hdr [HeaderSize]byte
	vocab := c.VocabSize
	if !c.SharedClassifier {
		vocab = -vocab
	}
	for i, v := range []int{c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, vocab, c.SeqLen} {
		binary.LittleEndian.PutUint32(hdr[4*i:], uint32(int32(v)))
	}
	if _, err := out.Write(hdr[:]); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, e := range c.layout() {
		src, size, err := open(e.info.Name)
		if err != nil {
			return fmt.Errorf("%s: llama2c: tensor %q: %w", path, e.info.Name, err)
		}
		if n := e.info.NumElements(); size != 4*int64(n) {
			return fmt.Errorf("%s: llama2c: tensor %q: got %d values, shape %v needs %d", path, e.info.Name, size/4, e.info.Shape, n)
		}
		if e.heads > 0 {
			raw := make([]byte, size)
			if _, err := io.ReadFull(src, raw); err != nil {
				return fmt.Errorf("%s: llama2c: tensor %q: %w", path, e.info.Name, err)
			}
			perm := make([]byte, size)
			permuteRows(perm, raw, e.heads, 4*e.info.Shape[1], true)
			if _, err := out.Write(perm); err != nil {
				return err
			}
			continue
		}
		got, err := io.CopyBuffer(out, io.LimitReader(src, size), buf)
		if err == nil && got != size {
			err = fmt.Errorf("source ended after %d of %d bytes", got, size)
		}
		if err != nil {
			return fmt.Errorf("%s: llama2c: tensor %q: %w", path, e.info.Name, err)
		}
	}
	return out.Commit()
}
