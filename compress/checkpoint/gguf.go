package checkpoint

import (
	"bytes"
	"fmt"
	"io"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/compress/gguf"
)

// FormatGGUF is a llama.cpp GGUF file.
const FormatGGUF = "gguf"

// GGUFMetadataFile is the side file in which a GGUF model's metadata (every
// key and value, the tokenizer included) travels: a GGUF file with no
// tensors (see FORMAT.md).
const GGUFMetadataFile = "gguf-metadata"

// ggufDTypes are the GGUF types read as they are; Q8_0 is read as F32.
var ggufDTypes = map[gguf.GGMLType]DType{
	gguf.GGMLF32: F32, gguf.GGMLF16: F16, gguf.GGMLBF16: BF16, gguf.GGMLQ8_0: F32,
	gguf.GGMLI8: I8, gguf.GGMLI16: I16, gguf.GGMLI32: I32, gguf.GGMLI64: I64, gguf.GGMLF64: F64,
}

// ggufSource reads a GGUF file's tensors under the tool's names, in Hugging
// Face's layout.
type ggufSource struct {
	f     *gguf.File
	perm  gguf.Permuter
	names map[string]gguf.TensorInfo // the tool's name -> the file's tensor
}

// openGGUF opens a GGUF file: tensors are renamed to Hugging Face names
// (others keep their GGUF name behind gguf.UnmappedPrefix), their
// dimensions reversed into row-major shapes, Q and K rows of a llama model
// un-permuted, and Q8_0 tensors dequantized to F32. The metadata travels
// as the side file GGUFMetadataFile; the config comes from it.
func openGGUF(path string) (*Source, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	s, err := newGGUFSource(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func newGGUFSource(path string, f *gguf.File) (*Source, error) {
	m, err := gguf.ModelOf(f.Header)
	if err != nil {
		return nil, fmt.Errorf("%s: gguf: %w", path, err)
	}
	md, err := gguf.EncodeMetadata(f.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: gguf: %w", path, err)
	}
	if len(md) > MaxSideFileSize {
		return nil, fmt.Errorf("%s: gguf: the metadata is %d bytes, more than the %d-byte limit for non-weight files", path, len(md), MaxSideFileSize)
	}
	g := &ggufSource{f: f, perm: m.Permuter(), names: make(map[string]gguf.TensorInfo, len(f.Tensors))}
	s := newSource(FormatGGUF, path, len(f.Tensors))
	s.closer = append(s.closer, f)
	q8 := 0
	for _, t := range f.Tensors {
		name := gguf.HFName(t.Name)
		if _, dup := g.names[name]; dup {
			return nil, fmt.Errorf("%s: gguf: two tensors map to %q", path, name)
		}
		g.names[name] = t
		if t.Type == gguf.GGMLQ8_0 {
			q8++
		}
		s.add(TensorInfo{Name: name, DType: ggufDTypes[t.Type], Shape: t.Shape()}, g)
	}
	cfg := m.LlamaConfig()
	s.Config, s.ConfigJSON = &cfg, m.ConfigJSON()
	s.SideFiles = []SideFile{{Name: GGUFMetadataFile, Data: md}}
	if q8 > 0 {
		s.Notices = append(s.Notices, fmt.Sprintf("%s: %d Q8_0 tensors dequantized to F32", path, q8))
	}
	return s, nil
}

// Stream returns Raw's bytes as a reader. A tensor stored as the tool lays
// it out is read from the file as it is consumed; one that is converted
// (Q8_0 dequantised, llama Q and K rows reordered) is converted whole,
// which those tensors, all of them matrices trained as one group or less,
// can afford.
func (g *ggufSource) Stream(name string) (io.Reader, int64, error) {
	t, ok := g.names[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no tensor %q", g.f.Path(), name)
	}
	if t.Type != gguf.GGMLQ8_0 && !g.perm.Permutes(name) {
		// Stored as the tool lays it out: read as it is consumed, so a
		// kept embedding of hundreds of megabytes is never held whole.
		src, n, err := g.f.Stream(t.Name)
		if err != nil {
			return nil, 0, err
		}
		return &namedReader{r: src, what: fmt.Sprintf("%s: reading tensor %q", g.f.Path(), name)}, n, nil
	}
	raw, err := g.Raw(name)
	if err != nil {
		return nil, 0, err
	}
	return bytes.NewReader(raw), int64(len(raw)), nil
}

// namedReader prefixes its reader's errors with what is being read.
type namedReader struct {
	r    io.Reader
	what string
}

func (n *namedReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", n.what, err)
	}
	return k, err
}

// Raw returns a tensor in the tool's layout: Q8_0 dequantized to F32 bytes,
// Q and K rows un-permuted for llama.
func (g *ggufSource) Raw(name string) ([]byte, error) {
	t, ok := g.names[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", g.f.Path(), name)
	}
	raw, err := g.f.Raw(t.Name)
	if err != nil {
		return nil, err
	}
	dt := ggufDTypes[t.Type]
	if t.Type == gguf.GGMLQ8_0 {
		v, err := gguf.DequantizeQ8_0(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", g.f.Path(), t.Name, err)
		}
		if raw, err = formatbase.EncodeFloat32(F32, v); err != nil {
			return nil, err
		}
	}
	size, _ := dt.Size()
	out, err := g.perm.ToHF(name, raw, t.Shape(), size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.f.Path(), err)
	}
	return out, nil
}
