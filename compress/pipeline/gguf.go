package pipeline

import (
	"bytes"
	"fmt"
	"strings"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/gguf"
	"pocketllm-native/compress/tokenizer"
)

// ggmlTypes are the dtypes a GGUF file can hold.
var ggmlTypes = map[checkpoint.DType]gguf.GGMLType{
	checkpoint.F32: gguf.GGMLF32, checkpoint.F16: gguf.GGMLF16, checkpoint.BF16: gguf.GGMLBF16,
	checkpoint.I8: gguf.GGMLI8, checkpoint.I16: gguf.GGMLI16, checkpoint.I32: gguf.GGMLI32,
	checkpoint.I64: gguf.GGMLI64, checkpoint.F64: gguf.GGMLF64,
}

// droppedInGGUF reports tensors a GGUF file has no place for and llama.cpp
// does without: llama2.c's RoPE tables and the inverse frequencies some
// Hugging Face checkpoints store, which llama.cpp computes.
func droppedInGGUF(name string) bool {
	return isLlama2cTable(name) || strings.HasSuffix(name, ".rotary_emb.inv_freq")
}

// writeGGUF writes m as one GGUF file in llama.cpp's layout: tensors under
// GGUF names, dimensions innermost first, a llama model's Q and K rows
// permuted as convert_hf_to_gguf.py permutes them. The metadata is a GGUF
// source's, carried in the side file checkpoint.GGUFMetadataFile, as it
// was (general.file_type updated when the tensor types changed); otherwise
// it is built from the model config, with the tokenizer from o.tokenizer or
// the folder's tokenizer.json. o.tokenizer also replaces a GGUF source's
// tokenizer.
func writeGGUF(m denseModel, o output) error {
	model, err := gguf.ModelFromConfig(m.configJSON)
	if err != nil {
		return fmt.Errorf("%s: cannot write GGUF: %w", m.name, err)
	}
	md, fromGGUF, err := ggufMetadata(m, model, o.tokenizer)
	if err != nil {
		return err
	}
	perm := model.Permuter()
	var tensors []gguf.WriteTensor
	for _, t := range m.infos {
		if droppedInGGUF(t.Name) {
			continue
		}
		name, ok := gguf.GGUFName(t.Name)
		if !ok {
			return fmt.Errorf("%s: tensor %s has no GGUF name; llama.cpp would not load it", m.name, t.Name)
		}
		typ, ok := ggmlTypes[o.outType(t.DType)]
		if !ok {
			return fmt.Errorf("%s: tensor %s has dtype %s, which GGUF cannot hold", m.name, t.Name, t.DType)
		}
		dims := make([]int, len(t.Shape))
		for i, d := range t.Shape {
			dims[len(dims)-1-i] = d
		}
		tensors = append(tensors, gguf.WriteTensor{Name: name, Type: typ, Dims: dims})
	}
	if _, has := md.Get(gguf.KeyFileType); has || !fromGGUF {
		gguf.SetFileType(&md, tensors)
	}
	w, err := gguf.Create(o.path, md, tensors, checkpoint.WriteOptions{Overwrite: o.force})
	if err != nil {
		return err
	}
	defer w.Abort()
	err = m.each(func(t checkpoint.TensorInfo, vals []float32, raw []byte) error {
		if droppedInGGUF(t.Name) {
			return nil
		}
		to := o.outType(t.DType)
		buf, err := tensorBytes(m.name, t, to, vals, raw)
		if err != nil {
			return err
		}
		size, _ := to.Size()
		if buf, err = perm.ToGGUF(t.Name, buf, t.Shape, size); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		name, _ := gguf.GGUFName(t.Name)
		return w.Write(name, buf)
	})
	if err != nil {
		return err
	}
	return w.Close()
}

// ggufMetadata returns the metadata to write and whether it is a GGUF
// source's own.
func ggufMetadata(m denseModel, model gguf.Model, tokPath string) (gguf.Metadata, bool, error) {
	side, err := m.sideFiles()
	if err != nil {
		return nil, false, err
	}
	var tokJSON []byte
	for _, f := range side {
		switch f.Name {
		case checkpoint.GGUFMetadataFile:
			h, err := gguf.Parse(bytes.NewReader(f.Data), int64(len(f.Data)))
			if err != nil {
				return nil, false, fmt.Errorf("%s: side file %s: %w", m.name, f.Name, err)
			}
			md := h.Metadata
			if a, _ := md.Get(gguf.KeyArchitecture); a.Str != model.Arch {
				return nil, false, fmt.Errorf("%s: side file %s is for architecture %q, the model config for %q", m.name, f.Name, a.Str, model.Arch)
			}
			if tokPath != "" {
				tok, err := tokenizerMetadata(tokPath, nil)
				if err != nil {
					return nil, false, err
				}
				md = append(withoutTokenizer(md), tok...)
			}
			if err := checkVocab(md, model, m.name); err != nil {
				return nil, false, err
			}
			return md, true, nil
		case "tokenizer.json":
			tokJSON = f.Data
		}
	}
	md := model.Metadata()
	if tokPath == "" && tokJSON == nil {
		return nil, false, fmt.Errorf("%s: GGUF output needs a tokenizer: give --tokenizer (a llama2.c tokenizer or a tokenizer.json)", m.name)
	}
	tok, err := tokenizerMetadata(tokPath, tokJSON)
	if err != nil {
		return nil, false, err
	}
	md = append(md, tok...)
	return md, false, checkVocab(md, model, m.name)
}

func withoutTokenizer(md gguf.Metadata) gguf.Metadata {
	var out gguf.Metadata
	for _, kv := range md {
		if !strings.HasPrefix(kv.Key, "tokenizer.") {
			out = append(out, kv)
		}
	}
	return out
}

// checkVocab refuses a tokenizer whose size is not the model's vocabulary:
// llama.cpp would refuse the file.
func checkVocab(md gguf.Metadata, model gguf.Model, name string) error {
	if n := gguf.TokenCount(md); n != model.Config.VocabSize {
		return fmt.Errorf("%s: the tokenizer has %d tokens, the model a vocabulary of %d", name, n, model.Config.VocabSize)
	}
	return nil
}

// tokenizerMetadata reads the tokenizer at path (or, when path is "", the
// tokenizer.json content given) as GGUF tokenizer metadata.
func tokenizerMetadata(path string, tokJSON []byte) (gguf.Metadata, error) {
	var tok tokenizer.Tokenizer
	var err error
	if path != "" {
		tok, err = tokenizer.Load(path)
	} else {
		path = "tokenizer.json"
		tok, err = tokenizer.ParseHF(path, tokJSON)
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case *tokenizer.Llama2C:
		pieces := make([]string, t.VocabSize())
		scores := make([]float32, t.VocabSize())
		for i := range pieces {
			pieces[i], scores[i] = t.Piece(i), t.Score(i)
		}
		return gguf.Llama2CTokenizer(pieces, scores), nil
	}
	return nil, fmt.Errorf("%s: only llama2.c tokenizers can be written into GGUF so far", path)
}
