package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
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

// Output formats of Decompress: a Hugging Face folder (model.safetensors and
// the side files), or one llama2.c legacy (version 0) checkpoint file.
const (
	FormatSafetensors = checkpoint.FormatSafetensors
	FormatLlama2c     = checkpoint.FormatLlama2c
)

// DecompressOptions describe one reconstruction.
type DecompressOptions struct {
	In, Out string
	// Format is FormatSafetensors or FormatLlama2c; "" picks the source's.
	Format string
	// DType is "f32", "f16" or "bf16" for every floating-point tensor, or ""
	// to give each tensor its source dtype.
	DType   string
	Force   bool
	Kernels bindings.Kernels
}

// Decompress rebuilds dense weights from a .pllm file.
func Decompress(o DecompressOptions) error {
	if format := o.Format; format != "" && format != FormatSafetensors && format != FormatLlama2c {
		return fmt.Errorf("--format %q: want %s or %s", format, FormatSafetensors, FormatLlama2c)
	}
	var dtype checkpoint.DType
	switch o.DType {
	case "":
	case "f32":
		dtype = "F32"
	case "f16":
		dtype = "F16"
	case "bf16":
		dtype = "BF16"
	default:
		return fmt.Errorf("--dtype %q: want f32, f16 or bf16", o.DType)
	}
	r, err := pllm.Open(o.In)
	if err != nil {
		return err
	}
	defer r.Close()
	format := o.Format
	if format == "" {
		format = FormatSafetensors
		if r.Meta().SourceFormat == FormatLlama2c {
			format = FormatLlama2c
		}
	}
	// A replaced folder that a killed run left aside is put back first,
	// so that the check below sees what the user last had.
	atomicfile.RemoveLeftovers(o.Out)
	if err := refuseExisting(o.Out, o.Force); err != nil {
		return err
	}
	if format == FormatSafetensors {
		return writeFolder(r, o, dtype)
	}
	if dtype != "" && dtype != "F32" {
		return fmt.Errorf("--dtype %s: llama2.c checkpoints hold float32 only", o.DType)
	}
	return writeLlama2c(r, o)
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
				return nil, fmt.Errorf("%s: tensor %s: weight %s = %v does not fit %s (it would become infinite); use --dtype f32", file, name, position(shape, e), x, strings.ToLower(string(dt)))
			}
		}
	}
	buf, err := checkpoint.EncodeFloat32(dt, v)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", file, name, err)
	}
	return buf, nil
}

// position names element e of a tensor of the given shape: row and column
// for a matrix, the flat index otherwise.
func position(shape []int, e int) string {
	if len(shape) == 2 && shape[1] > 0 {
		return fmt.Sprintf("at row %d, column %d", e/shape[1], e%shape[1])
	}
	return fmt.Sprintf("at element %d", e)
}

