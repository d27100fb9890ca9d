package llama

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/sharedtest"
)

func loadStories(t testing.TB) *Model {
	t.Helper()
	m, err := Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readmeText is the greedy continuation quoted in ../shared/models/README.md.
const readmeText = "Once upon a time, there was a little girl named Lily. She loved to play outside in " +
	"the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high."

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func TestGreedyStories260K(t *testing.T) {
	m := loadStories(t)
	tok, err := tokenizer.Load(sharedtest.Tokenizer(t))
	if err != nil {
		t.Fatal(err)
	}
	// The README's quotation is the start of the greedy text; it is also
	// what the tokenizer makes of it.
	want := tok.Encode(readmeText, true)
	st, err := m.NewState(0)
	if err != nil {
		t.Fatal(err)
	}
	got := []int{tok.BOS()}
	for pos := 0; len(got) < len(want); pos++ {
		logits, err := st.Forward(got[pos], pos)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, argmax(logits))
	}
	text := tok.DecodeAll(got)
	if text != readmeText {
		t.Fatalf("greedy text:\n%s\nwant:\n%s", text, readmeText)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("greedy tokens %v\nwant %v", got, want)
	}
	t.Logf("%d tokens reproduced: %q", len(got)-1, text)
}

// legacyWeights reads stories260K.bin with its own parser, keeping q and k
// in llama2.c's interleaved layout: an independent path to the weights.
func legacyWeights(t *testing.T) (cfg checkpoint.LlamaConfig, w map[string][]float64) {
	data, err := os.ReadFile(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	var hdr [7]int32
	for i := range hdr {
		hdr[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
	}
	dim, hidden, layers, heads, kvHeads, vocab := int(hdr[0]), int(hdr[1]), int(hdr[2]), int(hdr[3]), int(hdr[4]), int(hdr[5])
	kvDim := dim / heads * kvHeads
	off := 28
	take := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*i:])))
		}
		off += 4 * n
		return v
	}
	w = map[string][]float64{}
	w["emb"] = take(vocab * dim)
	for _, g := range []struct {
		name string
		n    int
	}{{"rms_att", dim}, {"wq", dim * dim}, {"wk", kvDim * dim}, {"wv", kvDim * dim}, {"wo", dim * dim},
		{"rms_ffn", dim}, {"w1", hidden * dim}, {"w2", dim * hidden}, {"w3", hidden * dim}} {
		all := take(layers * g.n)
		for l := 0; l < layers; l++ {
			w[g.name+string(rune('0'+l))] = all[l*g.n : (l+1)*g.n]
		}
	}
	w["rms_final"] = take(dim)
	w["cls"] = w["emb"]
	cfg = checkpoint.LlamaConfig{HiddenSize: dim, IntermediateSize: hidden, NumHiddenLayers: layers,
		NumAttentionHeads: heads, NumKeyValueHeads: kvHeads, VocabSize: vocab, MaxPositionEmbeddings: int(hdr[6]),
		RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true}
	return cfg, w
}

