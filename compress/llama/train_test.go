package llama

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/sharedtest"
)

// tinyCfg is the model of the gradient checks: grouped-query attention
// (two query heads share one key/value head), two layers.
var tinyCfg = checkpoint.LlamaConfig{HiddenSize: 8, IntermediateSize: 12, NumHiddenLayers: 2,
	NumAttentionHeads: 2, NumKeyValueHeads: 1, VocabSize: 11, MaxPositionEmbeddings: 16,
	RMSNormEps: 1e-5, RopeTheta: 500}

// gradTol is the largest relative difference, ||numeric - analytic|| /
// ||numeric|| per tensor, allowed between central differences and the
// backward pass in float64.
const gradTol = 1e-6

// fdStep is the central-difference step: its truncation error (~step^2)
// and rounding error (~1e-16/step) are both far below gradTol.
const fdStep = 1e-5

func randSlice(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

func modelOf(t testing.TB, cfg checkpoint.LlamaConfig, seed uint64) *Model {
	t.Helper()
	_, hf := synthetic(cfg, seed)
	m, err := FromTensors(cfg, hf)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// numericGrad returns d loss / d w[i] for every i by central differences,
// restoring w afterwards.
func numericGrad(w []float64, loss func() float64) []float64 {
	g := make([]float64, len(w))
	for i, v := range w {
		w[i] = v + fdStep
		up := loss()
		w[i] = v - fdStep
		down := loss()
		w[i] = v
		g[i] = (up - down) / (2 * fdStep)
	}
	return g
}

// worstGradErr is the largest relative error checkGrad has seen, logged
// by the gradient tests.
var worstGradErr float64

// checkGrad compares a numeric gradient with the analytic one.
func checkGrad(t *testing.T, name string, numeric, analytic []float64) {
	t.Helper()
	var diff, norm float64
	for i, n := range numeric {
		diff += (n - analytic[i]) * (n - analytic[i])
		norm += n * n
	}
	if norm == 0 {
		t.Errorf("%s: numeric gradient is zero; the check proves nothing", name)
		return
	}
	rel := math.Sqrt(diff / norm)
	worstGradErr = max(worstGradErr, rel)
	if rel > gradTol || math.IsNaN(rel) {
		t.Errorf("%s: relative gradient error %.3g > %g\nnumeric  %v\nanalytic %v", name, rel, gradTol, numeric, analytic)
	}
}

// checkLayerGradients checks the input and weight gradients of layer w
// over T random positions against central differences, with loss
// sum(out * dOut), and returns what it needs to test accumulation.
func checkLayerGradients(t *testing.T, s *Seq[float64], w *LayerParams[float64], prefix string) (c *LayerCache[float64], dOut []float64, grad *LayerParams[float64]) {
	t.Helper()
	rng := rand.New(rand.NewPCG(2, 3))
	const T = 5
	x := randSlice(rng, T*s.hidden, 1)
	dOut = randSlice(rng, T*s.hidden, 1)
	loss := func() float64 {
		c, err := s.LayerForward(w, x)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		for i, o := range c.Out {
			l += o * dOut[i]
		}
		return l
	}
	c, err := s.LayerForward(w, x)
	if err != nil {
		t.Fatal(err)
	}
	grad = w.ZeroLike()
	dX, err := s.LayerBackward(w, c, dOut, grad)
	if err != nil {
		t.Fatal(err)
	}
	checkGrad(t, prefix+"input", numericGrad(x, loss), dX)
	gs := grad.tensors()
	for i, ns := range w.tensors() {
		checkGrad(t, prefix+ns.part, numericGrad(*ns.s, loss), *gs[i].s)
	}
	return c, dOut, grad
}

func TestLayerGradients(t *testing.T) {
	m := modelOf(t, tinyCfg, 11)
	s, err := NewSeq[float64](tinyCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &ParamsOf[float64](m).Layers[1]
	worstGradErr = 0
	defer func() { t.Logf("worst relative gradient error %.3g", worstGradErr) }()
	c, dOut, grad := checkLayerGradients(t, s, w, "")

	// The gradient accumulates: a second backward pass doubles it.
	if _, err := s.LayerBackward(w, c, dOut, grad); err != nil {
		t.Fatal(err)
	}
	once := w.ZeroLike()
	if _, err := s.LayerBackward(w, c, dOut, once); err != nil {
		t.Fatal(err)
	}
	for i, v := range once.Q {
		if math.Abs(grad.Q[i]-2*v) > 1e-12*math.Abs(v) {
			t.Fatalf("q_proj gradient %d after two passes %g, want twice %g", i, grad.Q[i], v)
		}
	}
}

// checkModelGradients checks every weight's gradient of a KL loss over a
// short sequence (a repeated token sums two gradients into one embedding
// row) against central differences.
func checkModelGradients(t *testing.T, cfg checkpoint.LlamaConfig, p *Params[float64], prefix string) {
	t.Helper()
	s, err := NewSeq[float64](cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 5))
	tokens := []int{3, 0, 10, 3, 7}
	teacher, err := LogSoftmax(randSlice(rng, len(tokens)*cfg.VocabSize, 2), cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		c, err := s.Forward(p, tokens)
		if err != nil {
			t.Fatal(err)
		}
		kl, err := KL(teacher, c.Logits, cfg.VocabSize, nil)
		if err != nil {
			t.Fatal(err)
		}
		return kl
	}
	c, err := s.Forward(p, tokens)
	if err != nil {
		t.Fatal(err)
	}
	dLogits := make([]float64, len(c.Logits))
	if _, err := KL(teacher, c.Logits, cfg.VocabSize, dLogits); err != nil {
		t.Fatal(err)
	}
	grad := p.ZeroLike()
	if err := s.Backward(p, c, dLogits, grad); err != nil {
		t.Fatal(err)
	}
	checkGrad(t, prefix+EmbedName, numericGrad(p.Embed, loss), grad.Embed)
	checkGrad(t, prefix+NormName, numericGrad(p.Norm, loss), grad.Norm)
	if p.LMHead != nil {
		checkGrad(t, prefix+LMHeadName, numericGrad(p.LMHead, loss), grad.LMHead)
	}
	for l := range p.Layers {
		gs := grad.Layers[l].tensors()
		for i, ns := range p.Layers[l].tensors() {
			checkGrad(t, prefix+LayerTensorName(l, ns.part), numericGrad(*ns.s, loss), *gs[i].s)
		}
	}
}

func TestModelGradients(t *testing.T) {
	worstGradErr = 0
	defer func() { t.Logf("worst relative gradient error %.3g", worstGradErr) }()
	for _, tied := range []bool{true, false} {
		cfg := tinyCfg
		cfg.TieWordEmbeddings = tied
		p := ParamsOf[float64](modelOf(t, cfg, 21))
		if (p.LMHead == nil) != tied {
			t.Fatalf("tied %v: LMHead nil is %v", tied, p.LMHead == nil)
		}
		prefix := "untied "
		if tied {
			prefix = "tied "
		}
		checkModelGradients(t, cfg, p, prefix)
	}
}

// TestBlockwiseSquaredError runs block-wise fine-tuning's objective: a
// perturbed ("compressed") copy of layer 0 against the original layer on
// the original model's layer input, checking the gradient of every weight.
func TestBlockwiseSquaredError(t *testing.T) {
	s, err := NewSeq[float64](tinyCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := ParamsOf[float64](modelOf(t, tinyCfg, 31))
	c, err := s.Forward(p, []int{2, 9, 4, 4, 1})
	if err != nil {
		t.Fatal(err)
	}
	x, want := c.Layers[0].In, c.Layers[0].Out
	// The model's cache holds the same output a lone layer pass gives.
	if lc, err := s.LayerForward(&p.Layers[0], x); err != nil || !slices.Equal(lc.Out, want) {
		t.Fatalf("layer 0 alone differs from the model's layer 0 (%v)", err)
	}
	rng := rand.New(rand.NewPCG(14, 15))
	comp := p.Layers[0].ZeroLike()
	src := p.Layers[0].tensors()
	for i, ns := range comp.tensors() {
		for j, v := range *src[i].s {
			(*ns.s)[j] = v + 0.05*rng.NormFloat64()
		}
	}
	loss := func() float64 {
		lc, err := s.LayerForward(comp, x)
		if err != nil {
			t.Fatal(err)
		}
		l, err := SquaredError(lc.Out, want, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	lc, err := s.LayerForward(comp, x)
	if err != nil {
		t.Fatal(err)
	}
	dOut := make([]float64, len(lc.Out))
	if l, err := SquaredError(lc.Out, want, dOut); err != nil || l <= 0 {
		t.Fatalf("squared error %g, %v; want > 0", l, err)
	}
	checkGrad(t, "squared error", numericGrad(lc.Out, func() float64 {
		l, _ := SquaredError(lc.Out, want, nil)
		return l
	}), dOut)
	grad := comp.ZeroLike()
	if _, err := s.LayerBackward(comp, lc, dOut, grad); err != nil {
		t.Fatal(err)
	}
	gs := grad.tensors()
	for i, ns := range comp.tensors() {
		checkGrad(t, "compressed "+ns.part, numericGrad(*ns.s, loss), *gs[i].s)
	}
	if _, err := SquaredError(want, want[1:], nil); err == nil {
		t.Error("squared error of different lengths accepted")
	}
}

func TestKL(t *testing.T) {
	const T, vocab = 3, 7
	rng := rand.New(rand.NewPCG(6, 7))
	student := randSlice(rng, T*vocab, 3)
	teacher, err := LogSoftmax(randSlice(rng, T*vocab, 3), vocab)
	if err != nil {
		t.Fatal(err)
	}
	teacher[4] = math.Inf(-1) // a token the teacher rules out
	// Renormalise row 0 without token 4, keeping it a distribution.
	row, _ := LogSoftmax(teacher[:vocab], vocab)
	copy(teacher, row)
	worstGradErr = 0
	grad := make([]float64, T*vocab)
	kl, err := KL(teacher, student, vocab, grad)
	if err != nil {
		t.Fatal(err)
	}
	if kl <= 0 {
		t.Errorf("KL of different distributions %g, want > 0", kl)
	}
	checkGrad(t, "KL", numericGrad(student, func() float64 {
		v, _ := KL(teacher, student, vocab, nil)
		return v
	}), grad)
	t.Logf("relative gradient error %.3g", worstGradErr)

	// Against itself the divergence is 0 and so is the gradient, even for
	// logits whose exponentials overflow.
	huge := slices.Clone(student)
	for i := range huge {
		huge[i] += 1000
	}
	self, _ := LogSoftmax(huge, vocab)
	kl, err = KL(self, huge, vocab, grad)
	if err != nil || math.Abs(kl) > 1e-12 {
		t.Errorf("KL(p||p) at logits ~1000: %g, %v; want 0", kl, err)
	}
	for i, g := range grad {
		if math.Abs(g) > 1e-12 {
			t.Fatalf("KL(p||p) gradient %d is %g, want 0", i, g)
		}
	}
	// Shifting logits does not change a distribution.
	shifted, _ := KL(teacher, huge, vocab, nil)
	plain, _ := KL(teacher, student, vocab, nil)
	if math.Abs(shifted-plain) > 1e-9 {
		t.Errorf("KL with logits shifted by 1000: %g, unshifted %g", shifted, plain)
	}
	if _, err := KL(teacher, student[:vocab], vocab, nil); err == nil {
		t.Error("KL accepted teacher and student of different lengths")
	}
	if _, err := KL(teacher, student, vocab, grad[:3]); err == nil {
		t.Error("KL accepted a short gradient")
	}
}

// compareSeqWithReference checks the float64 sequence forward of m
// against run.c's float64 computation on the interleaved layout (ref):
// two independent computations in the same precision must agree to
// rounding.
func compareSeqWithReference(t *testing.T, m *Model, tokens []int, ref [][]float64) {
	t.Helper()
	s, err := NewSeq[float64](m.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Forward(ParamsOf[float64](m), tokens)
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.VocabSize()
	for pos := range tokens {
		for i, r := range ref[pos] {
			if got := c.Logits[pos*vocab+i]; math.Abs(got-r) > 1e-10*max(1, math.Abs(r)) {
				t.Fatalf("sequence forward pos %d logit %d: %g, reference %g", pos, i, got, r)
			}
		}
	}
}

// seqStateTol bounds |seq - state| / max(1, max|logit|) per position in
// float32: the two passes sum the same products in different orders, so
// they differ by float32 rounding accumulated over the layers.
const seqStateTol = 1e-5

// compareWithState runs p's float32 sequence forward and m's State over
// tokens and checks every position's logits.
func compareWithState(t *testing.T, m *Model, tokens []int) {
	t.Helper()
	s, err := NewSeq[float32](m.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Forward(ParamsOf[float32](m), tokens)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.NewState(len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	vocab, worst := m.VocabSize(), 0.0
	for pos, tok := range tokens {
		want, err := st.Forward(tok, pos)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Logits[pos*vocab : (pos+1)*vocab]
		scale := 1.0
		for _, w := range want {
			scale = max(scale, math.Abs(float64(w)))
		}
		for i, w := range want {
			d := math.Abs(float64(got[i])-float64(w)) / scale
			worst = max(worst, d)
			if d > seqStateTol {
				t.Fatalf("pos %d logit %d: sequence %g, state %g (relative %.3g > %g)", pos, i, got[i], w, d, seqStateTol)
			}
		}
	}
	t.Logf("%d positions, worst relative logit difference %.3g", len(tokens), worst)
}

func TestSeqMatchesState(t *testing.T) {
	for _, tied := range []bool{true, false} {
		cfg := smallCfg
		cfg.TieWordEmbeddings = tied
		compareWithState(t, modelOf(t, cfg, 9), []int{1, 5, 9, 39, 0, 17, 17, 3, 22, 11, 30, 2, 8, 8, 4, 38})
	}
}

func TestSeqMatchesStateStories260K(t *testing.T) {
	m := loadStories(t)
	tok, err := tokenizer.Load(sharedtest.Tokenizer(t))
	if err != nil {
		t.Fatal(err)
	}
	compareWithState(t, m, tok.Encode(readmeText, true))
	// The whole context, where attention runs in parallel.
	rng := rand.New(rand.NewPCG(16, 17))
	tokens := make([]int, m.ContextLength())
	for i := range tokens {
		tokens[i] = rng.IntN(m.VocabSize())
	}
	compareWithState(t, m, tokens)
}

// TestParamsTensors checks that Params converts back to a Model that runs
// the same.
func TestParamsTensors(t *testing.T) {
	cfg := smallCfg
	m := modelOf(t, cfg, 13)
	back, err := FromTensors(cfg, ParamsOf[float32](m).Tensors())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.NewState(2)
	b, _ := back.NewState(2)
	la, _ := a.Forward(4, 0)
	lb, _ := b.Forward(4, 0)
	if !slices.Equal(la, lb) {
		t.Error("Params.Tensors does not rebuild the same model")
	}
}

// trainStep runs trainGrads, returning the logits and every gradient
// concatenated.
func trainStep[F Float](t testing.TB, s *Seq[F], p *Params[F], tokens []int, teacher []F) []F {
	c, grad := trainGrads(t, s, p, tokens, teacher)
	out := slices.Concat(c.Logits, grad.Embed, grad.Norm, grad.LMHead)
	for l := range grad.Layers {
		for _, ns := range grad.Layers[l].tensors() {
			out = append(out, *ns.s...)
		}
	}
	return out
}

// TestSeqDeterministic checks that the parallel products and attention
// give the same bytes for any GOMAXPROCS.
func TestSeqDeterministic(t *testing.T) {
	cfg := smallCfg
	cfg.VocabSize = 4096 // the head's products are above parallelMin
	m := modelOf(t, cfg, 15)
	s, err := NewSeq[float32](cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := ParamsOf[float32](m)
	rng := rand.New(rand.NewPCG(8, 9))
	tokens := make([]int, 70) // attention over 70 positions is above parallelMin
	for i := range tokens {
		tokens[i] = rng.IntN(cfg.VocabSize)
	}
	teacher, _ := LogSoftmax(convert[float32](randSlice(rng, len(tokens)*cfg.VocabSize, 1)), cfg.VocabSize)
	run := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		return trainStep(t, s, p, tokens, teacher)
	}
	if one, four := run(1), run(4); !slices.Equal(one, four) {
		t.Error("logits or gradients differ between GOMAXPROCS 1 and 4")
	}
}

func naiveGemm(transA, transB bool, m, n, k int, alpha float64, a, b []float64, beta float64, c []float64) {
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				av, bv := a[i*k+p], b[p*n+j]
				if transA {
					av = a[p*m+i]
				}
				if transB {
					bv = b[j*k+p]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*n+j] = alpha * s
			} else {
				c[i*n+j] = alpha*s + beta*c[i*n+j]
			}
		}
	}
}

func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for _, d := range [][3]int{{1, 1, 1}, {5, 7, 3}, {2, 4, 9}, {33, 65, 17}, {70, 131, 40}} {
		m, n, k := d[0], d[1], d[2]
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, beta := range []float64{0, 1.3} {
				a, b := randSlice(rng, m*k, 1), randSlice(rng, k*n, 1)
				c := randSlice(rng, m*n, 1)
				if beta == 0 {
					for i := range c {
						c[i] = math.NaN() // never read
					}
				}
				want := slices.Clone(c)
				naiveGemm(tr[0], tr[1], m, n, k, 0.7, a, b, beta, want)
				if err := (GoMatMul[float64]{}).Gemm(tr[0], tr[1], m, n, k, 0.7, a, b, beta, c); err != nil {
					t.Fatal(err)
				}
				for i := range c {
					if math.Abs(c[i]-want[i]) > 1e-12*max(1, math.Abs(want[i])) || math.IsNaN(c[i]) {
						t.Fatalf("m=%d n=%d k=%d trans %v beta %g: C[%d] = %g, want %g", m, n, k, tr, beta, i, c[i], want[i])
					}
				}
			}
		}
	}
	err := (GoMatMul[float32]{}).Gemm(false, false, 2, 3, 4, 1, make([]float32, 8), make([]float32, 11), 0, make([]float32, 6))
	if err == nil || !strings.Contains(err.Error(), "needs") {
		t.Errorf("short B: %v", err)
	}
}

func TestLayerForwardErrors(t *testing.T) {
	s, err := NewSeq[float64](tinyCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := ParamsOf[float64](modelOf(t, tinyCfg, 1))
	if _, err := s.LayerForward(&p.Layers[0], make([]float64, 7)); err == nil {
		t.Error("input of 7 values for hidden size 8 accepted")
	}
	bad := p.Layers[0]
	bad.Up = bad.Up[1:]
	if _, err := s.LayerForward(&bad, make([]float64, 8)); err == nil || !strings.Contains(err.Error(), "mlp.up_proj") {
		t.Errorf("short up_proj: %v", err)
	}
	if _, err := s.Forward(p, []int{11}); err == nil {
		t.Error("token 11 of 11 accepted")
	}
}

// BenchmarkTrainStepStories260K runs forward, KL and backward over the
// model's whole context and reports tokens per second.
func BenchmarkTrainStepStories260K(b *testing.B) {
	m := loadStories(b)
	s, err := NewSeq[float32](m.Config, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := ParamsOf[float32](m)
	T := m.ContextLength()
	if T <= 0 {
		T = 256
	}
	rng := rand.New(rand.NewPCG(12, 13))
	tokens := make([]int, T)
	for i := range tokens {
		tokens[i] = rng.IntN(m.VocabSize())
	}
	teacher, _ := LogSoftmax(convert[float32](randSlice(rng, T*m.VocabSize(), 1)), m.VocabSize())
	b.ResetTimer()
	for b.Loop() {
		trainGrads(b, s, p, tokens, teacher)
	}
	b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// float32GradTol bounds ||g32 - g64|| / ||g64|| per gradient tensor: the
// float32 pass rounds every product and sum, the float64 pass is the
// reference.
const float32GradTol = 2e-5

// compareFloat32Gradients runs one KL training step in float32 and in
// float64 on the same weights and checks every gradient tensor of the
// float32 pass against the float64 one.
func compareFloat32Gradients(t *testing.T, m *Model, tokens []int) {
	t.Helper()
	vocab := m.VocabSize()
	rng := rand.New(rand.NewPCG(18, 19))
	teacher64, err := LogSoftmax(randSlice(rng, len(tokens)*vocab, 2), vocab)
	if err != nil {
		t.Fatal(err)
	}
	s32, err := NewSeq[float32](m.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	s64, err := NewSeq[float64](m.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	p32, p64 := ParamsOf[float32](m), ParamsOf[float64](m)
	_, g32 := trainGrads(t, s32, p32, tokens, convert[float32](teacher64))
	_, g64 := trainGrads(t, s64, p64, tokens, teacher64)
	worst := 0.0
	got32 := g32.Tensors()
	for name, want := range g64.Tensors() {
		got := got32[name]
		var diff, norm float64
		for i, w := range want {
			diff += (float64(got[i]) - float64(w)) * (float64(got[i]) - float64(w))
			norm += float64(w) * float64(w)
		}
		if norm == 0 {
			t.Errorf("%s: zero gradient", name)
			continue
		}
		rel := math.Sqrt(diff / norm)
		worst = max(worst, rel)
		if rel > float32GradTol {
			t.Errorf("%s: float32 gradient differs from float64 by %.3g > %g", name, rel, float32GradTol)
		}
	}
	t.Logf("%d positions, worst relative float32 gradient error %.3g", len(tokens), worst)
}

// trainGrads runs forward, KL against teacher and backward, returning the
// forward cache and the gradient.
func trainGrads[F Float](t testing.TB, s *Seq[F], p *Params[F], tokens []int, teacher []F) (*Cache[F], *Params[F]) {
	c, err := s.Forward(p, tokens)
	if err != nil {
		t.Fatal(err)
	}
	dLogits := make([]F, len(c.Logits))
	if _, err := KL(teacher, c.Logits, s.Config().VocabSize, dLogits); err != nil {
		t.Fatal(err)
	}
	grad := p.ZeroLike()
	if err := s.Backward(p, c, dLogits, grad); err != nil {
		t.Fatal(err)
	}
	return c, grad
}

func TestFloat32Gradients(t *testing.T) {
	cfg := smallCfg
	compareFloat32Gradients(t, modelOf(t, cfg, 23), []int{1, 5, 9, 39, 0, 17, 17, 3, 22, 11, 30, 2, 8, 8, 4, 38})
}

func TestFloat32GradientsStories260K(t *testing.T) {
	m := loadStories(t)
	rng := rand.New(rand.NewPCG(20, 21))
	tokens := make([]int, 128)
	for i := range tokens {
		tokens[i] = rng.IntN(m.VocabSize())
	}
	compareFloat32Gradients(t, m, tokens)
}

// TestPartialGradients checks that nil weights in a gradient are skipped
// and the others come out as in a full gradient.
func TestPartialGradients(t *testing.T) {
	cfg := smallCfg
	m := modelOf(t, cfg, 25)
	s, err := NewSeq[float32](cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := ParamsOf[float32](m)
	rng := rand.New(rand.NewPCG(22, 23))
	tokens := []int{3, 1, 4, 1, 5, 9, 2, 6}
	teacher, _ := LogSoftmax(convert[float32](randSlice(rng, len(tokens)*cfg.VocabSize, 1)), cfg.VocabSize)
	c, full := trainGrads(t, s, p, tokens, teacher)
	dLogits := make([]float32, len(c.Logits))
	if _, err := KL(teacher, c.Logits, cfg.VocabSize, dLogits); err != nil {
		t.Fatal(err)
	}
	part := &Params[float32]{Layers: make([]LayerParams[float32], cfg.NumHiddenLayers)}
	part.Layers[0].Down = make([]float32, len(p.Layers[0].Down))
	part.Layers[1].AttnNorm = make([]float32, len(p.Layers[1].AttnNorm))
	part.LMHead = make([]float32, len(p.LMHead))
	if err := s.Backward(p, c, dLogits, part); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(part.Layers[0].Down, full.Layers[0].Down) || !slices.Equal(part.Layers[1].AttnNorm, full.Layers[1].AttnNorm) ||
		!slices.Equal(part.LMHead, full.LMHead) {
		t.Error("a partial gradient differs from the full gradient")
	}
	if part.Embed != nil || part.Layers[0].Q != nil {
		t.Error("Backward filled a nil gradient")
	}

	tiedCfg := cfg
	tiedCfg.TieWordEmbeddings = true
	tied := ParamsOf[float32](modelOf(t, tiedCfg, 25))
	tc, err := s.Forward(tied, tokens)
	if err != nil {
		t.Fatal(err)
	}
	g := tied.ZeroLike()
	g.LMHead = make([]float32, len(tied.Embed))
	if err := s.Backward(tied, tc, dLogits, g); err == nil || !strings.Contains(err.Error(), "tied") {
		t.Errorf("gradient LMHead for a tied model: %v", err)
	}
}
