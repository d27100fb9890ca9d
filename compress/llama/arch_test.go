package llama

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/internal/tinymodel"
)

// naiveWindow is the attention window of layer l as transformers defines
// it for each model type, read from the config here independently of
// LayerWindows: 0 is full attention.
func naiveWindow(cfg checkpoint.LlamaConfig, l int) int {
	switch cfg.ModelType {
	case "mistral":
		return cfg.SlidingWindow
	case "qwen2":
		if cfg.UseSlidingWindow && l >= cfg.MaxWindowLayers {
			return cfg.SlidingWindow
		}
	}
	return 0
}

// naiveForward is a straightforward float64 transcription of
// transformers' Llama/Mistral/Qwen2 forward pass on Hugging Face-named
// tensors, one whole sequence at a time: projections plus bias (when the
// tensor exists), rotate_half rotary embeddings, and an attention mask
// that lets query i see key j when j <= i and, under a window w,
// j > i - w (transformers' sliding_window_overlay: kv_idx > q_idx - w).
// noBias and window >= 0 override the model, so tests can show that the
// biases and the window change the result.
func naiveForward(cfg checkpoint.LlamaConfig, w map[string][]float32, tokens []int, noBias bool, window int) [][]float64 {
	h, inter, heads, kvHeads := cfg.HiddenSize, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads
	hd := h / heads
	T := len(tokens)
	get := func(name string) []float64 {
		v, ok := w[name]
		if !ok {
			return nil
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	linear := func(x []float64, W, b []float64, out int) []float64 {
		y := make([]float64, out)
		for r := range y {
			for c, xv := range x {
				y[r] += W[r*len(x)+c] * xv
			}
			if b != nil && !noBias {
				y[r] += b[r]
			}
		}
		return y
	}
	rms := func(x, g []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+cfg.RMSNormEps)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = g[i] * x[i] * r
		}
		return out
	}
	// rotate applies q*cos + rotate_half(q)*sin to every head of v.
	rotate := func(v []float64, pos int) {
		half := hd / 2
		for s := 0; s < len(v); s += hd {
			head := append([]float64(nil), v[s:s+hd]...)
			for d := 0; d < hd; d++ {
				freq := 1 / math.Pow(cfg.RopeTheta, float64(2*(d%half))/float64(hd))
				c, sn := math.Cos(float64(pos)*freq), math.Sin(float64(pos)*freq)
				rh := head[(d+half)%hd]
				if d < half {
					rh = -rh
				}
				v[s+d] = head[d]*c + rh*sn
			}
		}
	}
	x := make([][]float64, T)
	emb := get("model.embed_tokens.weight")
	for t, tok := range tokens {
		x[t] = emb[tok*h : (tok+1)*h]
	}
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := func(part string) []float64 { return get("model.layers." + string(rune('0'+l)) + "." + part) }
		win := naiveWindow(cfg, l)
		if window >= 0 {
			win = window
		}
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			xn := rms(x[t], p("input_layernorm.weight"))
			q[t] = linear(xn, p("self_attn.q_proj.weight"), p("self_attn.q_proj.bias"), h)
			k[t] = linear(xn, p("self_attn.k_proj.weight"), p("self_attn.k_proj.bias"), kvHeads*hd)
			v[t] = linear(xn, p("self_attn.v_proj.weight"), p("self_attn.v_proj.bias"), kvHeads*hd)
			rotate(q[t], t)
			rotate(k[t], t)
		}
		next := make([][]float64, T)
		for i := range T {
			att := make([]float64, h)
			for hh := 0; hh < heads; hh++ {
				g := hh / (heads / kvHeads)
				score := make([]float64, T)
				mx := math.Inf(-1)
				for j := range T {
					score[j] = math.Inf(-1)
					if j > i || (win > 0 && j <= i-win) {
						continue // masked
					}
					score[j] = 0
					for d := 0; d < hd; d++ {
						score[j] += q[i][hh*hd+d] * k[j][g*hd+d]
					}
					score[j] /= math.Sqrt(float64(hd))
					mx = max(mx, score[j])
				}
				var sum float64
				for j := range score {
					score[j] = math.Exp(score[j] - mx)
					sum += score[j]
				}
				for j := range score {
					for d := 0; d < hd; d++ {
						att[hh*hd+d] += score[j] / sum * v[j][g*hd+d]
					}
				}
			}
			mid := linear(att, p("self_attn.o_proj.weight"), nil, h)
			for d := range mid {
				mid[d] += x[i][d]
			}
			xn := rms(mid, p("post_attention_layernorm.weight"))
			gate := linear(xn, p("mlp.gate_proj.weight"), nil, inter)
			up := linear(xn, p("mlp.up_proj.weight"), nil, inter)
			for d := range gate {
				gate[d] = gate[d] / (1 + math.Exp(-gate[d])) * up[d]
			}
			out := linear(gate, p("mlp.down_proj.weight"), nil, h)
			for d := range out {
				out[d] += mid[d]
			}
			next[i] = out
		}
		x = next
	}
	head := get("lm_head.weight")
	if cfg.TieWordEmbeddings {
		head = emb
	}
	logits := make([][]float64, T)
	for t := range T {
		logits[t] = linear(rms(x[t], get("model.norm.weight")), head, nil, cfg.VocabSize)
	}
	return logits
}

