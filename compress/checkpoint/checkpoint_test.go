package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/sharedtest"
)

// writeSafetensors copies every tensor of src, byte for byte, into a
// safetensors file at path.
func writeSafetensors(t *testing.T, src *Source, path string, metadata map[string]string) {
	t.Helper()
	w, err := safetensors.Create(path, src.Tensors, metadata)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, info := range src.Tensors {
		raw, err := src.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(info.Name, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStories260K(t *testing.T) {
	path := sharedtest.Stories260K(t)
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Format != FormatLlama2c || src.Path != path || src.SideFiles != nil {
		t.Errorf("format %q path %q side files %v", src.Format, src.Path, src.SideFiles)
	}
	for name, shape := range map[string][]int{
		"model.embed_tokens.weight":              {512, 64},
		"model.layers.0.mlp.gate_proj.weight":    {172, 64},
		"model.layers.4.mlp.down_proj.weight":    {64, 172},
		"model.layers.3.self_attn.k_proj.weight": {32, 64},
		"model.norm.weight":                      {64},
	} {
		if info, ok := src.Info(name); !ok || !cmp.Equal(info.Shape, shape) || info.DType != F32 {
			t.Errorf("%s: %v %+v, want F32 %v", name, ok, info, shape)
		}
	}
	if _, ok := src.Info("lm_head.weight"); ok {
		t.Error("lm_head.weight present although tied")
	}
	if len(src.Tensors) != 49 {
		t.Errorf("%d tensors, want 49", len(src.Tensors))
	}
	want := LlamaConfig{ModelType: "llama", HiddenSize: 64, IntermediateSize: 172, NumHiddenLayers: 5, NumAttentionHeads: 8,
		NumKeyValueHeads: 4, VocabSize: 512, MaxPositionEmbeddings: 512, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true, HiddenAct: "silu"}
	if src.Config == nil || *src.Config != want {
		t.Fatalf("config = %+v, want %+v", src.Config, want)
	}
	var fromJSON LlamaConfig
	if err := json.Unmarshal(src.ConfigJSON, &fromJSON); err != nil || fromJSON != want {
		t.Errorf("config.json parses to %+v (%v), want %+v", fromJSON, err, want)
	}

	// llama2c -> safetensors: re-opened, every tensor has identical bytes.
	dir := filepath.Join(t.TempDir(), "hf")
	os.Mkdir(dir, 0o755)
	writeSafetensors(t, src, filepath.Join(dir, SingleFileName), map[string]string{"format": "pt"})
	os.WriteFile(filepath.Join(dir, ConfigFileName), src.ConfigJSON, 0o644)
	hf, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if hf.Format != FormatSafetensors || hf.Path != dir {
		t.Errorf("format %q path %q", hf.Format, hf.Path)
	}
	if diff := cmp.Diff(src.Tensors, hf.Tensors); diff != "" {
		t.Fatalf("tensor list differs (-llama2c +safetensors):\n%s", diff)
	}
	for _, info := range src.Tensors {
		a, _ := src.Raw(info.Name)
		b, err := hf.Raw(info.Name)
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s: bytes differ after the safetensors round trip (%v)", info.Name, err)
		}
	}
	if hf.Config == nil || *hf.Config != want {
		t.Errorf("folder config = %+v, want %+v", hf.Config, want)
	}

	// safetensors -> llama2c reproduces the original file byte for byte.
	back := filepath.Join(t.TempDir(), "back.bin")
	if err := llama2c.Write(back, *hf.Config, hf.Float32); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(back)
	if !bytes.Equal(a, b) {
		t.Fatal("llama2c -> safetensors -> llama2c is not byte-identical to the original")
	}
}

// tensorSpec is a tiny tensor for building test files.
type tensorSpec struct {
	info formatbase.TensorInfo
	data []byte
}

func u8(name string, data ...byte) tensorSpec {
	return tensorSpec{formatbase.TensorInfo{Name: name, DType: U8, Shape: []int{len(data)}}, data}
}

func writeFile(t *testing.T, path string, specs ...tensorSpec) {
	t.Helper()
	infos := make([]formatbase.TensorInfo, len(specs))
	for i, s := range specs {
		infos[i] = s.info
	}
	w, err := safetensors.Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, s := range specs {
		if err := w.Write(s.info.Name, s.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeIndex(t *testing.T, dir string, weightMap map[string]string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 6}, "weight_map": weightMap})
	if err := os.WriteFile(filepath.Join(dir, IndexFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestShardedFolder(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), u8("c", 5), u8("d", 6))
	writeFile(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), u8("b", 3, 4), u8("a", 1, 2))
	writeIndex(t, dir, map[string]string{
		"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
		"c": "model-00002-of-00002.safetensors", "d": "model-00002-of-00002.safetensors",
	})
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model":{}}`), 0o644)
	os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(`{"model_type":"llama","hidden_size":8,"rope_theta":500000.0,"rope_scaling":{"type":"x"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("weights"), 0o644)
	os.WriteFile(filepath.Join(dir, "pytorch_model.bin.index.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, "consolidated.pth"), []byte("weights"), 0o644)
	os.Mkdir(filepath.Join(dir, "original"), 0o755)
	os.WriteFile(filepath.Join(dir, "original", "params.json"), []byte("{}"), 0o644)
	// Hugging Face's cache builds snapshot folders of symbolic links.
	blob := filepath.Join(t.TempDir(), "blob")
	os.WriteFile(blob, []byte("<s>"), 0o644)
	if err := os.Symlink(blob, filepath.Join(dir, "special_tokens_map.json")); err != nil {
		t.Fatal(err)
	}

	src, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var names []string
	for _, info := range src.Tensors {
		names = append(names, info.Name)
	}
	if !cmp.Equal(names, []string{"b", "a", "c", "d"}) {
		t.Errorf("tensor order %v, want [b a c d] (shards by name, then file order)", names)
	}
	for name, want := range map[string][]byte{"a": {1, 2}, "b": {3, 4}, "c": {5}, "d": {6}} {
		if got, err := src.Raw(name); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Raw(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	var side []string
	for _, sf := range src.SideFiles {
		side = append(side, sf.Name)
	}
	if !cmp.Equal(side, []string{"config.json", "special_tokens_map.json", "tokenizer.json"}) {
		t.Errorf("side files %v", side)
	}
	if string(src.SideFiles[1].Data) != "<s>" {
		t.Errorf("symlinked side file holds %q", src.SideFiles[1].Data)
	}
	// rope_scaling is kept as written, for the forward pass to refuse.
	want := LlamaConfig{ModelType: "llama", HiddenSize: 8, RopeTheta: 500000, RopeScaling: `{"type":"x"}`}
	if src.Config == nil || *src.Config != want {
		t.Errorf("config %+v, want %+v (missing fields zero)", src.Config, want)
	}
	if !strings.Contains(string(src.ConfigJSON), "rope_scaling") {
		t.Error("ConfigJSON is not the raw config.json")
	}
}

func TestShardedFolderErrors(t *testing.T) {
	const s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"missing shard", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1))
			writeIndex(t, dir, map[string]string{"a": s1, "b": s2})
		}, "shard " + s2 + " is listed in the index but missing"},
		{"tensor in two shards", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1))
			writeFile(t, filepath.Join(dir, s2), u8("a", 1))
			writeIndex(t, dir, map[string]string{"a": s2, "b": s1})
		}, `tensor "a" is in both`},
		{"unlisted tensor", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1), u8("x", 2))
			writeIndex(t, dir, map[string]string{"a": s1})
		}, `tensor "x" of ` + s1 + ` is not in the index`},
		{"wrong shard", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1), u8("c", 1))
			writeFile(t, filepath.Join(dir, s2), u8("b", 1))
			writeIndex(t, dir, map[string]string{"a": s2, "b": s2, "c": s1})
		}, `index puts tensor "a" in ` + s2 + `, but it is in ` + s1},
		{"listed tensor absent", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1))
			writeIndex(t, dir, map[string]string{"a": s1, "z": s1})
		}, `"z" in ` + s1 + `, which does not contain it`},
		{"path in shard name", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{"a": "../" + s1})
		}, "not a file name in the folder"},
		{"bad index", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":`), 0o644)
		}, "invalid index"},
		{"empty index", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{})
		}, "no weight_map"},
		{"no weights", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(`{}`), 0o644)
		}, "neither model.safetensors nor"},
		{"corrupt shard", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, s1), u8("a", 1, 2))
			b, _ := os.ReadFile(filepath.Join(dir, s1))
			os.WriteFile(filepath.Join(dir, s1), b[:len(b)-1], 0o644)
			writeIndex(t, dir, map[string]string{"a": s1})
		}, s1 + ": safetensors: tensor \"a\""},
		{"huge side file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, SingleFileName), u8("a", 1))
			f, _ := os.Create(filepath.Join(dir, "tokenizer.json"))
			f.Truncate(MaxSideFileSize + 1) // sparse: costs no disk
			f.Close()
		}, "tokenizer.json: side file is"},
		{"huge index", func(t *testing.T, dir string) {
			f, _ := os.Create(filepath.Join(dir, IndexFileName))
			f.Truncate(MaxSideFileSize + 1) // sparse: costs no disk
			f.Close()
		}, IndexFileName + ": shard index is more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			src, err := Open(dir)
			if err == nil {
				src.Close()
				t.Fatal("Open accepted the folder")
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.Contains(msg, dir) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s and containing %q", msg, dir, c.want)
			}
		})
	}
}

