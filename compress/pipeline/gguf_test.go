package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/gguf"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/sharedtest"
	"pocketllm-native/internal/tinymodel"
)

// tinyLlama2c writes a small random llama2.c model (grouped-query
// attention, shared classifier) and a llama2.c tokenizer of its vocabulary:
// <unk>, <s>, </s>, the 256 byte tokens and a few words.
func tinyLlama2c(t *testing.T, dir string) (model, tok string) {
	t.Helper()
	words := []string{" ", "a", "b", " a", "ab"}
	cfg := checkpoint.LlamaConfig{HiddenSize: 8, IntermediateSize: 12, NumHiddenLayers: 2, NumAttentionHeads: 2,
		NumKeyValueHeads: 1, VocabSize: 259 + len(words), MaxPositionEmbeddings: 16, TieWordEmbeddings: true}
	c, err := llama2c.ConfigFromLlama(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	re, im := llama2c.FreqCis(c.HeadSize(), c.SeqLen)
	get := func(name string) ([]float32, error) {
		switch name {
		case llama2c.FreqCisReal:
			return re, nil
		case llama2c.FreqCisImag:
			return im, nil
		}
		for _, info := range c.Tensors() {
			if info.Name == name {
				v := make([]float32, info.NumElements())
				for i := range v {
					v[i] = float32(rng.NormFloat64())
				}
				return v, nil
			}
		}
		t.Fatalf("no tensor %s", name)
		return nil, nil
	}
	model = filepath.Join(dir, "tiny.bin")
	if err := llama2c.Write(model, cfg, get); err != nil {
		t.Fatal(err)
	}
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, string([]byte{'<', '0', 'x', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15], '>'}))
	}
	pieces = append(pieces, words...)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, int32(8))
	for i, p := range pieces {
		binary.Write(&buf, binary.LittleEndian, float32(-i))
		binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	tok = filepath.Join(dir, "tok.bin")
	if err := os.WriteFile(tok, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return model, tok
}

func convert(t *testing.T, o ConvertOptions) {
	t.Helper()
	if _, err := Convert(o); err != nil {
		t.Fatal(err)
	}
}

func openGGUF(t *testing.T, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sameTensors checks that two checkpoints hold the same tensors, bit for
// bit, leaving out llama2.c's RoPE tables (a GGUF file has none).
func sameTensors(t *testing.T, a, b string) {
	t.Helper()
	sa, err := checkpoint.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := checkpoint.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	n := 0
	for _, info := range sa.Tensors {
		if isLlama2cTable(info.Name) {
			continue
		}
		n++
		other, ok := sb.Info(info.Name)
		if !ok || other.DType != info.DType || !cmp.Equal(other.Shape, info.Shape) {
			t.Fatalf("%s: tensor %s is %+v in %s, %+v here", b, info.Name, other, a, info)
		}
		ra, _ := sa.Raw(info.Name)
		rb, err := sb.Raw(info.Name)
		if err != nil || !bytes.Equal(ra, rb) {
			t.Fatalf("tensor %s differs between %s and %s (%v)", info.Name, a, b, err)
		}
	}
	for _, info := range sb.Tensors {
		if _, ok := sa.Info(info.Name); !ok && !isLlama2cTable(info.Name) {
			t.Fatalf("%s has tensor %s, %s does not", b, info.Name, a)
		}
	}
	if n == 0 {
		t.Fatal("no tensors compared")
	}
}

// roundTrips converts a llama2.c model to GGUF and back to llama2.c and to
// a Hugging Face folder, checking the GGUF file against llama.cpp's
// conventions on the way, and returns the GGUF path.
func roundTrips(t *testing.T, dir, model, tok string, sameFile bool) string {
	g := filepath.Join(dir, "m.gguf")
	convert(t, ConvertOptions{In: model, Out: g, Tokenizer: tok})
	f := openGGUF(t, g)
	lf, err := llama2c.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	c := lf.Config()
	md := f.Metadata
	for key, want := range map[string]uint64{
		"llama.context_length": uint64(c.SeqLen), "llama.embedding_length": uint64(c.Dim), "llama.block_count": uint64(c.NLayers),
		"llama.feed_forward_length": uint64(c.HiddenDim), "llama.attention.head_count": uint64(c.NHeads),
		"llama.attention.head_count_kv": uint64(c.NKVHeads), "llama.rope.dimension_count": uint64(c.HeadSize()),
		"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0, "general.file_type": 0,
	} {
		if v, ok := md.Get(key); !ok || v.Type != gguf.TypeUint32 || v.Bits != want {
			t.Errorf("%s = %+v, want uint32 %d", key, v, want)
		}
	}
	if v, _ := md.Get("general.architecture"); v.Str != "llama" || md[0].Key != "general.architecture" {
		t.Errorf("general.architecture %q is not first and llama", v.Str)
	}
	if v, _ := md.Get("llama.attention.layer_norm_rms_epsilon"); v.Type != gguf.TypeFloat32 || math.Float32frombits(uint32(v.Bits)) != 1e-5 {
		t.Errorf("rms epsilon %+v", v)
	}
	toks, _ := md.Get("tokenizer.ggml.tokens")
	types, _ := md.Get("tokenizer.ggml.token_type")
	strs, _ := toks.Strings()
	tt, _ := types.Ints()
	if len(strs) != c.VocabSize || len(tt) != c.VocabSize || strs[0] != "<unk>" || strs[1] != "<s>" || strs[2] != "</s>" ||
		tt[0] != gguf.TokenUnknown || tt[1] != gguf.TokenControl || tt[3] != gguf.TokenByte || strs[3] != "<0x00>" || tt[259] != gguf.TokenNormal {
		t.Errorf("tokenizer: %d tokens, first %q, types %v", len(strs), strs[:4], tt[:4])
	}
	if all := strings.Join(strs, ""); strings.Contains(all, " ") || !strings.Contains(all, "▁") {
		t.Errorf("spaces are not all written as ▁")
	}
	// llama2.c keeps Q and K in the layout llama.cpp wants, which is why
	// convert-llama2c-to-ggml copies them as they are: the GGUF rows must
	// be the llama2.c file's bytes.
	raw, _ := os.ReadFile(model)
	d, l, v := c.Dim, c.NLayers, c.VocabSize
	wq := llama2c.HeaderSize + 4*(v*d+l*d)
	wk := wq + 4*l*d*d
	for _, x := range []struct {
		name string
		off  int
		n    int
	}{{"blk.0.attn_q.weight", wq, d * d}, {"blk.1.attn_q.weight", wq + 4*d*d, d * d}, {"blk.1.attn_k.weight", wk + 4*c.KVDim()*d, c.KVDim() * d}} {
		got, err := f.Raw(x.name)
		if err != nil || !bytes.Equal(got, raw[x.off:x.off+4*x.n]) {
			t.Errorf("%s is not the llama2.c file's rows (%v)", x.name, err)
		}
		if info, _ := f.Info(x.name); info.Dims[0] != d {
			t.Errorf("%s dims %v, want [%d, rows]", x.name, info.Dims, d)
		}
	}
	if _, ok := f.Info("output.weight"); ok {
		t.Error("a tied model got output.weight")
	}

	back := filepath.Join(dir, "back.bin")
	convert(t, ConvertOptions{In: g, Out: back})
	if sameFile {
		if got, _ := os.ReadFile(back); !bytes.Equal(got, raw) {
			t.Error("llama2.c -> GGUF -> llama2.c is not byte-identical")
		}
	}
	sameTensors(t, model, back)
	viaGGUF, direct := filepath.Join(dir, "hf-gguf"), filepath.Join(dir, "hf")
	convert(t, ConvertOptions{In: g, Out: viaGGUF})
	convert(t, ConvertOptions{In: model, Out: direct})
	sameTensors(t, direct, viaGGUF)
	sameTensors(t, model, viaGGUF)
	// A GGUF written from the folder the GGUF became is the same file.
	again := filepath.Join(dir, "again.gguf")
	convert(t, ConvertOptions{In: viaGGUF, Out: again})
	if a, b := mustRead(t, g), mustRead(t, again); !bytes.Equal(a, b) {
		t.Error("GGUF -> folder -> GGUF is not byte-identical")
	}
	return g
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConvertLlama2cGGUFRoundTrip(t *testing.T) {
	dir := t.TempDir()
	model, tok := tinyLlama2c(t, dir)
	g := roundTrips(t, dir, model, tok, true)

	half := filepath.Join(dir, "half.gguf")
	convert(t, ConvertOptions{In: g, Out: half, DType: "f16"})
	hf := openGGUF(t, half)
	for _, ti := range hf.Tensors {
		want := gguf.GGMLF16
		if len(ti.Dims) == 1 {
			want = gguf.GGMLF32 // vectors stay F32, as llama.cpp needs them
		}
		if ti.Type != want {
			t.Errorf("--dtype f16: %s is %s, want %s", ti.Name, ti.Type, want)
		}
	}
	if v, _ := hf.Metadata.Get("general.file_type"); v.Bits != 1 {
		t.Errorf("general.file_type %d, want 1 (mostly F16)", v.Bits)
	}
	orig := openGGUF(t, g)
	if len(hf.Metadata) != len(orig.Metadata) {
		t.Errorf("--dtype f16 changed the metadata keys")
	}
}

// TestGGUFCompressRoundTrip compresses a GGUF file and decompresses it to
// GGUF: every metadata key and value comes back, kept tensors bit for bit.
func TestGGUFCompressRoundTrip(t *testing.T) {
	dir := t.TempDir()
	model, tok := tinyLlama2c(t, dir)
	g := filepath.Join(dir, "m.gguf")
	convert(t, ConvertOptions{In: model, Out: g, Tokenizer: tok})
	compressDecompressGGUF(t, dir, g)
}

func compressDecompressGGUF(t *testing.T, dir, g string) {
	p := filepath.Join(dir, "m.pllm")
	o := CompressOptions{In: g, Out: p, Include: `(^|\.)(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$`, Share: "none",
		MethodName: MethodRTN, RTN: rtn.Settings{Bits: 4, GroupSize: 8}, Kernels: bindings.Go(), Calibration: Calibration{Off: true}}
	if _, err := Compress(o); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.gguf")
	if err := Decompress(DecompressOptions{In: p, Out: out, Kernels: bindings.Go()}); err != nil {
		t.Fatal(err)
	}
	a, b := openGGUF(t, g), openGGUF(t, out)
	if diff := cmp.Diff(a.Metadata, b.Metadata); diff != "" {
		t.Fatalf("metadata changed (-in +out):\n%s", diff)
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors in, %d out", len(a.Tensors), len(b.Tensors))
	}
	kept := 0
	for _, ta := range a.Tensors {
		tb, ok := b.Info(ta.Name)
		if !ok || tb.Type != ta.Type || !cmp.Equal(tb.Dims, ta.Dims) {
			t.Fatalf("tensor %s: %+v in, %+v out", ta.Name, ta, tb)
		}
		if strings.Contains(ta.Name, "norm") || ta.Name == "token_embd.weight" {
			kept++
			ra, _ := a.Raw(ta.Name)
			rb, _ := b.Raw(ta.Name)
			if !bytes.Equal(ra, rb) {
				t.Errorf("kept tensor %s changed", ta.Name)
			}
		}
	}
	if kept == 0 {
		t.Fatal("no kept tensor compared")
	}
}

func TestGGUFOutputErrors(t *testing.T) {
	dir := t.TempDir()
	model, tok := tinyLlama2c(t, dir)
	out := filepath.Join(dir, "x.gguf")
	for _, c := range []struct {
		o    ConvertOptions
		want string
	}{
		{ConvertOptions{In: model, Out: out}, "GGUF output needs a tokenizer"},
		{ConvertOptions{In: model, Out: out, Tokenizer: model}, "tokenizer"},
		{ConvertOptions{In: model, Out: out, Tokenizer: tok, DType: "f8"}, `--dtype "f8"`},
		{ConvertOptions{In: model, Out: out, Tokenizer: tok, Format: "onnx"}, `--format "onnx"`},
		{ConvertOptions{In: model, Out: filepath.Join(dir, "x"), Tokenizer: tok}, "only GGUF output holds a tokenizer"},
	} {
		_, err := Convert(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.o, err, c.want)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Fatalf("%+v: left %s behind", c.o, out)
		}
	}
	// A tokenizer of another size than the vocabulary.
	short := filepath.Join(dir, "short.bin")
	raw := mustRead(t, tok)
	if err := os.WriteFile(short, raw[:len(raw)-len("ab")-8], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(ConvertOptions{In: model, Out: out, Tokenizer: short}); err == nil || !strings.Contains(err.Error(), "tokenizer has 263 tokens, the model a vocabulary of 264") {
		t.Errorf("short tokenizer: %v", err)
	}
	g := filepath.Join(dir, "m.gguf")
	convert(t, ConvertOptions{In: model, Out: g, Tokenizer: tok})
	if _, err := Convert(ConvertOptions{In: model, Out: g, Tokenizer: tok}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output: %v", err)
	}
	// A truncated GGUF input is refused with one line naming it.
	cut := filepath.Join(dir, "cut.gguf")
	full := mustRead(t, g)
	if err := os.WriteFile(cut, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(ConvertOptions{In: cut, Out: filepath.Join(dir, "cut.bin")}); err == nil || !strings.HasPrefix(err.Error(), cut+": gguf: truncated") {
		t.Errorf("truncated input: %v", err)
	}
}

func TestStories260KGGUF(t *testing.T) {
	model := sharedtest.Path(t, "models", "stories260K", "stories260K.bin")
	tok := sharedtest.Path(t, "models", "stories260K", "tok512.bin")
	dir := t.TempDir()
	// The RoPE tables PyTorch wrote differ from FreqCis's in the last bits,
	// so the file comes back with the weights identical, not byte for byte.
	g := roundTrips(t, dir, model, tok, false)
	compressDecompressGGUF(t, dir, g)
}

// TestGGUFFromFolderTokenizerJSON writes a Hugging Face folder with a
// SentencePiece-style tokenizer.json to GGUF: the tokenizer comes from the
// folder, scored by merge rank.
func TestGGUFFromFolderTokenizerJSON(t *testing.T) {
	dir := t.TempDir()
	model, _ := tinyLlama2c(t, dir)
	folder := filepath.Join(dir, "hf")
	convert(t, ConvertOptions{In: model, Out: folder})
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[string([]byte{'<', '0', 'x', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15], '>'})] = 3 + b
	}
	for i, w := range []string{"▁", "a", "b", "▁a", "ab"} {
		vocab[w] = 259 + i
	}
	tj, _ := json.Marshal(map[string]any{
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{"▁ a", "a b"}, "byte_fallback": true, "unk_token": "<unk>"},
		"added_tokens": []map[string]any{{"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}},
		"decoder":      map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "Replace"}}},
	})
	if err := os.WriteFile(filepath.Join(folder, "tokenizer.json"), tj, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.gguf")
	convert(t, ConvertOptions{In: folder, Out: out})
	md := openGGUF(t, out).Metadata
	if v, _ := md.Get("tokenizer.ggml.model"); v.Str != "llama" {
		t.Fatalf("tokenizer model %q", v.Str)
	}
	scores, _ := md.Get("tokenizer.ggml.scores")
	sc, _ := scores.Float32s()
	types, _ := md.Get("tokenizer.ggml.token_type")
	tt, _ := types.Ints()
	if sc[262] != 0 || sc[263] != -1 || sc[260] != -3 || tt[0] != gguf.TokenUnknown || tt[1] != gguf.TokenControl || tt[3] != gguf.TokenByte || tt[262] != gguf.TokenNormal {
		t.Errorf("scores %v, types %v", sc[259:], tt[:4])
	}
	for key, want := range map[string]uint64{"tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2} {
		if v, ok := md.Get(key); !ok || v.Bits != want {
			t.Errorf("%s = %+v, want %d", key, v, want)
		}
	}
}

// TestHFTokenizerByteLevel writes a byte-level BPE tokenizer (Qwen2's kind)
// as llama.cpp's "gpt2" model.
func TestHFTokenizerByteLevel(t *testing.T) {
	tj, _ := json.Marshal(map[string]any{
		"model":         map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": [][]string{{"a", "b"}}},
		"added_tokens":  []map[string]any{{"id": 5, "content": "<|endoftext|>", "special": true}, {"id": 6, "content": "<tool>", "special": false}},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{map[string]any{"type": "Split"}, map[string]any{"type": "ByteLevel"}}},
	})
	cfg := []byte(`{"eos_token": {"content": "<|endoftext|>"}, "bos_token": null, "add_bos_token": false}`)
	md, err := gguf.HFTokenizer(tj, cfg, gguf.ArchQwen2)
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) gguf.Value { v, _ := md.Get(k); return v }
	toks, _ := get("tokenizer.ggml.tokens").Strings()
	tt, _ := get("tokenizer.ggml.token_type").Ints()
	merges, _ := get("tokenizer.ggml.merges").Strings()
	if get("tokenizer.ggml.model").Str != "gpt2" || get("tokenizer.ggml.pre").Str != "qwen2" ||
		!cmp.Equal(toks, []string{"a", "b", "ab", "Ġ", "[PAD4]", "<|endoftext|>", "<tool>"}) ||
		!cmp.Equal(tt, []int64{1, 1, 1, 1, gguf.TokenUnused, gguf.TokenControl, gguf.TokenUserDefined}) ||
		!cmp.Equal(merges, []string{"a b"}) || get("tokenizer.ggml.eos_token_id").Bits != 5 {
		t.Errorf("metadata %+v", md)
	}
	if _, ok := md.Get("tokenizer.ggml.bos_token_id"); ok {
		t.Error("a bos id without a BOS token")
	}
	if v := get("tokenizer.ggml.add_bos_token"); v.Type != gguf.TypeBool || v.Bits != 0 {
		t.Errorf("add_bos_token %+v", v)
	}
	if _, err := gguf.HFTokenizer([]byte(`{"model":{"type":"Unigram"}}`), nil, "llama"); err == nil || !strings.Contains(err.Error(), "Unigram") {
		t.Errorf("unigram: %v", err)
	}
}