// writeFolder writes a Hugging Face style folder: model.safetensors plus the
// stored side files (and config.json from the model config when the source
// had none, as for llama2.c). It is built in a hidden folder beside Out and
// moved into place (atomicfile.Dir), so a failure or a signal leaves
// nothing behind, and a run killed outright leaves what the next one
// cleans up.
func writeFolder(r *pllm.Reader, o DecompressOptions, dtype checkpoint.DType) error {
	out, err := atomicfile.CreateDir(o.Out, o.Force)
	if err != nil {
		return atomicfile.ForceHint(err, o.Out)
	}
	defer out.Abort()
	tmp := out.Path()

	// Header first: every tensor's name, dtype and shape, groups then raw tensors.
	var infos []checkpoint.TensorInfo
	groups := r.Groups()
	outType := func(src checkpoint.DType) checkpoint.DType {
		if dtype != "" && (src == "F32" || src == "F16" || src == "BF16") {
			return dtype
		}
		return src
	}
	for _, g := range groups {
		for _, m := range g.Members {
			infos = append(infos, checkpoint.TensorInfo{Name: m.Name, DType: outType(checkpoint.DType(m.DType)), Shape: m.Shape})
		}
	}
	raws := r.RawTensors()
	for _, t := range raws {
		if isLlama2cTable(t.Name) {
			continue // RoPE tables only a llama2.c file carries
		}
		infos = append(infos, checkpoint.TensorInfo{Name: t.Name, DType: outType(checkpoint.DType(t.DType)), Shape: t.Shape})
	}
	w, err := safetensors.Create(filepath.Join(tmp, "model.safetensors"), infos, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	defer w.Abort()
	for i := range groups {
		members, data, err := reconstructGroup(r, o.In, i, o.Kernels)
		if err != nil {
			return err
		}
		for j, m := range members {
			buf, err := encodeTensor(o.In, m.Name, outType(checkpoint.DType(m.DType)), m.Shape, data[j])
			if err != nil {
				return err
			}
			if err := w.Write(m.Name, buf); err != nil {
				return err
			}
		}
	}
	for _, t := range raws {
		if isLlama2cTable(t.Name) {
			continue
		}
		raw, err := r.ReadRaw(t.Name)
		if err != nil {
			return err
		}
		if to := outType(checkpoint.DType(t.DType)); to != checkpoint.DType(t.DType) {
			vals, err := checkpoint.DecodeFloat32(checkpoint.DType(t.DType), raw)
			if err != nil {
				return fmt.Errorf("%s: tensor %s: %w", o.In, t.Name, err)
			}
			if raw, err = encodeTensor(o.In, t.Name, to, t.Shape, vals); err != nil {
				return err
			}
		}
		if err := w.Write(t.Name, raw); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	side, err := r.SideFiles()
	if err != nil {
		return err
	}
	hasConfig := false
	for _, f := range side {
		hasConfig = hasConfig || f.Name == "config.json"
		if err := os.WriteFile(filepath.Join(tmp, f.Name), f.Data, 0o644); err != nil {
			return fmt.Errorf("%s: %v", o.Out, err)
		}
	}
	if cfg := r.Meta().ModelConfig; !hasConfig && len(cfg) > 0 {
		if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
			return fmt.Errorf("%s: %v", o.Out, err)
		}
	}
	return atomicfile.ForceHint(out.Commit(), o.Out)
}

func isLlama2cTable(name string) bool {
	return name == llama2c.FreqCisReal || name == llama2c.FreqCisImag
}

// writeLlama2c reconstructs every tensor and writes a llama2.c checkpoint.
func writeLlama2c(r *pllm.Reader, o DecompressOptions) error {
	var cfg checkpoint.LlamaConfig
	if err := json.Unmarshal(r.Meta().ModelConfig, &cfg); err != nil || cfg.HiddenSize == 0 {
		return fmt.Errorf("%s: no Llama model config stored; cannot write a llama2.c checkpoint", o.In)
	}
	tensors := map[string][]float32{}
	for i := range r.Groups() {
		members, data, err := reconstructGroup(r, o.In, i, o.Kernels)
		if err != nil {
			return err
		}
		for j, m := range members {
			tensors[m.Name] = data[j]
		}
	}
	raws := map[string]checkpoint.TensorInfo{}
	for _, t := range r.RawTensors() {
		raws[t.Name] = t
	}
	get := func(name string) ([]float32, error) {
		if v, ok := tensors[name]; ok {
			return v, nil
		}
		t, ok := raws[name]
		if !ok && isLlama2cTable(name) {
			// A model that never was a llama2.c file has no RoPE tables; compute them.
			re, im := llama2c.FreqCis(cfg.HiddenSize/cfg.NumAttentionHeads, cfg.MaxPositionEmbeddings)
			if name == llama2c.FreqCisReal {
				return re, nil
			}
			return im, nil
		}
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s is not stored; a llama2.c checkpoint needs it", o.In, name)
		}
		raw, err := r.ReadRaw(name)
		if err != nil {
			return nil, err
		}
		return checkpoint.DecodeFloat32(t.DType, raw)
	}
	return llama2c.WriteWith(o.Out, cfg, get, checkpoint.WriteOptions{Overwrite: o.Force})
}