// refForward is run.c's forward pass in float64 on llama2.c-layout weights
// (interleaved rotary pairs (2j, 2j+1) on un-permuted q and k), keyed
// "wq0", "w1_3"... as legacyWeights makes them. It returns the logits after
// each token.
func refForward(cfg checkpoint.LlamaConfig, w map[string][]float64, tokens []int) [][]float64 {
	dim, hidden, heads, kvHeads := cfg.HiddenSize, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads
	hs := dim / heads
	kvDim := hs * kvHeads
	matmul := func(W []float64, x []float64, rows int) []float64 {
		out := make([]float64, rows)
		for r := range out {
			for c, xv := range x {
				out[r] += W[r*len(x)+c] * xv
			}
		}
		return out
	}
	rms := func(x, g []float64) []float64 {
		ss := 0.0
		for _, v := range x {
			ss += v * v
		}
		ss = 1 / math.Sqrt(ss/float64(len(x))+cfg.RMSNormEps)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = g[i] * x[i] * ss
		}
		return out
	}
	L := func(name string, l int) []float64 { return w[name+string(rune('0'+l))] }
	keys := make([][][]float64, cfg.NumHiddenLayers)
	vals := make([][][]float64, cfg.NumHiddenLayers)
	var all [][]float64
	for pos, tok := range tokens {
		x := slices.Clone(w["emb"][tok*dim : (tok+1)*dim])
		for l := 0; l < cfg.NumHiddenLayers; l++ {
			xb := rms(x, L("rms_att", l))
			q, k, v := matmul(L("wq", l), xb, dim), matmul(L("wk", l), xb, kvDim), matmul(L("wv", l), xb, kvDim)
			for i := 0; i < dim; i += 2 {
				freq := 1 / math.Pow(cfg.RopeTheta, float64(i%hs)/float64(hs))
				c, s := math.Cos(float64(pos)*freq), math.Sin(float64(pos)*freq)
				rot := func(v []float64) { v[i], v[i+1] = v[i]*c-v[i+1]*s, v[i]*s+v[i+1]*c }
				rot(q)
				if i < kvDim {
					rot(k)
				}
			}
			keys[l] = append(keys[l], k)
			vals[l] = append(vals[l], v)
			att := make([]float64, dim)
			for h := 0; h < heads; h++ {
				kh := h / (heads / kvHeads)
				sc := make([]float64, pos+1)
				mx := math.Inf(-1)
				for t := range sc {
					for i := 0; i < hs; i++ {
						sc[t] += q[h*hs+i] * keys[l][t][kh*hs+i]
					}
					sc[t] /= math.Sqrt(float64(hs))
					mx = max(mx, sc[t])
				}
				sum := 0.0
				for t := range sc {
					sc[t] = math.Exp(sc[t] - mx)
					sum += sc[t]
				}
				for t := range sc {
					for i := 0; i < hs; i++ {
						att[h*hs+i] += sc[t] / sum * vals[l][t][kh*hs+i]
					}
				}
			}
			o := matmul(L("wo", l), att, dim)
			for i := range x {
				x[i] += o[i]
			}
			xb = rms(x, L("rms_ffn", l))
			h1, h3 := matmul(L("w1", l), xb, hidden), matmul(L("w3", l), xb, hidden)
			for i := range h1 {
				h1[i] = h1[i] / (1 + math.Exp(-h1[i])) * h3[i]
			}
			d := matmul(L("w2", l), h1, dim)
			for i := range x {
				x[i] += d[i]
			}
		}
		all = append(all, matmul(w["cls"], rms(x, w["rms_final"]), cfg.VocabSize))
	}
	return all
}

// compareLogits runs m over tokens and checks every position's logits
// against the reference within a float32 tolerance.
func compareLogits(t *testing.T, m *Model, tokens []int, ref [][]float64) {
	t.Helper()
	st, err := m.NewState(len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for pos, tok := range tokens {
		got, err := st.Forward(tok, pos)
		if err != nil {
			t.Fatal(err)
		}
		scale := 1.0
		for _, r := range ref[pos] {
			scale = max(scale, math.Abs(r))
		}
		for i, r := range ref[pos] {
			d := math.Abs(float64(got[i])-r) / scale
			worst = max(worst, d)
			// float32 weights and activations against float64: a few ulps
			// of float32 accumulated over the layers.
			if d > 2e-5 {
				t.Fatalf("pos %d logit %d: got %g, reference %g (relative %.3g)", pos, i, got[i], r, d)
			}
		}
	}
	t.Logf("%d positions, worst relative logit difference %.3g", len(tokens), worst)
}

// TestStories260KMatchesLegacyLayout compares the model built from the
// llama2c reader (q/k permuted to the HF layout, rotate_half rotary) with
// run.c's computation on the file's own interleaved weights.
func TestStories260KMatchesLegacyLayout(t *testing.T) {
	m := loadStories(t)
	cfg, w := legacyWeights(t)
	tokens := []int{1, 403, 407, 261, 411, 321, 470, 77, 300, 500}
	compareLogits(t, m, tokens, refForward(cfg, w, tokens))
}

// hfPermute is transformers' permute for q/k rows: interleaved pairs
// (2j, 2j+1) of each head become (j, j + head/2).
func hfPermute(w []float64, heads, rows, cols int) []float32 {
	out := make([]float32, len(w))
	hd := rows / heads
	for h := 0; h < heads; h++ {
		for j := 0; j < hd/2; j++ {
			for c := 0; c < 2; c++ {
				src := (h*hd + 2*j + c) * cols
				dst := (h*hd + c*hd/2 + j) * cols
				for k := 0; k < cols; k++ {
					out[dst+k] = float32(w[src+k])
				}
			}
		}
	}
	return out
}

// synthetic makes random llama2.c-layout weights (exactly representable
// in float32) and the HF-named float32 tensors of the same model.
func synthetic(cfg checkpoint.LlamaConfig, seed uint64) (map[string][]float64, map[string][]float32) {
	rng := rand.New(rand.NewPCG(seed, 1))
	dim, hidden := cfg.HiddenSize, cfg.IntermediateSize
	kvDim := dim / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
	rnd := func(n int, scale float64, offset float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(offset + scale*rng.NormFloat64()))
		}
		return v
	}
	f32 := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	ref := map[string][]float64{}
	hf := map[string][]float32{}
	ref["emb"] = rnd(cfg.VocabSize*dim, 1, 0)
	hf[EmbedName] = f32(ref["emb"])
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		s := string(rune('0' + l))
		ref["rms_att"+s] = rnd(dim, 0.1, 1)
		ref["wq"+s] = rnd(dim*dim, 0.3, 0)
		ref["wk"+s] = rnd(kvDim*dim, 0.3, 0)
		ref["wv"+s] = rnd(kvDim*dim, 0.3, 0)
		ref["wo"+s] = rnd(dim*dim, 0.2, 0)
		ref["rms_ffn"+s] = rnd(dim, 0.1, 1)
		ref["w1"+s] = rnd(hidden*dim, 0.2, 0)
		ref["w2"+s] = rnd(dim*hidden, 0.2, 0)
		ref["w3"+s] = rnd(hidden*dim, 0.2, 0)
		hf[LayerTensorName(l, "input_layernorm")] = f32(ref["rms_att"+s])
		hf[LayerTensorName(l, "self_attn.q_proj")] = hfPermute(ref["wq"+s], cfg.NumAttentionHeads, dim, dim)
		hf[LayerTensorName(l, "self_attn.k_proj")] = hfPermute(ref["wk"+s], cfg.NumKeyValueHeads, kvDim, dim)
		hf[LayerTensorName(l, "self_attn.v_proj")] = f32(ref["wv"+s])
		hf[LayerTensorName(l, "self_attn.o_proj")] = f32(ref["wo"+s])
		hf[LayerTensorName(l, "post_attention_layernorm")] = f32(ref["rms_ffn"+s])
		hf[LayerTensorName(l, "mlp.gate_proj")] = f32(ref["w1"+s])
		hf[LayerTensorName(l, "mlp.down_proj")] = f32(ref["w2"+s])
		hf[LayerTensorName(l, "mlp.up_proj")] = f32(ref["w3"+s])
	}
	ref["rms_final"] = rnd(dim, 0.1, 1)
	hf[NormName] = f32(ref["rms_final"])
	if cfg.TieWordEmbeddings {
		ref["cls"] = ref["emb"]
	} else {
		ref["cls"] = rnd(cfg.VocabSize*dim, 0.5, 0)
		hf[LMHeadName] = f32(ref["cls"])
	}
	return ref, hf
}

