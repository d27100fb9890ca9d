package eval

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/sharedtest"
)

func stories(t testing.TB) (*llama.Model, tokenizer.Tokenizer, map[string][]float32) {
	t.Helper()
	src, err := checkpoint.Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Through a map, as reconstructed weights are evaluated.
	w := map[string][]float32{}
	for _, info := range src.Tensors {
		if w[info.Name], err = src.Float32(info.Name); err != nil {
			t.Fatal(err)
		}
	}
	m, err := llama.FromTensors(*src.Config, w)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(sharedtest.Tokenizer(t))
	if err != nil {
		t.Fatal(err)
	}
	return m, tok, w
}

func TestPerplexityStories260K(t *testing.T) {
	m, tok, _ := stories(t)
	lines, err := ReadLines(sharedtest.ValidText(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 19 {
		t.Fatalf("%d lines, want the 19 stories", len(lines))
	}
	r, err := Perplexity(m, tok, lines, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, l := range lines {
		want += len(tok.Encode(l, true)) - 1
	}
	if r.Tokens != want || r.Sequences != 19 {
		t.Errorf("tokens %d sequences %d, want %d 19", r.Tokens, r.Sequences, want)
	}
	t.Logf("stories260K fp32 on tinystories-valid-sample.txt: %d tokens, %d windows, nll %.6f nats, ppl %.6f", r.Tokens, r.Windows, r.NLL, r.PPL)
	// The reference figure is about 5.55. A wrong tokenizer, window rule,
	// line split or layer moves it by more than this band (dropping the
	// "\r" that ends each line gives 5.39).
	if r.PPL < 5.50 || r.PPL > 5.60 {
		t.Errorf("perplexity %.4f outside [5.50, 5.60] around the expected 5.55", r.PPL)
	}
	if math.Abs(math.Exp(r.NLL)-r.PPL) > 1e-12*r.PPL {
		t.Errorf("ppl %v is not exp(nll %v)", r.PPL, r.NLL)
	}
}

func TestCompareSelfStories260K(t *testing.T) {
	m, tok, _ := stories(t)
	lines, err := ReadLines(sharedtest.ValidText(t))
	if err != nil {
		t.Fatal(err)
	}
	lines = lines[:3]
	c, err := Compare(m, m, tok, lines, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.KLMean != 0 || c.KLMax != 0 || c.Top1Agreement != 1 || c.NLLOriginal != c.NLLCompressed {
		t.Errorf("self comparison: %+v, want KL 0, agreement 1, equal NLL", c)
	}
	p, err := Perplexity(m, tok, lines, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.NLL != c.NLLOriginal || p.Tokens != c.Tokens {
		t.Errorf("Compare nll %v over %d tokens, Perplexity %v over %d", c.NLLOriginal, c.Tokens, p.NLL, p.Tokens)
	}
}

// byteTok is a stand-in tokenizer: BOS 1, EOS 2, byte b -> 3 + b%(vocab-3).
type byteTok struct{ vocab int }

func (b byteTok) Encode(text string, bos bool) []int {
	var ids []int
	if bos {
		ids = append(ids, 1)
	}
	for _, c := range []byte(text) {
		ids = append(ids, 3+int(c)%(b.vocab-3))
	}
	return ids
}
func (b byteTok) Decode(prev, tok int) string { return string(rune('a' + tok%26)) }
func (b byteTok) DecodeAll(ids []int) string {
	var sb strings.Builder
	for i, id := range ids {
		if id > 2 {
			sb.WriteString(b.Decode(i, id))
		}
	}
	return sb.String()
}
func (b byteTok) BOS() int       { return 1 }
func (b byteTok) EOS() int       { return 2 }
func (b byteTok) VocabSize() int { return b.vocab }
func (b byteTok) Unknown() int   { return 0 }

var smallCfg = checkpoint.LlamaConfig{HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
	NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 30, MaxPositionEmbeddings: 64,
	RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true}

func randomWeights(cfg checkpoint.LlamaConfig, seed uint64) map[string][]float32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	hd := cfg.HiddenSize / cfg.NumAttentionHeads
	kv := hd * cfg.NumKeyValueHeads
	r := func(n int, off float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(off + 0.4*rng.NormFloat64())
		}
		return v
	}
	h, f := cfg.HiddenSize, cfg.IntermediateSize
	w := map[string][]float32{llama.EmbedName: r(cfg.VocabSize*h, 0), llama.NormName: r(h, 1)}
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		for part, n := range map[string]int{"input_layernorm": -h, "post_attention_layernorm": -h,
			"self_attn.q_proj": h * h, "self_attn.k_proj": kv * h, "self_attn.v_proj": kv * h, "self_attn.o_proj": h * h,
			"mlp.gate_proj": f * h, "mlp.up_proj": f * h, "mlp.down_proj": h * f} {
			if n < 0 {
				w[llama.LayerTensorName(l, part)] = r(-n, 1)
			} else {
				w[llama.LayerTensorName(l, part)] = r(n, 0)
			}
		}
	}
	return w
}

func smallModel(t *testing.T, cfg checkpoint.LlamaConfig, w map[string][]float32) *llama.Model {
	t.Helper()
	m, err := llama.FromTensors(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWindows(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 511, 512, 513, 1022, 1023, 1024, 2000} {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = i
		}
		scored := map[int]int{}
		for k, w := range Windows(ids, 512) {
			if w[0] != 511*k || len(w) > 512 || len(w) < 2 {
				t.Fatalf("n=%d window %d starts at %d with %d tokens", n, k, w[0], len(w))
			}
			for _, id := range w[1:] {
				scored[id]++
			}
		}
		for i := 1; i < n; i++ {
			if scored[i] != 1 {
				t.Fatalf("n=%d: token %d scored %d times", n, i, scored[i])
			}
		}
		if len(scored) != max(n-1, 0) {
			t.Fatalf("n=%d: %d tokens scored", n, len(scored))
		}
	}
}

// refNLL scores lines the long way: for each window a fresh state, every
// position's log-softmax summed directly in float64.
func refNLL(t *testing.T, m *llama.Model, tok tokenizer.Tokenizer, lines []string, w int) (float64, int) {
	var nll float64
	n := 0
	for _, l := range lines {
		ids := tok.Encode(l, true)
		for start := 0; start+1 < len(ids); start += w - 1 {
			st, err := m.NewState(w)
			if err != nil {
				t.Fatal(err)
			}
			for p := 0; p+1 < w && start+p+1 < len(ids); p++ {
				logits, err := st.Forward(ids[start+p], p)
				if err != nil {
					t.Fatal(err)
				}
				var z float64
				for _, x := range logits {
					z += math.Exp(float64(x))
				}
				nll += math.Log(z) - float64(logits[ids[start+p+1]])
				n++
			}
		}
	}
	return nll / float64(n), n
}

func TestPerplexityWindowsMatchReference(t *testing.T) {
	m := smallModel(t, smallCfg, randomWeights(smallCfg, 1))
	tok := byteTok{smallCfg.VocabSize}
	lines := []string{"a", "hello world", "a somewhat longer line that needs several windows of eight", "", "xy"}
	for _, w := range []int{2, 8, 64} {
		r, err := Perplexity(m, tok, lines, Options{Window: w})
		if err != nil {
			t.Fatal(err)
		}
		want, n := refNLL(t, m, tok, lines, w)
		if r.Tokens != n || math.Abs(r.NLL-want) > 1e-9*want {
			t.Errorf("window %d: nll %.12f over %d tokens, reference %.12f over %d", w, r.NLL, r.Tokens, want, n)
		}
		if r.Sequences != len(lines) {
			t.Errorf("window %d: %d sequences, want %d", w, r.Sequences, len(lines))
		}
	}
	if _, err := Perplexity(m, tok, lines, Options{Window: 65}); err == nil {
		t.Error("window above the context length accepted")
	}
	if _, err := Perplexity(m, tok, lines, Options{Window: 1}); err == nil {
		t.Error("window 1 accepted")
	}
	if _, err := Perplexity(m, byteTok{40}, []string{"\xff"}, Options{}); err == nil {
		t.Error("token outside the model's vocabulary accepted")
	}
}

func TestCompareDifferentModels(t *testing.T) {
	wa := randomWeights(smallCfg, 1)
	wb := map[string][]float32{}
	rng := rand.New(rand.NewPCG(9, 9))
	for k, v := range wa {
		v2 := slices.Clone(v)
		if strings.Contains(k, "mlp") {
			for i := range v2 {
				v2[i] += float32(0.1 * rng.NormFloat64())
			}
		}
		wb[k] = v2
	}
	a, b := smallModel(t, smallCfg, wa), smallModel(t, smallCfg, wb)
	tok := byteTok{smallCfg.VocabSize}
	lines := []string{"the quick brown fox", "jumps over the lazy dog", "0123456789 0123456789 0123456789"}

	var progress []int
	c, err := Compare(a, b, tok, lines, Options{Window: 16, Workers: 1, Progress: func(d, total int) { progress = append(progress, d, total) }})
	if err != nil {
		t.Fatal(err)
	}
	// Reference KL and agreement, position by position.
	var kl, klMax float64
	agree, n := 0, 0
	for _, l := range lines {
		ids := tok.Encode(l, true)
		for _, win := range Windows(ids, 16) {
			sa, _ := a.NewState(16)
			sb, _ := b.NewState(16)
			for p := 0; p+1 < len(win); p++ {
				la, _ := sa.Forward(win[p], p)
				la = slices.Clone(la)
				lb, _ := sb.Forward(win[p], p)
				pa, pb := softmax(la), softmax(lb)
				var k float64
				for i := range pa {
					k += pa[i] * math.Log(pa[i]/pb[i])
				}
				kl += k
				klMax = max(klMax, k)
				if slices.Index(la, slices.Max(la)) == slices.Index(lb, slices.Max(lb)) {
					agree++
				}
				n++
			}
		}
	}
	if c.Tokens != n || math.Abs(c.KLMean-kl/float64(n)) > 1e-9 || math.Abs(c.KLMax-klMax) > 1e-9 ||
		c.Top1Agreement != float64(agree)/float64(n) {
		t.Errorf("Compare = %+v; reference tokens %d KL mean %v max %v agreement %v", c, n, kl/float64(n), klMax, float64(agree)/float64(n))
	}
	if !(c.KLMean > 0) || c.Top1Agreement >= 1 || c.NLLOriginal == c.NLLCompressed {
		t.Errorf("perturbed model indistinguishable: %+v", c)
	}
	if len(progress) != 2*len(lines) || progress[len(progress)-2] != n || progress[len(progress)-1] != n {
		t.Errorf("progress calls %v, want one per line ending at %d/%d", progress, n, n)
	}

	// Same bytes whatever the number of workers.
	for _, workers := range []int{2, 3} {
		c2, err := Compare(a, b, tok, lines, Options{Window: 16, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if c2 != c {
			t.Errorf("%d workers: %+v, 1 worker: %+v", workers, c2, c)
		}
	}

	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	_ = json.Unmarshal(data, &keys)
	for _, k := range []string{"tokens", "nll_original", "ppl_original", "nll_compressed", "ppl_compressed", "kl_mean", "top1_agreement"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}

	wn := map[string][]float32{}
	for k, v := range wb {
		wn[k] = v
	}
	wn[llama.NormName] = slices.Clone(wn[llama.NormName])
	wn[llama.NormName][3] = float32(math.NaN())
	if _, err := Compare(a, smallModel(t, smallCfg, wn), tok, lines, Options{Window: 16}); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("NaN logits: %v, want a non-finite error", err)
	}

	other := smallCfg
	other.VocabSize = 31
	wo := randomWeights(other, 1)
	if _, err := Compare(a, smallModel(t, other, wo), tok, lines, Options{}); err == nil {
		t.Error("models with different vocabularies compared")
	}
}

func softmax(l []float32) []float64 {
	mx := float64(slices.Max(l))
	out := make([]float64, len(l))
	var s float64
	for i, x := range l {
		out[i] = math.Exp(float64(x) - mx)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestLines(t *testing.T) {
	got := Lines("one\r\ntwo\n\nthree\r\n\nfour")
	if want := []string{"one\r", "two", "three\r", "four"}; !slices.Equal(got, want) {
		t.Errorf("Lines = %q, want %q", got, want)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(p, []byte("\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLines(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadLines(empty) = %v", err)
	}
}

func TestGenerateStories260K(t *testing.T) {
	m, tok, _ := stories(t)
	const readme = "Once upon a time, there was a little girl named Lily. She loved to play outside in " +
		"the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high."
	steps := len(tok.Encode(readme, true)) - 1
	var streamed strings.Builder
	g, err := GenerateStream(m, tok, "", steps, 0, 0, func(p string) error { streamed.WriteString(p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if g.Text != readme || streamed.String() != readme || len(g.Tokens) != steps+1 || g.PromptTokens != 1 {
		t.Fatalf("greedy generation %q (%d tokens, streamed %q), want the README text", g.Text, len(g.Tokens), streamed.String())
	}

	// A prompt is read, then continued; sampling is reproducible by seed.
	a, err := Generate(m, tok, "Once upon a time", 40, 0.8, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(m, tok, "Once upon a time", 40, 0.8, 42)
	c, _ := Generate(m, tok, "Once upon a time", 40, 0.8, 43)
	if !strings.HasPrefix(a.Text, "Once upon a time") || a.Text != b.Text || !slices.Equal(a.Tokens, b.Tokens) {
		t.Errorf("same seed, different or wrong text:\n%q\n%q", a.Text, b.Text)
	}
	if slices.Equal(a.Tokens, c.Tokens) {
		t.Errorf("seeds 42 and 43 sampled the same %d tokens", len(a.Tokens))
	}
	t.Logf("seed 42, temperature 0.8: %q", a.Text)

	stop := errors.New("stop")
	if _, err := GenerateStream(m, tok, "", 10, 0, 0, func(string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("emit error not returned: %v", err)
	}
	if _, err := Generate(m, tok, "", 600, 0, 0); err == nil {
		t.Error("600 steps in a 512-token context accepted")
	}
	if _, err := Generate(m, tok, "", 5, -1, 0); err == nil {
		t.Error("negative temperature accepted")
	}
}

func TestSampleDistribution(t *testing.T) {
	// logits ln(1), ln(3): at temperature 1 the second is drawn 3/4 of the time.
	logits := []float32{0, float32(math.Log(3))}
	rng := rand.New(rand.NewPCG(1, 1))
	probs := make([]float64, 2)
	count := 0
	const n = 20000
	for i := 0; i < n; i++ {
		if sample(logits, 1, probs, rng) == 1 {
			count++
		}
	}
	if f := float64(count) / n; math.Abs(f-0.75) > 0.015 {
		t.Errorf("drew the 3/4 token %.4f of the time", f)
	}
}

// charTokenizer is a character-level llama2.c vocabulary trained without
// byte fallback: anything but " ", a, b, c is <unk>.
func charTokenizer(t *testing.T) tokenizer.Tokenizer {
	t.Helper()
	var buf []byte
	le := func(v uint32) { buf = append(buf, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)) }
	le(6)
	for _, p := range []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c"} {
		le(math.Float32bits(-1))
		le(uint32(len(p)))
		buf = append(buf, p...)
	}
	tok, err := tokenizer.ParseLlama2C("chars.bin", buf)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestUnknownTokensCounted(t *testing.T) {
	m := smallModel(t, smallCfg, randomWeights(smallCfg, 3))
	tok := charTokenizer(t)
	// "xyz" is three unknown code points, "é" one, "abc a" none.
	lines := []string{"abc a", "xyz", "aéb"}
	r, err := Perplexity(m, tok, lines, Options{Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	if r.UnknownTokens != 4 {
		t.Errorf("Perplexity counted %d unknown tokens, want 4", r.UnknownTokens)
	}
	if want := 6 + 4 + 4; r.Tokens != want {
		t.Errorf("%d scored tokens, want %d", r.Tokens, want)
	}
	c, err := Compare(m, m, tok, lines, Options{Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	if c.UnknownTokens != 4 {
		t.Errorf("Compare counted %d unknown tokens, want 4", c.UnknownTokens)
	}
	r, err = Perplexity(m, tok, []string{"abc"}, Options{Window: 64})
	if err != nil || r.UnknownTokens != 0 {
		t.Errorf("known text: %d unknown tokens (err %v), want 0", r.UnknownTokens, err)
	}
}

// LogProbs gives, row by row, normalised distributions whose entries at the
// next tokens add up to the negative log-likelihood Perplexity reports for
// the same line, and refuses a token outside the vocabulary.
func TestLogProbsMatchPerplexity(t *testing.T) {
	m := smallModel(t, smallCfg, randomWeights(smallCfg, 3))
	tok := byteTok{smallCfg.VocabSize}
	line := "a line of a few dozen bytes, all in one window"
	ids := tok.Encode(line, true)
	lp, err := LogProbs(m, ids)
	if err != nil {
		t.Fatal(err)
	}
	v := smallCfg.VocabSize
	if len(lp) != len(ids)*v {
		t.Fatalf("%d log-probabilities for %d positions x %d vocabulary", len(lp), len(ids), v)
	}
	var nll float64
	for p := range ids {
		var sum float64
		for _, x := range lp[p*v : (p+1)*v] {
			sum += math.Exp(x)
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("position %d: probabilities add up to %.15f", p, sum)
		}
		if p+1 < len(ids) {
			nll -= lp[p*v+ids[p+1]]
		}
	}
	r, err := Perplexity(m, tok, []string{line}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := nll / float64(len(ids)-1); r.Tokens != len(ids)-1 || math.Abs(got-r.NLL) > 1e-12*r.NLL {
		t.Errorf("LogProbs gives nll %.15f over %d tokens, Perplexity %.15f over %d", got, len(ids)-1, r.NLL, r.Tokens)
	}
	if _, err := LogProbs(m, []int{1, v}); err == nil {
		t.Error("a token outside the vocabulary accepted")
	}
}
