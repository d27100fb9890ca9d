package llama2c

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/internal/sharedtest"
)

func TestStories260K(t *testing.T) {
	path := sharedtest.Stories260K(t)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}
	if f.Config() != want {
		t.Fatalf("config = %v, want %v", f.Config(), want)
	}
	infos := f.Tensors()
	if len(infos) != 1+5*9+1+2 {
		t.Errorf("%d tensors, want 49", len(infos))
	}
	shapes := map[string][]int{
		"model.embed_tokens.weight":                      {512, 64},
		"model.layers.0.input_layernorm.weight":          {64},
		"model.layers.4.self_attn.q_proj.weight":         {64, 64},
		"model.layers.2.self_attn.k_proj.weight":         {32, 64},
		"model.layers.2.self_attn.v_proj.weight":         {32, 64},
		"model.layers.1.self_attn.o_proj.weight":         {64, 64},
		"model.layers.3.post_attention_layernorm.weight": {64},
		"model.layers.0.mlp.gate_proj.weight":            {172, 64},
		"model.layers.0.mlp.down_proj.weight":            {64, 172},
		"model.layers.0.mlp.up_proj.weight":              {172, 64},
		"model.norm.weight":                              {64},
		FreqCisReal:                                      {512, 4},
		FreqCisImag:                                      {512, 4},
	}
	for name, shape := range shapes {
		info, ok := f.Info(name)
		if !ok || !cmp.Equal(info.Shape, shape) || info.DType != formatbase.F32 {
			t.Errorf("%s: %v %v, want F32 %v", name, ok, info, shape)
		}
	}
	if _, ok := f.Info("lm_head.weight"); ok {
		t.Error("lm_head.weight present although the classifier is shared")
	}

	// The stored RoPE tables are what FreqCis computes, to float32 rounding
	// of PyTorch's transcendental functions.
	re, im := FreqCis(8, 512)
	for name, want := range map[string][]float32{FreqCisReal: re, FreqCisImag: im} {
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6 {
				t.Fatalf("%s[%d] = %v, FreqCis gives %v", name, i, got[i], want[i])
			}
		}
	}

	// Read -> write reproduces the original byte for byte.
	out := filepath.Join(t.TempDir(), "copy.bin")
	if err := Write(out, f.LlamaConfig(), f.Float32); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)
	copied, _ := os.ReadFile(out)
	if !bytes.Equal(orig, copied) {
		t.Fatalf("written file differs from the original (%d vs %d bytes)", len(copied), len(orig))
	}
}

// oraclePermute is transformers' permute written literally: view the
// [rows, cols] matrix as [heads, rows/heads/2, 2, cols], swap axes 1 and 2,
// and flatten.
func oraclePermute(w []float32, heads, rows, cols int) []float32 {
	half := rows / heads / 2
	out := make([]float32, 0, len(w))
	for h := 0; h < heads; h++ {
		for b := 0; b < 2; b++ { // new axis 1 is the old axis 2
			for a := 0; a < half; a++ {
				src := ((h*half+a)*2 + b) * cols
				out = append(out, w[src:src+cols]...)
			}
		}
	}
	return out
}

func TestPermuteRows(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ heads, headSize, cols int }{{1, 2, 1}, {8, 8, 64}, {4, 8, 3}, {3, 6, 5}, {2, 16, 7}} {
		rows := c.heads * c.headSize
		w := make([]float32, rows*c.cols)
		for i := range w {
			w[i] = r.Float32()
		}
		raw, _ := formatbase.EncodeFloat32(formatbase.F32, w)
		hf := make([]byte, len(raw))
		permuteRows(hf, raw, c.heads, 4*c.cols, false)
		got, _ := formatbase.DecodeFloat32(formatbase.F32, hf)
		if !cmp.Equal(got, oraclePermute(w, c.heads, rows, c.cols)) {
			t.Errorf("%+v: permutation differs from transformers' permute", c)
		}
		back := make([]byte, len(raw))
		permuteRows(back, hf, c.heads, 4*c.cols, true)
		if !bytes.Equal(back, raw) {
			t.Errorf("%+v: inverse permutation does not restore the input", c)
		}
	}
}

// synthetic returns a config and deterministic random tensors for it.
func synthetic(c Config) map[string][]float32 {
	r := rand.New(rand.NewPCG(5, 6))
	vals := map[string][]float32{}
	for _, info := range c.Tensors() {
		v := make([]float32, info.NumElements())
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		vals[info.Name] = v
	}
	return vals
}

func getter(vals map[string][]float32) func(string) ([]float32, error) {
	return func(name string) ([]float32, error) {
		v, ok := vals[name]
		if !ok {
			return nil, fmt.Errorf("no tensor %q", name)
		}
		return v, nil
	}
}

