package pipeline

import (
	"fmt"
	"os"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/pllm"
)

// denseModel is what the writers (safetensors folder, llama2.c, GGUF) read:
// a .pllm file's reconstruction (Decompress) or a checkpoint as it is
// (Convert). Tensors are visited one at a time, or one compressed group at
// a time, in the order of infos.
type denseModel struct {
	name  string                  // the input path, for errors
	infos []checkpoint.TensorInfo // every tensor, in visiting order, with its source dtype
	// each calls visit for every tensor in infos order, with either its
	// float32 values (a reconstructed tensor) or its raw bytes in its
	// dtype (a tensor stored as it was).
	each       func(visit func(info checkpoint.TensorInfo, vals []float32, raw []byte) error) error
	sideFiles  func() ([]checkpoint.SideFile, error)
	configJSON []byte
	// dir is the model folder converted as it is (Convert), where files
	// that are not side files (a llama2.c tokenizer.bin) can be found; ""
	// otherwise.
	dir string
}

// pllmModel reads a .pllm file: compressed groups are rebuilt with k.
func pllmModel(r *pllm.Reader, path string, k bindings.Kernels) denseModel {
	m := denseModel{name: path, sideFiles: r.SideFiles, configJSON: r.Meta().ModelConfig}
	groups := r.Groups()
	for _, g := range groups {
		for _, mem := range g.Members {
			m.infos = append(m.infos, checkpoint.TensorInfo{Name: mem.Name, DType: checkpoint.DType(mem.DType), Shape: mem.Shape})
		}
	}
	raws := r.RawTensors()
	m.infos = append(m.infos, raws...)
	m.each = func(visit func(checkpoint.TensorInfo, []float32, []byte) error) error {
		for i := range groups {
			members, data, err := reconstructGroup(r, path, i, k)
			if err != nil {
				return err
			}
			for j, mem := range members {
				info := checkpoint.TensorInfo{Name: mem.Name, DType: checkpoint.DType(mem.DType), Shape: mem.Shape}
				if err := visit(info, data[j], nil); err != nil {
					return err
				}
			}
		}
		for _, t := range raws {
			raw, err := r.ReadRaw(t.Name)
			if err != nil {
				return err
			}
			if err := visit(t, nil, raw); err != nil {
				return err
			}
		}
		return nil
	}
	return m
}

// sourceModel reads a checkpoint's tensors as they are stored.
func sourceModel(src *checkpoint.Source) denseModel {
	var dir string
	if st, err := os.Stat(src.Path); err == nil && st.IsDir() {
		dir = src.Path
	}
	return denseModel{
		dir:        dir,
		name:       src.Path,
		infos:      src.Tensors,
		sideFiles:  func() ([]checkpoint.SideFile, error) { return src.SideFiles, nil },
		configJSON: src.ConfigJSON,
		each: func(visit func(checkpoint.TensorInfo, []float32, []byte) error) error {
			for _, t := range src.Tensors {
				raw, err := src.Raw(t.Name)
				if err != nil {
					return err
				}
				if err := visit(t, nil, raw); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// isFloat reports whether dt converts to and from float32.
func isFloat(dt checkpoint.DType) bool {
	return dt == checkpoint.F32 || dt == checkpoint.F16 || dt == checkpoint.BF16
}

// tensorBytes returns a visited tensor's bytes in dtype to: reconstructed
// values are encoded (refusing values to cannot hold), raw bytes of
// another float dtype converted, raw bytes of dtype to kept as they are.
func tensorBytes(file string, info checkpoint.TensorInfo, to checkpoint.DType, vals []float32, raw []byte) ([]byte, error) {
	if vals == nil && to == info.DType {
		return raw, nil
	}
	if vals == nil {
		var err error
		if vals, err = checkpoint.DecodeFloat32(info.DType, raw); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", file, info.Name, err)
		}
	}
	return encodeTensor(file, info.Name, to, info.Shape, vals)
}