var smallCfg = checkpoint.LlamaConfig{HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
	NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 40, MaxPositionEmbeddings: 16,
	RMSNormEps: 1e-5, RopeTheta: 500}

// TestHFLayoutMatchesInterleaved checks, without any shared file, that the
// rotate_half forward on permuted q/k equals the interleaved computation on
// the original rows, with grouped-query attention, tied and separate heads;
// for the State and for the float64 sequence forward.
func TestHFLayoutMatchesInterleaved(t *testing.T) {
	for _, tied := range []bool{true, false} {
		cfg := smallCfg
		cfg.TieWordEmbeddings = tied
		ref, hf := synthetic(cfg, 7)
		m, err := FromTensors(cfg, hf)
		if err != nil {
			t.Fatal(err)
		}
		tokens := []int{1, 5, 9, 39, 0, 17, 17, 3, 22, 11, 30, 2}
		want := refForward(cfg, ref, tokens)
		compareLogits(t, m, tokens, want)
		compareSeqWithReference(t, m, tokens, want)
	}
}

func TestStateOrderAndRewind(t *testing.T) {
	_, hf := synthetic(smallCfg, 3)
	m, err := FromTensors(smallCfg, hf)
	if err != nil {
		t.Fatal(err)
	}
	run := func(st *State, tokens []int, from int) []float32 {
		var out []float32
		for pos := from; pos < len(tokens); pos++ {
			l, err := st.Forward(tokens[pos], pos)
			if err != nil {
				t.Fatal(err)
			}
			out = slices.Clone(l)
		}
		return out
	}
	a, _ := m.NewState(0)
	if a.Capacity() != 16 {
		t.Fatalf("capacity %d, want max_position_embeddings 16", a.Capacity())
	}
	run(a, []int{1, 2, 3, 4, 5}, 0)
	rewound := run(a, []int{1, 2, 9, 8}, 2) // rewind to position 2
	b, _ := m.NewState(8)
	fresh := run(b, []int{1, 2, 9, 8}, 0)
	if !slices.Equal(rewound, fresh) {
		t.Errorf("rewound state gives %v, fresh state %v", rewound[:4], fresh[:4])
	}
	b.Reset()
	if again := run(b, []int{1, 2, 9, 8}, 0); !slices.Equal(again, fresh) {
		t.Errorf("after Reset: %v, want %v", again[:4], fresh[:4])
	}
	if _, err := b.Forward(1, 6); err == nil || !strings.Contains(err.Error(), "in order") {
		t.Errorf("skipping positions: %v", err)
	}
	if _, err := b.Forward(40, 0); err == nil {
		t.Error("token 40 of 40 accepted")
	}
	if _, err := b.Forward(1, 8); err == nil {
		t.Error("position 8 of capacity 8 accepted")
	}
}

