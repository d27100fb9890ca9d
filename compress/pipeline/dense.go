package pipeline

import (
	"fmt"
	"io"
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
	each func(visit func(info checkpoint.TensorInfo, vals []float32, raw []byte) error) error
	// eachStream is each with a stored tensor's bytes given as a reader of
	// exactly its size instead of whole, for writers that copy them: a
	// kept embedding is then never held. vals may be cleared by visit.
	eachStream func(visit func(info checkpoint.TensorInfo, vals []float32, raw io.Reader) error) error
	// tensor gives one tensor by name, rebuilt or as a reader of its
	// stored bytes, for writers whose order is not infos' (llama2.c);
	// found is false when the model has no such tensor.
	tensor     func(name string) (vals []float32, raw io.Reader, found bool, err error)
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
	m.eachStream = func(visit func(checkpoint.TensorInfo, []float32, io.Reader) error) error {
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
				data[j] = nil // written: the rest of the group is what is held
			}
		}
		for _, t := range raws {
			raw, _, err := r.RawStream(t.Name)
			if err != nil {
				return err
			}
			if err := visit(t, nil, raw); err != nil {
				return err
			}
		}
		return nil
	}
	m.each = wholeTensors(m)
	owner := map[string]int{}
	for i, g := range groups {
		for _, mem := range g.Members {
			owner[mem.Name] = i
		}
	}
	// A group is rebuilt when its first member is wanted and its members
	// dropped as they are handed out: one group is held, never the model.
	// A group whose members another's interleave is rebuilt again.
	cached := -1
	var ready map[string][]float32
	m.tensor = func(name string) ([]float32, io.Reader, bool, error) {
		if gi, ok := owner[name]; ok {
			if _, have := ready[name]; gi != cached || !have {
				ready, cached = nil, -1 // the previous group can go before this one is built
				members, data, err := reconstructGroup(r, path, gi, k)
				if err != nil {
					return nil, nil, true, err
				}
				ready, cached = make(map[string][]float32, len(members)), gi
				for j, mem := range members {
					ready[mem.Name] = data[j]
				}
			}
			v := ready[name]
			delete(ready, name)
			return v, nil, true, nil
		}
		if _, ok := r.RawInfo(name); !ok {
			return nil, nil, false, nil
		}
		raw, _, err := r.RawStream(name)
		return nil, raw, true, err
	}
	return m
}

// wholeTensors is each on top of eachStream, reading stored tensors whole
// (for the GGUF writer, which converts them whole).
func wholeTensors(m denseModel) func(visit func(checkpoint.TensorInfo, []float32, []byte) error) error {
	return func(visit func(checkpoint.TensorInfo, []float32, []byte) error) error {
		return m.eachStream(func(t checkpoint.TensorInfo, vals []float32, raw io.Reader) error {
			if raw == nil {
				return visit(t, vals, nil)
			}
			n, err := t.ByteLen()
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(raw, buf); err != nil {
				return fmt.Errorf("%s: tensor %s: %w", m.name, t.Name, err)
			}
			return visit(t, nil, buf)
		})
	}
}

// sourceModel reads a checkpoint's tensors as they are stored.
func sourceModel(src *checkpoint.Source) denseModel {
	var dir string
	if st, err := os.Stat(src.Path); err == nil && st.IsDir() {
		dir = src.Path
	}
	m := denseModel{
		dir:        dir,
		name:       src.Path,
		infos:      src.Tensors,
		sideFiles:  func() ([]checkpoint.SideFile, error) { return src.SideFiles, nil },
		configJSON: src.ConfigJSON,
		eachStream: func(visit func(checkpoint.TensorInfo, []float32, io.Reader) error) error {
			for _, t := range src.Tensors {
				raw, _, err := src.Stream(t.Name)
				if err != nil {
					return err
				}
				if err := visit(t, nil, raw); err != nil {
					return err
				}
			}
			return nil
		},
		tensor: func(name string) ([]float32, io.Reader, bool, error) {
			if _, ok := src.Info(name); !ok {
				return nil, nil, false, nil
			}
			raw, _, err := src.Stream(name)
			return nil, raw, true, err
		},
	}
	m.each = wholeTensors(m)
	return m
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