func TestDetection(t *testing.T) {
	dir := t.TempDir()
	// A llama2c checkpoint without the .bin extension is found by its size.
	cfg := llama2c.Config{Dim: 4, HiddenDim: 2, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 3, SeqLen: 2, SharedClassifier: true}
	l2 := filepath.Join(dir, "model.llama2c")
	err := llama2c.Write(l2, cfg.LlamaConfig(), func(name string) ([]float32, error) {
		info, _ := llama2cInfo(cfg, name)
		return make([]float32, info.NumElements()), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if src, err := Open(l2); err != nil || src.Format != FormatLlama2c {
		t.Fatalf("extensionless llama2c: %v", err)
	} else {
		src.Close()
	}
	st := filepath.Join(dir, "weights.data")
	writeFile(t, st, u8("a", 1))
	if src, err := Open(st); err != nil || src.Format != FormatSafetensors {
		t.Fatalf("extensionless safetensors: %v", err)
	} else {
		src.Close()
	}

	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, bytes.Repeat([]byte{0x41}, 100), 0o644)
	_, err = Open(garbage)
	if err == nil || !strings.HasPrefix(err.Error(), garbage+": not a checkpoint") || strings.Count(err.Error(), garbage) != 1 {
		t.Errorf("garbage: %v", err)
	}
	torch := filepath.Join(dir, "pytorch_model.bin")
	os.WriteFile(torch, append([]byte("PK\x03\x04"), make([]byte, 60)...), 0o644)
	if _, err := Open(torch); err == nil || !strings.Contains(err.Error(), "PyTorch") {
		t.Errorf("PyTorch .bin: %v", err)
	}
	trunc := filepath.Join(dir, "trunc.bin")
	b, _ := os.ReadFile(l2)
	os.WriteFile(trunc, b[:len(b)-1], 0o644)
	if _, err := Open(trunc); err == nil || !strings.Contains(err.Error(), "truncated") || !strings.HasPrefix(err.Error(), trunc+": ") {
		t.Errorf("truncated llama2c: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "absent.safetensors")); err == nil {
		t.Error("Open of a missing path succeeded")
	}
}

func llama2cInfo(c llama2c.Config, name string) (TensorInfo, bool) {
	for _, info := range c.Tensors() {
		if info.Name == name {
			return info, true
		}
	}
	return TensorInfo{}, false
}

func TestFloat32(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	writeFile(t, path,
		tensorSpec{formatbase.TensorInfo{Name: "h", DType: F16, Shape: []int{2}}, []byte{0x00, 0x3c, 0x00, 0xb8}},  // 1, -0.5
		tensorSpec{formatbase.TensorInfo{Name: "b", DType: BF16, Shape: []int{2}}, []byte{0x80, 0x3f, 0x00, 0xc0}}, // 1, -2
		tensorSpec{formatbase.TensorInfo{Name: "f", DType: F32, Shape: []int{1}}, []byte{0x00, 0x00, 0x40, 0x40}},  // 3
		tensorSpec{formatbase.TensorInfo{Name: "i", DType: I64, Shape: []int{}}, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
	)
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Config != nil || src.ConfigJSON != nil || src.SideFiles != nil {
		t.Error("a single file has a config or side files")
	}
	for name, want := range map[string][]float32{"h": {1, -0.5}, "b": {1, -2}, "f": {3}} {
		if got, err := src.Float32(name); err != nil || !cmp.Equal(got, want) {
			t.Errorf("Float32(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	_, err = src.Float32("i")
	if err == nil || !errors.Is(err, formatbase.ErrNotFloat) || !strings.Contains(err.Error(), `"i" has dtype I64`) {
		t.Errorf("Float32 of I64: %v", err)
	}
	if _, err := src.Float32("nope"); err == nil {
		t.Error("Float32 of a missing tensor succeeded")
	}
}