// TestParallelDeterministic checks that splitting products across
// goroutines does not change a single bit.
func TestParallelDeterministic(t *testing.T) {
	cfg := smallCfg
	cfg.VocabSize = 4096 // lm_head is 4096x32: above parallelMin
	_, hf := synthetic(cfg, 5)
	m, err := FromTensors(cfg, hf)
	if err != nil {
		t.Fatal(err)
	}
	logits := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		st, _ := m.NewState(4)
		var out []float32
		for pos, tok := range []int{1, 4000, 7} {
			l, err := st.Forward(tok, pos)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l...)
		}
		return out
	}
	one, four := logits(1), logits(4)
	if !slices.Equal(one, four) {
		t.Error("logits differ between GOMAXPROCS 1 and 4")
	}
}

func TestFromTensorsErrors(t *testing.T) {
	_, good := synthetic(smallCfg, 1)
	cases := map[string]struct {
		cfg  func(*checkpoint.LlamaConfig)
		mod  func(map[string][]float32)
		want string
	}{
		"missing tensor":  {nil, func(w map[string][]float32) { delete(w, LayerTensorName(1, "mlp.up_proj")) }, "model.layers.1.mlp.up_proj.weight"},
		"short tensor":    {nil, func(w map[string][]float32) { w[NormName] = w[NormName][:3] }, "model.norm.weight"},
		"untied no head":  {nil, func(w map[string][]float32) { delete(w, LMHeadName) }, "lm_head.weight"},
		"heads not group": {func(c *checkpoint.LlamaConfig) { c.NumKeyValueHeads = 3 }, nil, "num_key_value_heads"},
		"odd head":        {func(c *checkpoint.LlamaConfig) { c.NumAttentionHeads = 32; c.NumKeyValueHeads = 32 }, nil, "odd"},
		"zero layers":     {func(c *checkpoint.LlamaConfig) { c.NumHiddenLayers = 0 }, nil, "positive"},
		"not llama":       {func(c *checkpoint.LlamaConfig) { c.ModelType = "gpt2" }, nil, "gpt2"},
	}
	for name, c := range cases {
		cfg := smallCfg // untied: good has lm_head.weight
		w := map[string][]float32{}
		for k, v := range good {
			w[k] = v
		}
		if c.cfg != nil {
			c.cfg(&cfg)
		}
		if c.mod != nil {
			c.mod(w)
		}
		_, err := FromTensors(cfg, w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
}

func BenchmarkForwardStories260K(b *testing.B) {
	m := loadStories(b)
	st, _ := m.NewState(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pos := i % 256
		if pos == 0 {
			st.Reset()
		}
		if _, err := st.Forward(1+i%500, pos); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOpenHFFolder writes stories260K as a Hugging Face folder (config.json
// and model.safetensors, in F16) and checks that the model loaded from it
// computes what the llama2c file gives with the same rounding applied.
func TestOpenHFFolder(t *testing.T) {
	src, err := checkpoint.Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	var infos []checkpoint.TensorInfo
	rounded := map[string][]float32{}
	for _, info := range src.Tensors {
		if strings.HasPrefix(info.Name, "llama2c.") {
			continue
		}
		info.DType = checkpoint.F16
		infos = append(infos, info)
	}
	w, err := safetensors.Create(filepath.Join(dir, "model.safetensors"), infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		v, err := src.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := checkpoint.EncodeFloat32(checkpoint.F16, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(info.Name, raw); err != nil {
			t.Fatal(err)
		}
		if rounded[info.Name], err = checkpoint.DecodeFloat32(checkpoint.F16, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), src.ConfigJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	fromFolder, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromMap, err := FromTensors(*src.Config, rounded)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fromFolder.NewState(8)
	b, _ := fromMap.NewState(8)
	for pos, tok := range []int{1, 403, 407, 261, 411} {
		la, err := a.Forward(tok, pos)
		if err != nil {
			t.Fatal(err)
		}
		lb, _ := b.Forward(tok, pos)
		if !slices.Equal(la, lb) {
			t.Fatalf("pos %d: logits from the folder differ from the same weights in memory", pos)
		}
	}

	// A folder without config.json cannot be run.
	if err := os.Remove(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("Open without config.json: %v", err)
	}
}