// archModels are the tiny models of every kind, plus a qwen2 that uses
// its sliding window from layer 1 on.
func archModels(t *testing.T) map[string]struct {
	cfg checkpoint.LlamaConfig
	w   map[string][]float32
} {
	t.Helper()
	out := map[string]struct {
		cfg checkpoint.LlamaConfig
		w   map[string][]float32
	}{}
	for _, kind := range tinymodel.Kinds {
		cfg, err := tinymodel.Config(tinymodel.Options{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		w := map[string][]float32{}
		for _, ts := range tinymodel.Tensors(cfg, 5) {
			w[ts.Name] = ts.Data
		}
		out[kind] = struct {
			cfg checkpoint.LlamaConfig
			w   map[string][]float32
		}{cfg, w}
		if kind == tinymodel.Qwen2 {
			cfg.UseSlidingWindow, cfg.SlidingWindow, cfg.MaxWindowLayers = true, 5, 1
			out["qwen2 windowed"] = struct {
				cfg checkpoint.LlamaConfig
				w   map[string][]float32
			}{cfg, w}
		}
	}
	return out
}

// archTokens is longer than every window in archModels.
func archTokens(vocab int) []int {
	rng := rand.New(rand.NewPCG(8, 8))
	tokens := make([]int, 24)
	for i := range tokens {
		tokens[i] = rng.IntN(vocab)
	}
	return tokens
}

// maxLogitDiff is the largest |a - b| / max(1, max|b|) over positions.
func maxLogitDiff(a []float32, b [][]float64, vocab int) float64 {
	var worst float64
	for pos, ref := range b {
		scale := 1.0
		for _, r := range ref {
			scale = max(scale, math.Abs(r))
		}
		for i, r := range ref {
			worst = max(worst, math.Abs(float64(a[pos*vocab+i])-r)/scale)
		}
	}
	return worst
}

// archTol bounds the float32 passes' distance from the float64 reference,
// relative to the largest logit: float32 rounding over two layers.
const archTol = 2e-5

// TestArchitecturesMatchReference checks the token-at-a-time forward and
// both sequence forwards of every kind against naiveForward, and that the
// check would fail if the window or the biases were ignored.
func TestArchitecturesMatchReference(t *testing.T) {
	for name, mw := range archModels(t) {
		t.Run(name, func(t *testing.T) {
			cfg, w := mw.cfg, mw.w
			m, err := FromTensors(cfg, w)
			if err != nil {
				t.Fatal(err)
			}
			tokens := archTokens(cfg.VocabSize)
			want := naiveForward(cfg, w, tokens, false, -1)
			st, err := m.NewState(len(tokens))
			if err != nil {
				t.Fatal(err)
			}
			vocab := cfg.VocabSize
			got := make([]float32, 0, len(tokens)*vocab)
			for pos, tok := range tokens {
				l, err := st.Forward(tok, pos)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, l...)
			}
			d := maxLogitDiff(got, want, vocab)
			t.Logf("state vs float64 reference: worst relative logit difference %.3g", d)
			if d > archTol {
				t.Errorf("state differs from the reference by %.3g > %g", d, archTol)
			}
			// The float64 sequence forward computes the same sums in float64.
			compareSeqWithReference(t, m, tokens, want)
			compareWithState(t, m, tokens)
			compareFloat32Gradients(t, m, tokens)

			// The check is sensitive to what distinguishes the kinds.
			hasWindow := false
			for l := range cfg.NumHiddenLayers {
				hasWindow = hasWindow || naiveWindow(cfg, l) > 0 && naiveWindow(cfg, l) < len(tokens)
			}
			if hasWindow {
				if d := maxLogitDiff(got, naiveForward(cfg, w, tokens, false, 0), vocab); d < 100*archTol {
					t.Errorf("full attention is within %.3g of the windowed result; the window is not tested", d)
				}
			}
			if HasQKVBias(cfg) {
				if d := maxLogitDiff(got, naiveForward(cfg, w, tokens, true, -1), vocab); d < 100*archTol {
					t.Errorf("dropping the biases moves the logits by only %.3g; the biases are not tested", d)
				}
			}
		})
	}
}

// TestWindowsOfConfigs pins LayerWindows on the configurations
// transformers distinguishes.
func TestWindowsOfConfigs(t *testing.T) {
	base := checkpoint.LlamaConfig{NumHiddenLayers: 3}
	for _, c := range []struct {
		mod  func(*checkpoint.LlamaConfig)
		want []int
	}{
		{func(c *checkpoint.LlamaConfig) { c.SlidingWindow = 4 }, []int{0, 0, 0}}, // llama has no window
		{func(c *checkpoint.LlamaConfig) { c.ModelType = "mistral" }, []int{0, 0, 0}},
		{func(c *checkpoint.LlamaConfig) { c.ModelType, c.SlidingWindow = "mistral", 4 }, []int{4, 4, 4}},
		{func(c *checkpoint.LlamaConfig) { c.ModelType, c.SlidingWindow = "qwen2", 4 }, []int{0, 0, 0}},
		{func(c *checkpoint.LlamaConfig) {
			c.ModelType, c.SlidingWindow, c.UseSlidingWindow, c.MaxWindowLayers = "qwen2", 4, true, 1
		}, []int{0, 4, 4}},
	} {
		cfg := base
		c.mod(&cfg)
		got := LayerWindows(cfg)
		for l := range got {
			if got[l] != c.want[l] || naiveWindow(cfg, l) != c.want[l] {
				t.Errorf("%+v: windows %v (reference %d at layer %d), want %v", cfg, got, naiveWindow(cfg, l), l, c.want)
				break
			}
		}
	}
}

// gradCase is a configuration for the gradient checks: tinyCfg as qwen2
// (biases) or mistral (a window of 2 over 5 positions).
func gradCase(t *testing.T, kind string, tied bool, seed uint64) (checkpoint.LlamaConfig, *Params[float64]) {
	t.Helper()
	cfg := tinyCfg
	cfg.ModelType, cfg.TieWordEmbeddings = kind, tied
	if kind == ArchMistral {
		cfg.SlidingWindow = 2
	}
	_, hf := synthetic(cfg, seed)
	if kind == ArchQwen2 {
		rng := rand.New(rand.NewPCG(seed, 9))
		kvDim := cfg.HiddenSize / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
		for l := range cfg.NumHiddenLayers {
			for i, part := range biasParts {
				n := []int{cfg.HiddenSize, kvDim, kvDim}[i]
				b := make([]float32, n)
				for j := range b {
					b[j] = float32(0.5 * rng.NormFloat64())
				}
				hf[LayerBiasName(l, part)] = b
			}
		}
	}
	m, err := FromTensors(cfg, hf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, ParamsOf[float64](m)
}

func TestArchLayerGradients(t *testing.T) {
	worstGradErr = 0
	defer func() { t.Logf("worst relative gradient error %.3g", worstGradErr) }()
	for _, kind := range []string{ArchQwen2, ArchMistral} {
		cfg, p := gradCase(t, kind, true, 11)
		s, err := NewSeq[float64](cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		w := &p.Layers[1]
		if kind == ArchQwen2 && w.QBias == nil || kind == ArchMistral && w.Window != 2 {
			t.Fatalf("%s: layer constants not carried: bias %v, window %d", kind, w.QBias != nil, w.Window)
		}
		_, _, grad := checkLayerGradients(t, s, w, kind+" ")
		if grad.QBias != nil || grad.Window != 0 {
			t.Fatalf("%s: a gradient should hold no biases or window", kind)
		}
	}
}

func TestArchModelGradients(t *testing.T) {
	worstGradErr = 0
	defer func() { t.Logf("worst relative gradient error %.3g", worstGradErr) }()
	for _, kind := range []string{ArchQwen2, ArchMistral} {
		for _, tied := range []bool{true, false} {
			cfg, p := gradCase(t, kind, tied, 21)
			prefix := kind + " untied "
			if tied {
				prefix = kind + " tied "
			}
			checkModelGradients(t, cfg, p, prefix)
		}
	}
}

// TestArchRefusals checks that unsupported model types and settings are
// refused by name, by both passes, and that the sequence passes refuse
// parameters that do not match the architecture.
func TestArchRefusals(t *testing.T) {
	_, good := synthetic(smallCfg, 1)
	for _, c := range []struct {
		mod  func(*checkpoint.LlamaConfig)
		want string
	}{
		{func(c *checkpoint.LlamaConfig) { c.ModelType = "gemma" }, `model_type "gemma"`},
		{func(c *checkpoint.LlamaConfig) { c.ModelType = "phi3" }, `model_type "phi3"`},
		{func(c *checkpoint.LlamaConfig) { c.RopeScaling = `{"rope_type":"llama3","factor":8}` }, "rope_scaling"},
		{func(c *checkpoint.LlamaConfig) { c.HeadDim = 16 }, "head_dim"},
		{func(c *checkpoint.LlamaConfig) { c.HiddenAct = "gelu" }, "hidden_act"},
		{func(c *checkpoint.LlamaConfig) { c.AttentionBias = true }, "attention_bias"},
		{func(c *checkpoint.LlamaConfig) { c.ModelType, c.SlidingWindow = "mistral", -1 }, "sliding_window"},
		{func(c *checkpoint.LlamaConfig) { c.ModelType, c.UseSlidingWindow = "qwen2", true }, "use_sliding_window"},
		// qwen2 needs its biases.
		{func(c *checkpoint.LlamaConfig) { c.ModelType = "qwen2" }, "model.layers.0.self_attn.q_proj.bias"},
	} {
		cfg := smallCfg
		c.mod(&cfg)
		if _, err := FromTensors(cfg, good); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: FromTensors error %v, want one line mentioning %q", cfg, err, c.want)
		}
		if strings.Contains(c.want, "bias") {
			continue // a config problem only for the weights
		}
		if _, err := NewSeq[float32](cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: NewSeq error %v, want one mentioning %q", cfg, err, c.want)
		}
	}
	// A null rope_scaling is plain rotary embeddings.
	cfg := smallCfg
	cfg.RopeScaling = "null"
	if _, err := FromTensors(cfg, good); err != nil {
		t.Errorf("rope_scaling null: %v", err)
	}

	qcfg, qp := gradCase(t, ArchQwen2, true, 3)
	s, err := NewSeq[float64](qcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	noBias := qp.Layers[0]
	noBias.KBias = nil
	if _, err := s.LayerForward(&noBias, make([]float64, qcfg.HiddenSize)); err == nil || !strings.Contains(err.Error(), "k_proj") {
		t.Errorf("qwen2 layer without a k bias: %v", err)
	}
	mcfg, mp := gradCase(t, ArchMistral, true, 3)
	ms, err := NewSeq[float64](mcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	mp.Layers[1].Window = 0
	if _, err := ms.Forward(mp, []int{1, 2}); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("mistral params with full attention in layer 1: %v", err)
	}
	if _, err := ms.LayerForward(&qp.Layers[0], make([]float64, mcfg.HiddenSize)); err == nil || !strings.Contains(err.Error(), "bias") {
		t.Errorf("mistral layer with biases: %v", err)
	}
}

// Configurations as released models ship them (trimmed of fields the
// passes do not read) parse into the architecture transformers runs.
func TestReleasedConfigs(t *testing.T) {
	for _, c := range []struct {
		name, json string
		arch       string
		window     int // of the last layer
		bias       bool
	}{
		{"TinyLlama-1.1B", `{"model_type":"llama","hidden_act":"silu","hidden_size":2048,"intermediate_size":5632,"num_attention_heads":32,"num_hidden_layers":22,"num_key_value_heads":4,"rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":10000.0,"attention_bias":false,"pretraining_tp":1,"tie_word_embeddings":false,"vocab_size":32000,"max_position_embeddings":2048}`, ArchLlama, 0, false},
		{"Mistral-7B-v0.1", `{"model_type":"mistral","hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":32768,"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,"tie_word_embeddings":false,"vocab_size":32000}`, ArchMistral, 4096, false},
		{"Mistral-7B-v0.2", `{"model_type":"mistral","hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":32768,"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":1000000.0,"sliding_window":null,"tie_word_embeddings":false,"vocab_size":32000}`, ArchMistral, 0, false},
		{"Qwen2.5-0.5B", `{"model_type":"qwen2","hidden_act":"silu","hidden_size":896,"intermediate_size":4864,"max_position_embeddings":32768,"max_window_layers":24,"num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":32768,"tie_word_embeddings":true,"use_sliding_window":false,"vocab_size":151936}`, ArchQwen2, 0, true},
	} {
		var cfg checkpoint.LlamaConfig
		if err := json.Unmarshal([]byte(c.json), &cfg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := normalize(cfg); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		w := LayerWindows(cfg)
		if Arch(cfg) != c.arch || w[len(w)-1] != c.window || HasQKVBias(cfg) != c.bias {
			t.Errorf("%s: %s, last window %d, biases %v; want %s, %d, %v", c.name, Arch(cfg), w[len(w)-1], HasQKVBias(cfg), c.arch, c.window, c.bias)
		}
	}
}
