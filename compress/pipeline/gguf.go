package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/gguf"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/regularfile"
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
// the folder's tokenizer.json (or, converting a folder, its tokenizer.bin).
// o.tokenizer also replaces a GGUF source's tokenizer. A SentencePiece
// vocabulary without byte tokens is written with a note (spmCoverage).
func writeGGUF(m denseModel, o output) error {
	model, err := gguf.ModelFromConfig(m.configJSON)
	if err != nil {
		return fmt.Errorf("%s: cannot write GGUF: %w", m.name, err)
	}
	md, fromGGUF, err := ggufMetadata(m, model, o.tokenizer)
	if err != nil {
		return err
	}
	if bytesOK, newline := spmCoverage(md); !bytesOK {
		msg := "the tokenizer has no byte tokens, and llama.cpp's SentencePiece tokenizer, which has no <unk> fallback, aborts on text with a character outside the vocabulary (feeding token ids works)"
		if !newline {
			msg += "; it has no newline token either, which node-llama-cpp tokenizes as it loads a model"
		}
		o.note("%s: %s", o.path, msg)
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
		typ, ok := ggmlTypes[ggufType(t, o, fromGGUF)]
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
		to := ggufType(t, o, fromGGUF)
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

// ggufType is the dtype a tensor is written in. Vectors (norms, biases)
// are F32 as llama.cpp's own converters write them: its CPU backend has no
// F16 or BF16 element-wise products with F32 activations and aborts on
// them. Only a GGUF source's own vectors, copied without --dtype, keep
// their type, so that a round trip gives back the same bytes.
func ggufType(t checkpoint.TensorInfo, o output, fromGGUF bool) checkpoint.DType {
	if len(t.Shape) == 1 && isFloat(t.DType) && (o.dtype != "" || !fromGGUF) {
		return checkpoint.F32
	}
	return o.outType(t.DType)
}

// ggufMetadata returns the metadata to write and whether it is a GGUF
// source's own.
func ggufMetadata(m denseModel, model gguf.Model, tokPath string) (gguf.Metadata, bool, error) {
	side, err := m.sideFiles()
	if err != nil {
		return nil, false, err
	}
	hasTok := false
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
				tok, err := tokenizerMetadata(tokPath, nil, model.Arch)
				if err != nil {
					return nil, false, err
				}
				md = withTokenizer(md, tok)
			}
			if err := checkVocab(md, model, m.name); err != nil {
				return nil, false, err
			}
			return md, true, nil
		case "tokenizer.json":
			hasTok = true
		}
	}
	if tokPath == "" && !hasTok && m.dir != "" && tokenizer.Carries(m.dir) {
		tokPath = m.dir // a folder converted as it is: its tokenizer.bin
	}
	md := model.Metadata()
	if tokPath == "" && !hasTok {
		return nil, false, fmt.Errorf("%s: GGUF output needs a tokenizer: give --tokenizer (a llama2.c tokenizer or a tokenizer.json)", m.name)
	}
	tok, err := tokenizerMetadata(tokPath, side, model.Arch)
	if err != nil {
		return nil, false, err
	}
	md = append(md, tok...)
	return md, false, checkVocab(md, model, m.name)
}

// spmCoverage reports, for a SentencePiece ("llama") vocabulary, whether it
// has the byte token <0x0A> (byte fallback) and whether it has a newline at
// all, as a byte token or a piece. llama.cpp's tokenizer looks characters
// without a piece up as byte tokens and throws, taking the process down,
// when there is none. Other tokenizer models report true.
func spmCoverage(md gguf.Metadata) (bytes, newline bool) {
	if m, _ := md.Get(gguf.KeyTokenizerModel); m.Str != "llama" {
		return true, true
	}
	v, _ := md.Get(gguf.KeyTokens)
	toks, _ := v.Strings()
	for _, t := range toks {
		bytes = bytes || t == "<0x0A>"
		newline = newline || t == "<0x0A>" || t == "\n"
	}
	return bytes, newline
}

// withTokenizer replaces md's tokenizer keys with tok's, where the first
// of them was.
func withTokenizer(md, tok gguf.Metadata) gguf.Metadata {
	var out gguf.Metadata
	placed := false
	for _, kv := range md {
		if !strings.HasPrefix(kv.Key, "tokenizer.") {
			out = append(out, kv)
		} else if !placed {
			out, placed = append(out, tok...), true
		}
	}
	if !placed {
		out = append(out, tok...)
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

// tokenizerMetadata reads the tokenizer at path as GGUF tokenizer
// metadata: a llama2.c tokenizer, a tokenizer.json (with the
// tokenizer_config.json beside it, if any), a folder holding either, or a
// GGUF file whose tokenizer is copied. With path "", the side files'
// tokenizer.json is used.
func tokenizerMetadata(path string, side []checkpoint.SideFile, arch string) (gguf.Metadata, error) {
	if path == "" {
		var tok, cfg []byte
		for _, f := range side {
			switch f.Name {
			case "tokenizer.json":
				tok = f.Data
			case "tokenizer_config.json":
				cfg = f.Data
			}
		}
		md, err := gguf.HFTokenizer(tok, cfg, arch)
		if err != nil {
			return nil, fmt.Errorf("side file %w", err)
		}
		return md, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		for _, name := range []string{"tokenizer.json", "tokenizer.bin"} {
			if fi, err := os.Stat(filepath.Join(path, name)); err == nil && fi.Mode().IsRegular() {
				return tokenizerMetadata(filepath.Join(path, name), nil, arch)
			}
		}
		return nil, fmt.Errorf("tokenizer: %s: folder holds neither tokenizer.json nor tokenizer.bin", path)
	}
	data, err := regularfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	switch {
	case bytes.HasPrefix(data, []byte(gguf.Magic)):
		h, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: gguf: %w", path, err)
		}
		var md gguf.Metadata
		for _, kv := range h.Metadata {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				md = append(md, kv)
			}
		}
		if len(md) == 0 {
			return nil, fmt.Errorf("tokenizer: %s: the GGUF file has no tokenizer", path)
		}
		return md, nil
	case bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")):
		cfg, _ := regularfile.ReadFile(filepath.Join(filepath.Dir(path), "tokenizer_config.json"))
		md, err := gguf.HFTokenizer(data, cfg, arch)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		return md, nil
	}
	return llama2cTokenizer(path, data)
}

// llama2cTokenizer reads a llama2.c tokenizer as GGUF metadata.
func llama2cTokenizer(path string, data []byte) (gguf.Metadata, error) {
	t, err := tokenizer.ParseLlama2C(path, data)
	if err != nil {
		return nil, err
	}
	pieces := make([]string, t.VocabSize())
	scores := make([]float32, t.VocabSize())
	for i := range pieces {
		pieces[i], scores[i] = t.Piece(i), t.Score(i)
	}
	return gguf.Llama2CTokenizer(pieces, scores), nil
}