func TestWriteUnsharedClassifier(t *testing.T) {
	c := Config{Dim: 12, HiddenDim: 20, NLayers: 2, NHeads: 3, NKVHeads: 1, VocabSize: 7, SeqLen: 5}
	vals := synthetic(c)
	if _, ok := vals["lm_head.weight"]; !ok {
		t.Fatal("unshared classifier has no lm_head.weight")
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := Write(path, c.LlamaConfig(), getter(vals)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if v := int32(binary.LittleEndian.Uint32(raw[20:])); v != -7 {
		t.Errorf("vocab_size field = %d, want -7 for a separate classifier", v)
	}
	if want, _ := c.FileSize(); int64(len(raw)) != want {
		t.Fatalf("file is %d bytes, want %d", len(raw), want)
	}
	// In the file, layer 1's wq follows layer 0's, which follows the
	// embeddings and rms_att, in llama2.c's interleaved rotary layout: file
	// row h*hs+2i+t is HF row h*hs+t*hs/2+i.
	off := HeaderSize + 4*(7*12+2*12+12*12)
	q := vals["model.layers.1.self_attn.q_proj.weight"]
	for row := 0; row < 12; row++ {
		h, i, tt := row/4, (row%4)/2, row%2
		hfRow := h*4 + tt*2 + i
		for col := 0; col < 12; col++ {
			got := math.Float32frombits(binary.LittleEndian.Uint32(raw[off+4*(row*12+col):]))
			if got != q[hfRow*12+col] {
				t.Fatalf("wq[1] file row %d col %d = %v, want HF row %d's %v", row, col, got, hfRow, q[hfRow*12+col])
			}
		}
	}
	// The classifier is the last array.
	lm := vals["lm_head.weight"]
	if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[len(raw)-4:])); got != lm[len(lm)-1] {
		t.Errorf("last float = %v, want lm_head's last %v", got, lm[len(lm)-1])
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Config() != c {
		t.Fatalf("read config %v, want %v", f.Config(), c)
	}
	for _, info := range f.Tensors() {
		got, err := f.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(got, vals[info.Name]) {
			t.Errorf("%s differs after write and read", info.Name)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	c := Config{Dim: 8, HiddenDim: 4, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 3, SeqLen: 2, SharedClassifier: true}
	vals := synthetic(c)
	path := filepath.Join(dir, "m.bin")

	short := getter(vals)
	bad := func(name string) ([]float32, error) {
		v, err := short(name)
		if name == "model.layers.0.mlp.up_proj.weight" {
			v = v[:3]
		}
		return v, err
	}
	if err := Write(path, c.LlamaConfig(), bad); err == nil || !strings.Contains(err.Error(), "up_proj") {
		t.Errorf("short tensor: err = %v", err)
	}
	failing := func(name string) ([]float32, error) {
		if name == FreqCisImag {
			return nil, fmt.Errorf("boom")
		}
		return short(name)
	}
	if err := Write(path, c.LlamaConfig(), failing); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("getter error: err = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed writes left %d files", len(entries))
	}

	for _, mod := range []func(*formatbase.LlamaConfig){
		func(lc *formatbase.LlamaConfig) { lc.RMSNormEps = 1e-6 },
		func(lc *formatbase.LlamaConfig) { lc.RopeTheta = 500000 },
		func(lc *formatbase.LlamaConfig) { lc.ModelType = "mistral" },
		func(lc *formatbase.LlamaConfig) { lc.NumAttentionHeads = 3 },
		func(lc *formatbase.LlamaConfig) { lc.MaxPositionEmbeddings = 0 },
	} {
		lc := c.LlamaConfig()
		mod(&lc)
		if err := Write(path, lc, getter(vals)); err == nil {
			t.Errorf("Write accepted config %+v", lc)
		}
	}

	if err := Write(path, c.LlamaConfig(), getter(vals)); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, c.LlamaConfig(), getter(vals)); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second Write: err = %v", err)
	}
	if err := WriteWith(path, c.LlamaConfig(), getter(vals), formatbase.WriteOptions{Overwrite: true}); err != nil {
		t.Errorf("overwrite: %v", err)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	c := Config{Dim: 8, HiddenDim: 4, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 3, SeqLen: 2, SharedClassifier: true}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.bin")
	if err := Write(good, c.LlamaConfig(), getter(synthetic(c))); err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(good)
	header := func(vs ...int32) []byte {
		b := make([]byte, 4*len(vs))
		for i, v := range vs {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"truncated", content[:len(content)-4], "truncated"},
		{"extra", append(append([]byte(nil), content...), 0), "1 more than"},
		{"short", content[:10], "shorter than"},
		{"zero dim", header(0, 4, 1, 2, 2, 3, 2), "dim 0"},
		{"zero vocab", header(8, 4, 1, 2, 2, 0, 2), "vocab_size 0"},
		{"negative layers", header(8, 4, -1, 2, 2, 3, 2), "n_layers -1"},
		{"heads not dividing dim", header(8, 4, 1, 3, 3, 3, 2), "not a multiple of n_heads"},
		{"kv heads", header(8, 4, 1, 2, 3, 3, 2), "n_kv_heads 3"},
		{"odd head size", header(6, 4, 1, 2, 2, 3, 2), "odd"},
		{"huge", header(1<<30, 1<<30, 1<<30, 2, 2, 1<<30, 1<<30), "large"},
		{"v1 export", header(0x616b3432, 1, 8, 4, 1, 2, 2), "version 1 or 2"},
		{"safetensors", append(header(40, 0), []byte(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`)...), "not a legacy checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".bin")
			os.WriteFile(p, tc.content, 0o644)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("Open accepted a bad file")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+": ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting with the file name and mentioning %q", msg, tc.want)
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	c := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 256, SharedClassifier: true}
	var got map[string]any
	if err := json.Unmarshal(c.ConfigJSON(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"architectures": []any{"LlamaForCausalLM"}, "model_type": "llama", "hidden_act": "silu", "torch_dtype": "float32",
		"hidden_size": 64.0, "intermediate_size": 172.0, "num_hidden_layers": 5.0, "num_attention_heads": 8.0,
		"num_key_value_heads": 4.0, "vocab_size": 512.0, "max_position_embeddings": 256.0,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config.json (-want +got):\n%s", diff)
	}
	back, err := ConfigFromLlama(c.LlamaConfig())
	if err != nil || back != c {
		t.Errorf("ConfigFromLlama(LlamaConfig()) = %v, %v; want %v", back, err, c)
	}
}
