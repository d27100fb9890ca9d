package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/compress/vq"
	"pocketllm-native/internal/atomicfile"
)

// Output formats of Decompress and Convert: a Hugging Face folder
// (model.safetensors and the side files), one llama2.c legacy (version 0)
// checkpoint file, or one GGUF file.
const (
	FormatSafetensors = checkpoint.FormatSafetensors
	FormatLlama2c     = checkpoint.FormatLlama2c
	FormatGGUF        = checkpoint.FormatGGUF
)

// DecompressOptions describe one reconstruction.
type DecompressOptions struct {
	In, Out string
	// Format is FormatSafetensors, FormatLlama2c or FormatGGUF; "" picks
	// the source's.
	Format string
	// DType is "f32", "f16" or "bf16" for every floating-point tensor, or ""
	// to give each tensor its source dtype.
	DType string
	// Tokenizer, for GGUF output only, is a llama2.c tokenizer, a
	// tokenizer.json or a GGUF file whose tokenizer to write into the file;
	// "" uses the metadata of a GGUF source or the model folder's
	// tokenizer.json.
	Tokenizer string
	Force     bool
	Kernels   bindings.Kernels
	// Notify, when set, is told what the output cannot do that the user
	// may expect of it (see writeGGUF).
	Notify func(string)
}

// parseOutput checks an output format and a --dtype value.
func parseOutput(format, dtypeFlag string) (checkpoint.DType, error) {
	switch format {
	case "", FormatSafetensors, FormatLlama2c, FormatGGUF:
	default:
		return "", fmt.Errorf("--format %q: want %s, %s or %s", format, FormatSafetensors, FormatLlama2c, FormatGGUF)
	}
	switch dtypeFlag {
	case "":
		return "", nil
	case "f32":
		return checkpoint.F32, nil
	case "f16":
		return checkpoint.F16, nil
	case "bf16":
		return checkpoint.BF16, nil
	}
	return "", fmt.Errorf("--dtype %q: want f32, f16 or bf16", dtypeFlag)
}

// Decompress rebuilds dense weights from a .pllm file.
func Decompress(o DecompressOptions) error {
	dtype, err := parseOutput(o.Format, o.DType)
	if err != nil {
		return err
	}
	r, err := pllm.Open(o.In)
	if err != nil {
		return err
	}
	defer r.Close()
	defer limitMemory(largestStored(r.Groups()))()
	format := o.Format
	if format == "" {
		format = FormatSafetensors
		switch r.Meta().SourceFormat {
		case FormatLlama2c, FormatGGUF:
			format = r.Meta().SourceFormat
		}
	}
	return writeModel(pllmModel(r, o.In, o.Kernels), output{path: o.Out, format: format, dtype: dtype, dtypeFlag: o.DType, tokenizer: o.Tokenizer, force: o.Force, notify: o.Notify})
}

// output is where and how a writer writes.
type output struct {
	path, format string
	dtype        checkpoint.DType // "": each tensor's own
	dtypeFlag    string           // as given, for messages
	tokenizer    string
	force        bool
	notify       func(string) // nil: no one listens
}

func (o output) note(format string, a ...any) {
	if o.notify != nil {
		o.notify(fmt.Sprintf(format, a...))
	}
}

// writeModel writes m in the output's format.
func writeModel(m denseModel, o output) error {
	if o.tokenizer != "" && o.format != FormatGGUF {
		return fmt.Errorf("--tokenizer %s: only GGUF output holds a tokenizer (--format %s)", o.tokenizer, FormatGGUF)
	}
	// A replaced folder that a killed run left aside is put back first,
	// so that the check below sees what the user last had.
	atomicfile.RemoveLeftovers(o.path)
	if err := refuseExisting(o.path, o.force); err != nil {
		return err
	}
	switch o.format {
	case FormatSafetensors:
		return writeFolder(m, o)
	case FormatGGUF:
		return writeGGUF(m, o)
	}
	if o.dtype != "" && o.dtype != checkpoint.F32 {
		return fmt.Errorf("--dtype %s: llama2.c checkpoints hold float32 only", o.dtypeFlag)
	}
	return writeLlama2c(m, o)
}