// TestGGUFCalibrationUsesItsTokenizer: compressing a GGUF file calibrates
// with the tokenizer in its metadata, no --tokenizer needed.
func TestGGUFCalibrationUsesItsTokenizer(t *testing.T) {
	dir := t.TempDir()
	model, tok := tinyLlama2c(t, dir)
	g := filepath.Join(dir, "m.gguf")
	convert(t, ConvertOptions{In: model, Out: g, Tokenizer: tok})
	src, err := checkpoint.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cs, notice, err := loadCalibration(src, Calibration{Samples: 2, SampleTokens: 8, Seed: 1})
	if err != nil || cs == nil || notice != "" {
		t.Fatalf("calibration set %v, notice %q, err %v", cs != nil, notice, err)
	}
	if cs.tokens == 0 {
		t.Error("no calibration tokens")
	}
}

// hfFolder writes a one-layer Hugging Face folder of the given model type
// (with q/k/v biases when bias) and config extras, F32 random weights, and
// the SentencePiece tokenizer.json of its vocabulary: <unk>, <s>, </s>, the
// byte tokens (llama.cpp needs <0x0A>) and three pieces.
func hfFolder(t *testing.T, dir, modelType string, bias bool, extra map[string]any) string {
	t.Helper()
	const d, ff, heads, kv, vocab = 8, 12, 2, 1, 262
	hs := d / heads
	shapes := map[string][]int{
		"model.embed_tokens.weight":                      {vocab, d},
		"model.layers.0.input_layernorm.weight":          {d},
		"model.layers.0.self_attn.q_proj.weight":         {d, d},
		"model.layers.0.self_attn.k_proj.weight":         {kv * hs, d},
		"model.layers.0.self_attn.v_proj.weight":         {kv * hs, d},
		"model.layers.0.self_attn.o_proj.weight":         {d, d},
		"model.layers.0.post_attention_layernorm.weight": {d},
		"model.layers.0.mlp.gate_proj.weight":            {ff, d},
		"model.layers.0.mlp.up_proj.weight":              {ff, d},
		"model.layers.0.mlp.down_proj.weight":            {d, ff},
		"model.norm.weight":                              {d},
		"lm_head.weight":                                 {vocab, d},
	}
	if bias {
		shapes["model.layers.0.self_attn.q_proj.bias"] = []int{d}
		shapes["model.layers.0.self_attn.k_proj.bias"] = []int{kv * hs}
		shapes["model.layers.0.self_attn.v_proj.bias"] = []int{kv * hs}
	}
	var infos []checkpoint.TensorInfo
	for name, shape := range shapes {
		infos = append(infos, checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: shape})
	}
	slicesSortByName(infos)
	folder := filepath.Join(dir, modelType)
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := safetensors.Create(filepath.Join(folder, "model.safetensors"), infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, info := range infos {
		v := make([]float32, info.NumElements())
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		if err := w.WriteFloat32(info.Name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"model_type": modelType, "hidden_size": d, "intermediate_size": ff, "num_hidden_layers": 1,
		"num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 64,
		"rms_norm_eps": 1e-6, "rope_theta": 1e6}
	for k, v := range extra {
		cfg[k] = v
	}
	cj, _ := json.Marshal(cfg)
	tv := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 259, "a": 260, "▁a": 261}
	for b := 0; b < 256; b++ {
		tv[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	tj, _ := json.Marshal(map[string]any{"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
		"vocab": tv, "merges": []string{"▁ a"}}})
	for name, data := range map[string][]byte{"config.json": cj, "tokenizer.json": tj} {
		if err := os.WriteFile(filepath.Join(folder, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return folder
}

func slicesSortByName(infos []checkpoint.TensorInfo) {
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
}

// TestGGUFQwen2AndMistralFolders writes Qwen2 and Mistral folders as GGUF
// and back: the architecture and its keys are llama.cpp's, Qwen2's Q and K
// are not permuted, its biases are kept under GGUF's names, and the folder
// that comes back holds the same tensors.
func TestGGUFQwen2AndMistralFolders(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		modelType, arch string
		bias            bool
		extra           map[string]any
		key             string
		want            uint64
	}{
		{"qwen2", "qwen2", true, map[string]any{"sliding_window": 32, "use_sliding_window": false}, "", 0},
		{"mistral", "llama", false, map[string]any{"sliding_window": 16}, "llama.attention.sliding_window", 16},
	} {
		folder := hfFolder(t, dir, c.modelType, c.bias, c.extra)
		g := filepath.Join(dir, c.modelType+".gguf")
		convert(t, ConvertOptions{In: folder, Out: g})
		f := openGGUF(t, g)
		if v, _ := f.Metadata.Get("general.architecture"); v.Str != c.arch {
			t.Errorf("%s: architecture %q, want %q", c.modelType, v.Str, c.arch)
		}
		if v, _ := f.Metadata.Get(c.arch + ".rope.freq_base"); math.Float32frombits(uint32(v.Bits)) != 1e6 {
			t.Errorf("%s: rope.freq_base %+v", c.modelType, v)
		}
		if v, ok := f.Metadata.Get("llama.attention.sliding_window"); (c.key != "") != ok || ok && v.Bits != c.want {
			t.Errorf("%s: sliding window %+v, %v", c.modelType, v, ok)
		}
		src, err := checkpoint.Open(folder)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := src.Raw("model.layers.0.self_attn.q_proj.weight")
		src.Close()
		gq, _ := f.Raw("blk.0.attn_q.weight")
		if permuted := !bytes.Equal(q, gq); permuted != (c.arch == "llama") {
			t.Errorf("%s: Q permuted %v", c.modelType, permuted)
		}
		if _, ok := f.Info("blk.0.attn_k.bias"); ok != c.bias {
			t.Errorf("%s: attn_k.bias present %v", c.modelType, ok)
		}
		sameForward(t, folder, g, 24)
		back := filepath.Join(dir, c.modelType+"-back")
		convert(t, ConvertOptions{In: g, Out: back})
		sameTensors(t, folder, back)
		var cfg struct {
			ModelType     string `json:"model_type"`
			SlidingWindow *int   `json:"sliding_window"`
		}
		if err := json.Unmarshal(mustRead(t, filepath.Join(back, "config.json")), &cfg); err != nil || cfg.ModelType != c.modelType {
			t.Errorf("%s: config.json back says %q (%v)", c.modelType, cfg.ModelType, err)
		}
	}
	folder := hfFolder(t, dir, "gemma", false, nil)
	if _, err := Convert(ConvertOptions{In: folder, Out: filepath.Join(dir, "gemma.gguf")}); err == nil || !strings.Contains(err.Error(), `model_type "gemma"`) {
		t.Errorf("gemma: %v", err)
	}
}

// sameForward checks that the tool's forward pass gives bit-identical
// logits on two checkpoints of one model, over n tokens.
func sameForward(t *testing.T, a, b string, n int) {
	t.Helper()
	var states [2]*llama.State
	for i, p := range []string{a, b} {
		m, err := llama.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if states[i], err = m.NewState(n); err != nil {
			t.Fatal(err)
		}
	}
	for pos := 0; pos < n; pos++ {
		tok := (pos*7 + 1) % 6
		x, err := states[0].Forward(tok, pos)
		if err != nil {
			t.Fatal(err)
		}
		y, err := states[1].Forward(tok, pos)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(x, y) {
			t.Fatalf("%s and %s: logits differ at position %d", a, b, pos)
		}
	}
}

// TestGGUFQ8_0Input compresses a GGUF file with a Q8_0 tensor: the run
// says it was dequantized, and the GGUF written back holds it as F32, with
// general.file_type saying so.
func TestGGUFQ8_0Input(t *testing.T) {
	const d, vocab = 32, 6
	md := gguf.Model{Arch: gguf.ArchLlama, Config: gguf.HFConfig{LlamaConfig: checkpoint.LlamaConfig{
		ModelType: "llama", HiddenSize: d, IntermediateSize: 64, NumHiddenLayers: 1, NumAttentionHeads: 4, NumKeyValueHeads: 4,
		VocabSize: vocab, MaxPositionEmbeddings: 16, RMSNormEps: 1e-5, RopeTheta: 10000}}}.Metadata()
	md = append(md, gguf.KV{Key: "general.file_type", Value: gguf.Uint32(7)})
	md = append(md, gguf.Llama2CTokenizer([]string{"<unk>", "<s>", "</s>", "a", "b", "c"}, make([]float32, vocab))...)
	q8 := make([]byte, d*d/32*34)
	for i := range q8 {
		q8[i] = byte(i * 7)
		if i%34 == 1 {
			q8[i] = 0x30 // a small float16 scale
		}
	}
	g := filepath.Join(t.TempDir(), "q8.gguf")
	tensors := []gguf.WriteTensor{
		{Name: "token_embd.weight", Type: gguf.GGMLF32, Dims: []int{d, vocab}},
		{Name: "blk.0.attn_q.weight", Type: gguf.GGMLQ8_0, Dims: []int{d, d}},
		{Name: "output_norm.weight", Type: gguf.GGMLF32, Dims: []int{d}},
	}
	w, err := gguf.Create(g, md, tensors, checkpoint.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tensors {
		data := make([]byte, 4*d*vocab)
		switch tt.Type {
		case gguf.GGMLQ8_0:
			data = q8
		default:
			if len(tt.Dims) == 1 {
				data = data[:4*d]
			}
		}
		if err := w.Write(tt.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(g)
	p := filepath.Join(dir, "q8.pllm")
	var notices []string
	o := CompressOptions{In: g, Out: p, Include: `q_proj`, Share: "none", MethodName: MethodRTN, RTN: rtn.Settings{Bits: 8, GroupSize: 32},
		Kernels: bindings.Go(), Calibration: Calibration{Off: true},
		Events: func(e Event) {
			if e.Kind == "notice" {
				notices = append(notices, e.Stage)
			}
		}}
	if _, err := Compress(o); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "1 Q8_0 tensors dequantized to F32") {
		t.Errorf("notices %q", notices)
	}
	out := filepath.Join(dir, "out.gguf")
	if err := Decompress(DecompressOptions{In: p, Out: out, Kernels: bindings.Go()}); err != nil {
		t.Fatal(err)
	}
	f := openGGUF(t, out)
	if info, _ := f.Info("blk.0.attn_q.weight"); info.Type != gguf.GGMLF32 {
		t.Errorf("attn_q written as %s", info.Type)
	}
	if v, _ := f.Metadata.Get("general.file_type"); v.Bits != 0 {
		t.Errorf("general.file_type %d, want 0 (all F32)", v.Bits)
	}
}

// TestGGUFFromTinyModels converts the tiny random models of every kind to
// GGUF, their llama2.c tokenizer.bin found in the folder, and checks that
// the GGUF runs exactly as the folder does in the tool's forward pass.
func TestGGUFFromTinyModels(t *testing.T) {
	for _, kind := range tinymodel.Kinds {
		for _, bf := range []bool{false, true} {
			dir := t.TempDir()
			folder := filepath.Join(dir, kind)
			if _, err := tinymodel.Write(folder, tinymodel.Options{Kind: kind, Seed: 1, ByteFallback: bf}); err != nil {
				t.Fatal(err)
			}
			g := filepath.Join(dir, kind+".gguf")
			convert(t, ConvertOptions{In: folder, Out: g})
			if n := gguf.TokenCount(openGGUF(t, g).Metadata); n != len(tinymodel.Pieces(bf)) {
				t.Errorf("%s: %d tokens in the GGUF", kind, n)
			}
			sameForward(t, folder, g, 20)
		}
	}
}

// A vocabulary without byte tokens is written, with a notice of what
// llama.cpp's tokenizer does with it.
func TestGGUFNoByteFallbackNotice(t *testing.T) {
	for _, bf := range []bool{false, true} {
		dir := t.TempDir()
		folder := filepath.Join(dir, "m")
		if _, err := tinymodel.Write(folder, tinymodel.Options{Kind: tinymodel.Llama, Seed: 1, ByteFallback: bf}); err != nil {
			t.Fatal(err)
		}
		notices, err := Convert(ConvertOptions{In: folder, Out: filepath.Join(dir, "m.gguf")})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(notices, "\n")
		if want := !bf; strings.Contains(got, "no byte tokens") != want || strings.Contains(got, "no newline token") != want {
			t.Errorf("byte fallback %v: notices %q", bf, notices)
		}
	}
}