func refuseExisting(path string, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return fmt.Errorf("%s already exists; pass --force to replace it", path)
	}
	return nil
}

// errUnknownMethod marks a group whose method this build cannot read.
var errUnknownMethod = errors.New("method not known to this build")

// decodeGroup checks group g the way its method reads it (settings, array
// counts, index ranges, finite floats) and returns what rebuilds its
// members.
func decodeGroup(file string, g pllm.Group) (rebuild func(bindings.Kernels) ([][]float32, error), err error) {
	switch g.Method {
	case MethodPocketLLM:
		res, shapes, err := decodePocketLLM(file, g)
		if err != nil {
			return nil, err
		}
		return func(k bindings.Kernels) ([][]float32, error) { return pocketllm.Reconstruct(k, res, shapes) }, nil
	case MethodVQ:
		res, shapes, err := decodeVQ(file, g)
		if err != nil {
			return nil, err
		}
		return func(bindings.Kernels) ([][]float32, error) { return vq.Reconstruct(res, shapes) }, nil
	case MethodRTN:
		res, err := decodeRTN(file, g)
		if err != nil {
			return nil, err
		}
		return func(bindings.Kernels) ([][]float32, error) { return [][]float32{rtn.Reconstruct(res)}, nil }, nil
	}
	return nil, fmt.Errorf("%s: group %s: %w: %q is not one this build reconstructs", file, g.Name, errUnknownMethod, g.Method)
}

// reconstructGroup rebuilds every member of group i, whatever its method,
// and refuses weights that come out non-finite (finite stored values whose
// product overflows float32).
func reconstructGroup(r *pllm.Reader, file string, i int, k bindings.Kernels) ([]pllm.Member, [][]float32, error) {
	g, err := r.ReadGroup(i)
	if err != nil {
		return nil, nil, err
	}
	rebuild, err := decodeGroup(file, g)
	if err != nil {
		return nil, nil, err
	}
	out, err := rebuild(k)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: group %s: %w", file, g.Name, err)
	}
	for j, m := range g.Members {
		for e, v := range out[j] {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, nil, fmt.Errorf("%s: group %s: member %s: reconstructed weight %s is %v (the stored values overflow float32)", file, g.Name, m.Name, position(m.Shape, e), v)
			}
		}
	}
	return g.Members, out, nil
}

// encodeTensor converts a tensor's float32 values to dtype dt, refusing a
// finite value that dt cannot hold: f16 rounds magnitudes of 65520 and more
// to ±Inf, bf16 those next to float32's largest. A value that already is
// ±Inf or NaN (a kept tensor's own) is converted as it is.
func encodeTensor(file, name string, dt checkpoint.DType, shape []int, v []float32) ([]byte, error) {
	return encodePiece(file, name, dt, shape, v, 0)
}

// encodePiece is encodeTensor for the elements of a tensor from base on,
// so that a tensor can be converted piece by piece.
func encodePiece(file, name string, dt checkpoint.DType, shape []int, v []float32, base int) ([]byte, error) {
	var overflows func(float32) bool
	switch dt {
	case "F16":
		overflows = func(x float32) bool { return fp16.FromFloat32(x)&0x7fff == 0x7c00 }
	case "BF16":
		overflows = func(x float32) bool { return fp16.BF16FromFloat32(x)&0x7fff == 0x7f80 }
	}
	if overflows != nil {
		for e, x := range v {
			if !math.IsInf(float64(x), 0) && overflows(x) {
				return nil, fmt.Errorf("%s: tensor %s: weight %s = %v does not fit %s (it would become infinite); use --dtype f32", file, name, position(shape, base+e), x, strings.ToLower(string(dt)))
			}
		}
	}
	buf, err := checkpoint.EncodeFloat32(dt, v)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", file, name, err)
	}
	return buf, nil
}

// pieceElements is how many elements the streaming converters below
// convert at a time.
const pieceElements = 1 << 18

// encodeReader gives a rebuilt tensor's bytes in dtype dt, encoded (with
// encodeTensor's checks) a piece at a time rather than beside the tensor.
type encodeReader struct {
	file, name string
	dt         checkpoint.DType
	shape      []int
	v          []float32
	done       int
	pending    []byte
}

func (e *encodeReader) Read(p []byte) (int, error) {
	if len(e.pending) == 0 {
		if e.done == len(e.v) {
			return 0, io.EOF
		}
		k := min(len(e.v)-e.done, pieceElements)
		out, err := encodePiece(e.file, e.name, e.dt, e.shape, e.v[e.done:e.done+k], e.done)
		if err != nil {
			return 0, err
		}
		e.pending, e.done = out, e.done+k
	}
	n := copy(p, e.pending)
	e.pending = e.pending[n:]
	return n, nil
}

// convertReader converts a stored tensor's bytes (read from src) to
// another float dtype a piece at a time, with encodeTensor's checks, so a
// kept embedding is never held whole.
type convertReader struct {
	file     string
	t        checkpoint.TensorInfo
	to       checkpoint.DType
	src      io.Reader
	fromSize int
	elements int
	done     int
	in       []byte
	vals     []float32
	pending  []byte
}

// storedAs returns a reader of stored tensor t's bytes (src) in dtype to.
func storedAs(file string, t checkpoint.TensorInfo, to checkpoint.DType, src io.Reader) (io.Reader, error) {
	if to == t.DType {
		return src, nil
	}
	fromSize, err := checkpoint.FloatSize(t.DType)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", file, t.Name, err)
	}
	n := t.NumElements()
	return &convertReader{file: file, t: t, to: to, src: src, fromSize: fromSize, elements: n,
		in: make([]byte, min(n, pieceElements)*fromSize), vals: make([]float32, min(n, pieceElements))}, nil
}

func (c *convertReader) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.done == c.elements {
			return 0, io.EOF
		}
		k := min(c.elements-c.done, len(c.vals))
		if _, err := io.ReadFull(c.src, c.in[:k*c.fromSize]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("%s: tensor %s: %w", c.file, c.t.Name, err)
		}
		if err := checkpoint.DecodeFloat32Into(c.vals[:k], c.t.DType, c.in[:k*c.fromSize]); err != nil {
			return 0, fmt.Errorf("%s: tensor %s: %w", c.file, c.t.Name, err)
		}
		out, err := encodePiece(c.file, c.t.Name, c.to, c.t.Shape, c.vals[:k], c.done)
		if err != nil {
			return 0, err
		}
		c.pending, c.done = out, c.done+k
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// position names element e of a tensor of the given shape: row and column
// for a matrix, the flat index otherwise.
func position(shape []int, e int) string {
	if len(shape) == 2 && shape[1] > 0 {
		return fmt.Sprintf("at row %d, column %d", e/shape[1], e%shape[1])
	}
	return fmt.Sprintf("at element %d", e)
}

// outType is the dtype a tensor of dtype src is written in.
func (o output) outType(src checkpoint.DType) checkpoint.DType {
	if o.dtype != "" && isFloat(src) {
		return o.dtype
	}
	return src
}

// writeFolder writes a Hugging Face style folder: model.safetensors plus the
// stored side files (and config.json from the model config when the source
// had none, as for llama2.c). It is built in a hidden folder beside the
// output and moved into place (atomicfile.Dir), so a failure or a signal
// leaves nothing behind, and a run killed outright leaves what the next
// one cleans up.
func writeFolder(m denseModel, o output) error {
	out, err := atomicfile.CreateDir(o.path, o.force)
	if err != nil {
		return atomicfile.ForceHint(err, o.path)
	}
	defer out.Abort()
	tmp := out.Path()

	// Header first: every tensor's name, dtype and shape.
	var infos []checkpoint.TensorInfo
	for _, t := range m.infos {
		if isLlama2cTable(t.Name) {
			continue // RoPE tables only a llama2.c file carries
		}
		infos = append(infos, checkpoint.TensorInfo{Name: t.Name, DType: o.outType(t.DType), Shape: t.Shape})
	}
	w, err := safetensors.Create(filepath.Join(tmp, "model.safetensors"), infos, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	defer w.Abort()
	err = m.eachStream(func(t checkpoint.TensorInfo, vals []float32, raw io.Reader) error {
		if isLlama2cTable(t.Name) {
			return nil
		}
		// Encoded or converted a piece at a time as it is written.
		to := o.outType(t.DType)
		var src io.Reader = &encodeReader{file: m.name, name: t.Name, dt: to, shape: t.Shape, v: vals}
		if vals == nil {
			var err error
			if src, err = storedAs(m.name, t, to, raw); err != nil {
				return err
			}
		}
		return w.WriteFrom(t.Name, src)
	})
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	side, err := m.sideFiles()
	if err != nil {
		return err
	}
	hasConfig := false
	for _, f := range side {
		hasConfig = hasConfig || f.Name == "config.json"
		if err := os.WriteFile(filepath.Join(tmp, f.Name), f.Data, 0o644); err != nil {
			return fmt.Errorf("%s: %v", o.path, err)
		}
	}
	if cfg := m.configJSON; !hasConfig && len(cfg) > 0 {
		if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
			return fmt.Errorf("%s: %v", o.path, err)
		}
	}
	return atomicfile.ForceHint(out.Commit(), o.path)
}

func isLlama2cTable(name string) bool {
	return name == llama2c.FreqCisReal || name == llama2c.FreqCisImag
}

// writeLlama2c writes a llama2.c checkpoint. Its tensor order (all q_proj,
// then all k_proj, ...) is not the model's, so tensors are asked for by
// name (denseModel.tensor: one group held at a time) and written as
// streams.
func writeLlama2c(m denseModel, o output) error {
	var cfg checkpoint.LlamaConfig
	if err := json.Unmarshal(m.configJSON, &cfg); err != nil || cfg.HiddenSize == 0 {
		return fmt.Errorf("%s: no Llama model config stored; cannot write a llama2.c checkpoint", m.name)
	}
	infos := make(map[string]checkpoint.TensorInfo, len(m.infos))
	for _, t := range m.infos {
		infos[t.Name] = t
	}
	open := func(name string) (io.Reader, int64, error) {
		vals, raw, found, err := m.tensor(name)
		if err != nil {
			return nil, 0, err
		}
		t := infos[name]
		switch {
		case found && vals != nil:
			return &encodeReader{file: m.name, name: name, dt: checkpoint.F32, v: vals}, 4 * int64(len(vals)), nil
		case found && isFloat(t.DType):
			src, err := storedAs(m.name, t, checkpoint.F32, raw)
			return src, 4 * int64(t.NumElements()), err
		case !found && isLlama2cTable(name):
			// A model that never was a llama2.c file has no RoPE tables; compute them.
			re, im := llama2c.FreqCis(cfg.HiddenSize/cfg.NumAttentionHeads, cfg.MaxPositionEmbeddings)
			v := re
			if name == llama2c.FreqCisImag {
				v = im
			}
			return &encodeReader{file: m.name, name: name, dt: checkpoint.F32, v: v}, 4 * int64(len(v)), nil
		}
		if found {
			return nil, 0, fmt.Errorf("%s: tensor %s has dtype %s; a llama2.c checkpoint needs it as float32", m.name, name, t.DType)
		}
		return nil, 0, fmt.Errorf("%s: tensor %s is not stored; a llama2.c checkpoint needs it", m.name, name)
	}
	return llama2c.WriteFrom(o.path, cfg, open, checkpoint.WriteOptions{Overwrite: o.force})
}
