package llama

import (
	"fmt"
	"math"

	"pocketllm-native/compress/checkpoint"
)

// This file is the sequence-level forward pass that fine-tuning needs: a
// whole sequence at once (positions 0..T-1, causal), keeping the
// activations that backward.go differentiates. It computes what
// State.Forward computes, in the same order where that matters for
// rounding (float64 norm and softmax sums), but with matrix products
// over all positions at once, sent through a MatMul.

// LayerParams holds one decoder layer's weights, each matrix [out, in]
// row-major, in the layout of Layer. It also serves as the layer's
// gradient.
//
// The biases and the window are constants of the architecture (see
// arch.go): gradients flow through the biases but are never computed for
// them, and a gradient leaves them nil and 0.
type LayerParams[F Float] struct {
	AttnNorm       []F // [hidden]
	Q, K, V, O     []F // [heads*hd, hidden], [kv*hd, hidden] x2, [hidden, heads*hd]
	MLPNorm        []F // [hidden]
	Gate, Up, Down []F // [inter, hidden] x2, [hidden, inter]

	QBias, KBias, VBias []F // [heads*hd], [kv*hd] x2, or nil without biases
	Window              int // attention window, 0 for full (LayerWindows)
}

// Params holds a whole model's weights; the caller owns the slices and may
// change them between calls. It also serves as the model's gradient.
type Params[F Float] struct {
	Embed  []F // [vocab, hidden]
	Layers []LayerParams[F]
	Norm   []F // [hidden]
	// LMHead is [vocab, hidden], or nil when the embeddings are tied (the
	// head is Embed, and its gradient goes to Embed's).
	LMHead []F
}

// tensors lists the layer's slices with their tensor names (see
// LayerTensorName).
func (l *LayerParams[F]) tensors() []namedSlice[F] {
	return []namedSlice[F]{
		{"input_layernorm", &l.AttnNorm}, {"self_attn.q_proj", &l.Q}, {"self_attn.k_proj", &l.K},
		{"self_attn.v_proj", &l.V}, {"self_attn.o_proj", &l.O}, {"post_attention_layernorm", &l.MLPNorm},
		{"mlp.gate_proj", &l.Gate}, {"mlp.up_proj", &l.Up}, {"mlp.down_proj", &l.Down},
	}
}

// biases lists the layer's q/k/v biases with their projections' names
// (see LayerBiasName).
func (l *LayerParams[F]) biases() []namedSlice[F] {
	return []namedSlice[F]{{biasParts[0], &l.QBias}, {biasParts[1], &l.KBias}, {biasParts[2], &l.VBias}}
}

type namedSlice[F Float] struct {
	part string
	s    *[]F
}

func convert[To, From Float](x []From) []To {
	if x == nil {
		return nil // an absent bias stays absent
	}
	out := make([]To, len(x))
	for i, v := range x {
		out[i] = To(v)
	}
	return out
}

// ParamsOf copies m's weights into a Params of element type F.
func ParamsOf[F Float](m *Model) *Params[F] {
	p := &Params[F]{Embed: convert[F](m.Embed), Norm: convert[F](m.Norm), Layers: make([]LayerParams[F], len(m.Layers))}
	if !m.Config.TieWordEmbeddings {
		p.LMHead = convert[F](m.LMHead)
	}
	for i := range m.Layers {
		src, dst := &m.Layers[i], &p.Layers[i]
		*dst = LayerParams[F]{
			AttnNorm: convert[F](src.AttnNorm), Q: convert[F](src.Q), K: convert[F](src.K), V: convert[F](src.V),
			O: convert[F](src.O), MLPNorm: convert[F](src.MLPNorm),
			Gate: convert[F](src.Gate), Up: convert[F](src.Up), Down: convert[F](src.Down),
			QBias: convert[F](src.QBias), KBias: convert[F](src.KBias), VBias: convert[F](src.VBias),
			Window: src.Window,
		}
	}
	return p
}

// Tensors returns the weights as float32 tensors with Hugging Face names,
// ready for FromTensors (to evaluate them with a State).
func (p *Params[F]) Tensors() map[string][]float32 {
	t := map[string][]float32{EmbedName: convert[float32](p.Embed), NormName: convert[float32](p.Norm)}
	if p.LMHead != nil {
		t[LMHeadName] = convert[float32](p.LMHead)
	}
	for i := range p.Layers {
		for _, ns := range p.Layers[i].tensors() {
			t[LayerTensorName(i, ns.part)] = convert[float32](*ns.s)
		}
		for _, ns := range p.Layers[i].biases() {
			if *ns.s != nil {
				t[LayerBiasName(i, ns.part)] = convert[float32](*ns.s)
			}
		}
	}
	return t
}

// ZeroLike returns zeros shaped like l, e.g. for its gradient.
func (l *LayerParams[F]) ZeroLike() *LayerParams[F] {
	z := &LayerParams[F]{}
	src := l.tensors()
	for i, ns := range z.tensors() {
		*ns.s = make([]F, len(*src[i].s))
	}
	return z
}

// ZeroLike returns zeros shaped like p (LMHead nil when p's is), e.g. for
// its gradient.
func (p *Params[F]) ZeroLike() *Params[F] {
	z := &Params[F]{Embed: make([]F, len(p.Embed)), Norm: make([]F, len(p.Norm)), Layers: make([]LayerParams[F], len(p.Layers))}
	if p.LMHead != nil {
		z.LMHead = make([]F, len(p.LMHead))
	}
	for i := range p.Layers {
		z.Layers[i] = *p.Layers[i].ZeroLike()
	}
	return z
}

// Seq runs the sequence-level forward and backward passes of one model
// shape. It holds no weights and no per-sequence state, so one Seq may
// serve any number of goroutines with their own Params and caches.
type Seq[F Float] struct {
	cfg                      checkpoint.LlamaConfig // with defaults filled in
	hidden, inter, heads, kv int
	headDim, qDim, kvDim     int
	eps                      float64 // rounded to F, as State rounds it to float32
	invFreq                  []float64
	bias                     bool  // q/k/v biases (HasQKVBias)
	windows                  []int // per layer (LayerWindows)
	mm                       MatMul[F]
}

// NewSeq prepares the passes for models of config cfg, sending matrix
// products to mm (GoMatMul when nil).
func NewSeq[F Float](cfg checkpoint.LlamaConfig, mm MatMul[F]) (*Seq[F], error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, fmt.Errorf("llama: %w", err)
	}
	if mm == nil {
		mm = GoMatMul[F]{}
	}
	hd := cfg.HiddenSize / cfg.NumAttentionHeads
	s := &Seq[F]{
		cfg: cfg, hidden: cfg.HiddenSize, inter: cfg.IntermediateSize,
		heads: cfg.NumAttentionHeads, kv: cfg.NumKeyValueHeads,
		headDim: hd, qDim: cfg.NumAttentionHeads * hd, kvDim: cfg.NumKeyValueHeads * hd,
		eps: float64(F(cfg.RMSNormEps)), mm: mm,
		invFreq: make([]float64, hd/2),
		bias:    HasQKVBias(cfg), windows: LayerWindows(cfg),
	}
	for i := range s.invFreq {
		s.invFreq[i] = 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
	}
	return s, nil
}

// Config is the model config the Seq was made for, defaults filled in.
func (s *Seq[F]) Config() checkpoint.LlamaConfig { return s.cfg }

// checkLayer reports the first weight of l whose length does not fit the
// config; with optional (a gradient), nil weights are allowed.
func (s *Seq[F]) checkLayer(l *LayerParams[F], optional bool) error {
	want := []int{s.hidden, s.qDim * s.hidden, s.kvDim * s.hidden, s.kvDim * s.hidden, s.hidden * s.qDim,
		s.hidden, s.inter * s.hidden, s.inter * s.hidden, s.hidden * s.inter}
	for i, ns := range l.tensors() {
		if len(*ns.s) != want[i] && !(optional && *ns.s == nil) {
			return fmt.Errorf("llama: layer weight %s has %d values, want %d", ns.part, len(*ns.s), want[i])
		}
	}
	if optional {
		return nil // a gradient has no biases
	}
	for i, ns := range l.biases() {
		switch n := []int{s.qDim, s.kvDim, s.kvDim}[i]; {
		case s.bias && len(*ns.s) != n:
			return fmt.Errorf("llama: layer bias %s has %d values, want %d (model_type %s)", ns.part, len(*ns.s), n, Arch(s.cfg))
		case !s.bias && *ns.s != nil:
			return fmt.Errorf("llama: layer has a %s bias, which model_type %s does not", ns.part, Arch(s.cfg))
		}
	}
	return nil
}

// checkParams reports the first weight of p whose length does not fit the
// config; with optional (a gradient), nil weights are allowed.
func (s *Seq[F]) checkParams(p *Params[F], optional bool) error {
	vocab := s.cfg.VocabSize
	bad := func(v []F, want int) bool { return len(v) != want && !(optional && v == nil) }
	switch {
	case bad(p.Embed, vocab*s.hidden):
		return fmt.Errorf("llama: %s has %d values, want %d", EmbedName, len(p.Embed), vocab*s.hidden)
	case bad(p.Norm, s.hidden):
		return fmt.Errorf("llama: %s has %d values, want %d", NormName, len(p.Norm), s.hidden)
	case p.LMHead != nil && len(p.LMHead) != vocab*s.hidden:
		return fmt.Errorf("llama: %s has %d values, want %d", LMHeadName, len(p.LMHead), vocab*s.hidden)
	case len(p.Layers) != s.cfg.NumHiddenLayers:
		return fmt.Errorf("llama: %d layers, want %d", len(p.Layers), s.cfg.NumHiddenLayers)
	}
	for i := range p.Layers {
		if err := s.checkLayer(&p.Layers[i], optional); err != nil {
			return fmt.Errorf("%w (layer %d)", err, i)
		}
		if w := p.Layers[i].Window; !optional && w != s.windows[i] {
			return fmt.Errorf("llama: layer %d has attention window %d, the config says %d", i, w, s.windows[i])
		}
	}
	return nil
}

// head is the output projection: LMHead, or Embed when tied.
func (p *Params[F]) head() []F {
	if p.LMHead != nil {
		return p.LMHead
	}
	return p.Embed
}

// rotary holds cos and sin of every position's angles, [T, headDim/2],
// rounded to F as State rounds them to float32.
type rotary[F Float] struct{ cos, sin []F }

func (s *Seq[F]) rotary(T int) *rotary[F] {
	half := s.headDim / 2
	r := &rotary[F]{cos: make([]F, T*half), sin: make([]F, T*half)}
	for t := range T {
		for i, f := range s.invFreq {
			sin, cos := math.Sincos(float64(t) * f)
			r.cos[t*half+i], r.sin[t*half+i] = F(cos), F(sin)
		}
	}
	return r
}

// LayerCache is one decoder layer's forward pass over a sequence: its
// input, output and the activations its backward pass reads.
type LayerCache[F Float] struct {
	T   int
	In  []F // [T, hidden], a copy of the input
	Out []F // [T, hidden]

	rot      *rotary[F]
	window   int // the layer's attention window, 0 for full
	r1, r2   []F // [T] inverse RMS of the attention and MLP norms' inputs
	xn1, xn2 []F // [T, hidden] normed inputs of attention and MLP
	q, k, v  []F // [T, qDim], [T, kvDim] x2; q and k after the rotation
	probs    []F // [heads, T, T] attention probabilities (row i: windowStart(i)..i used, the rest 0)
	att      []F // [T, qDim] attention output, o_proj's input
	mid      []F // [T, hidden] the residual stream between attention and MLP
	gate, up []F // [T, inter] gate_proj and up_proj outputs
	act      []F // [T, inter] silu(gate)*up, down_proj's input
}

// LayerForward runs decoder layer w over x [T, hidden] (positions
// 0..T-1, causal attention). The returned cache's Out is the layer's
// output; pass the cache to LayerBackward.
func (s *Seq[F]) LayerForward(w *LayerParams[F], x []F) (*LayerCache[F], error) {
	if len(x) == 0 || len(x)%s.hidden != 0 {
		return nil, fmt.Errorf("llama: layer input has %d values, not a positive multiple of hidden size %d", len(x), s.hidden)
	}
	c, err := s.layerForward(w, append([]F(nil), x...), s.rotary(len(x)/s.hidden))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// layerForward runs the layer over x, which the cache keeps as its In.
func (s *Seq[F]) layerForward(w *LayerParams[F], x []F, rot *rotary[F]) (*LayerCache[F], error) {
	if err := s.checkLayer(w, false); err != nil {
		return nil, err
	}
	T := len(x) / s.hidden
	hidden, inter, qDim, kvDim := s.hidden, s.inter, s.qDim, s.kvDim
	c := &LayerCache[F]{
		T: T, In: x, Out: make([]F, T*hidden), rot: rot, window: w.Window,
		r1: make([]F, T), r2: make([]F, T),
		xn1: make([]F, T*hidden), xn2: make([]F, T*hidden),
		q: make([]F, T*qDim), k: make([]F, T*kvDim), v: make([]F, T*kvDim),
		probs: make([]F, s.heads*T*T), att: make([]F, T*qDim), mid: make([]F, T*hidden),
		gate: make([]F, T*inter), up: make([]F, T*inter), act: make([]F, T*inter),
	}
	s.rmsNormRows(c.xn1, c.r1, x, w.AttnNorm)
	if err := s.linear(c.q, c.xn1, w.Q, T, qDim, hidden); err != nil {
		return nil, err
	}
	if err := s.linear(c.k, c.xn1, w.K, T, kvDim, hidden); err != nil {
		return nil, err
	}
	if err := s.linear(c.v, c.xn1, w.V, T, kvDim, hidden); err != nil {
		return nil, err
	}
	s.addBiasRows(c.q, w.QBias)
	s.addBiasRows(c.k, w.KBias)
	s.addBiasRows(c.v, w.VBias)
	s.rope(c.q, rot, false)
	s.rope(c.k, rot, false)
	s.attention(c)
	if err := s.linear(c.mid, c.att, w.O, T, hidden, qDim); err != nil {
		return nil, err
	}
	for i, v := range x {
		c.mid[i] += v
	}
	s.rmsNormRows(c.xn2, c.r2, c.mid, w.MLPNorm)
	if err := s.linear(c.gate, c.xn2, w.Gate, T, inter, hidden); err != nil {
		return nil, err
	}
	if err := s.linear(c.up, c.xn2, w.Up, T, inter, hidden); err != nil {
		return nil, err
	}
	for i, g := range c.gate {
		c.act[i] = siluF(g) * c.up[i]
	}
	if err := s.linear(c.Out, c.act, w.Down, T, hidden, inter); err != nil {
		return nil, err
	}
	for i, v := range c.mid {
		c.Out[i] += v
	}
	return c, nil
}

// linear sets y [T, out] = x [T, in] W^T for W [out, in].
func (s *Seq[F]) linear(y, x, w []F, T, out, in int) error {
	return s.mm.Gemm(false, true, T, out, in, 1, x, w, 0, y)
}

// addBiasRows adds b to every row of y [T, len(b)]; a nil b adds nothing.
func (s *Seq[F]) addBiasRows(y, b []F) {
	if len(b) == 0 {
		return
	}
	for t := 0; t < len(y); t += len(b) {
		addBias(y[t:t+len(b)], b)
	}
}

// rmsNormRows normalises each row of x [T, hidden] into dst, as rmsNorm
// does, keeping each row's inverse RMS in r.
func (s *Seq[F]) rmsNormRows(dst, r, x, w []F) {
	n := s.hidden
	for t := range r {
		row := x[t*n : (t+1)*n]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r[t] = F(1 / math.Sqrt(ss/float64(n)+s.eps))
		out := dst[t*n : (t+1)*n]
		for i, v := range row {
			out[i] = w[i] * (v * r[t])
		}
	}
}

// rope rotates every head of every row of v [T, heads*headDim] by its
// position's angles (rotate_half layout), or back by them when inverse
// (which is also the transpose, so it carries gradients back).
func (s *Seq[F]) rope(v []F, rot *rotary[F], inverse bool) {
	hd, half := s.headDim, s.headDim/2
	T := len(rot.cos) / half
	width := len(v) / T
	for t := range T {
		cos, sin := rot.cos[t*half:(t+1)*half], rot.sin[t*half:(t+1)*half]
		row := v[t*width : (t+1)*width]
		for h := 0; h < width; h += hd {
			a, b := row[h:h+half], row[h+half:h+hd]
			for i := range a {
				x0, x1, c, sn := a[i], b[i], cos[i], sin[i]
				if inverse {
					sn = -sn
				}
				a[i] = x0*c - x1*sn
				b[i] = x1*c + x0*sn
			}
		}
	}
}

// attentionRows is how many query positions one attention task covers.
const attentionRows = 16

// attention fills c.probs and c.att from c.q, c.k and c.v, one task per
// head and block of query positions (disjoint outputs, so any split gives
// the same bytes).
func (s *Seq[F]) attention(c *LayerCache[F]) {
	T, hd, qDim, kvDim := c.T, s.headDim, s.qDim, s.kvDim
	group := s.heads / s.kv
	scale := F(1 / math.Sqrt(float64(hd)))
	blocks := (T + attentionRows - 1) / attentionRows
	parallelTasks(s.heads*blocks, s.heads*T*T*hd, func(task int) {
		h, i0 := task/blocks, (task%blocks)*attentionRows
		kvOff := (h / group) * hd
		for i := i0; i < min(i0+attentionRows, T); i++ {
			q := c.q[i*qDim+h*hd : i*qDim+(h+1)*hd]
			lo := windowStart(i, c.window)
			p := c.probs[(h*T+i)*T+lo : (h*T+i)*T+i+1]
			kv := lo * kvDim // p[j] is position lo+j
			maxv := F(math.Inf(-1))
			for j := range p {
				p[j] = dotF(q, c.k[kv+j*kvDim+kvOff:kv+j*kvDim+kvOff+hd]) * scale
				maxv = max(maxv, p[j])
			}
			var sum float64
			for j, x := range p {
				e := math.Exp(float64(x - maxv))
				p[j] = F(e)
				sum += e
			}
			inv := F(1 / sum)
			out := c.att[i*qDim+h*hd : i*qDim+(h+1)*hd]
			for j := range p {
				p[j] *= inv
				a := p[j]
				v := c.v[kv+j*kvDim+kvOff:][:len(out)]
				for d := range out {
					out[d] += a * v[d]
				}
			}
		}
	})
}

// dotF is sum_i a[i]*b[i] with four partial sums; State's dot uses it for
// short vectors.
func dotF[F Float](a, b []F) F {
	b = b[:len(a)]
	var s0, s1, s2, s3 F
	for len(a) >= 4 && len(b) >= 4 {
		s0 += a[0] * b[0]
		s1 += a[1] * b[1]
		s2 += a[2] * b[2]
		s3 += a[3] * b[3]
		a, b = a[4:], b[4:]
	}
	for i, x := range a {
		s0 += x * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func sigmoid[F Float](x F) F { return F(1 / (1 + math.Exp(-float64(x)))) }

func siluF[F Float](x F) F { return x / F(1+math.Exp(-float64(x))) }

// Cache is a whole model's forward pass over a token sequence.
type Cache[F Float] struct {
	Tokens []int
	Layers []*LayerCache[F] // Layers[l].In is layer l's input
	Logits []F              // [T, vocab]

	final []F // [T, hidden] the last layer's output
	rF    []F // [T] its inverse RMS
	xnF   []F // [T, hidden] normed, the head's input
}

// Forward runs the model p over tokens (positions 0..len-1) and returns
// the cache, whose Logits [T, vocab] hold each position's next-token
// logits; pass it to Backward.
func (s *Seq[F]) Forward(p *Params[F], tokens []int) (*Cache[F], error) {
	if err := s.checkParams(p, false); err != nil {
		return nil, err
	}
	T, hidden, vocab := len(tokens), s.hidden, s.cfg.VocabSize
	if T == 0 {
		return nil, fmt.Errorf("llama: no tokens to run")
	}
	x := make([]F, T*hidden)
	for t, tok := range tokens {
		if tok < 0 || tok >= vocab {
			return nil, fmt.Errorf("llama: token %d at position %d outside the vocabulary of %d", tok, t, vocab)
		}
		copy(x[t*hidden:(t+1)*hidden], p.Embed[tok*hidden:(tok+1)*hidden])
	}
	c := &Cache[F]{Tokens: append([]int(nil), tokens...), Layers: make([]*LayerCache[F], len(p.Layers))}
	rot := s.rotary(T)
	for l := range p.Layers {
		lc, err := s.layerForward(&p.Layers[l], x, rot)
		if err != nil {
			return nil, fmt.Errorf("%w (layer %d)", err, l)
		}
		c.Layers[l] = lc
		x = lc.Out
	}
	c.final, c.rF, c.xnF = x, make([]F, T), make([]F, T*hidden)
	s.rmsNormRows(c.xnF, c.rF, x, p.Norm)
	c.Logits = make([]F, T*vocab)
	if err := s.linear(c.Logits, c.xnF, p.head(), T, vocab, hidden); err != nil {
		return nil, err
	}
	return c, nil
}

// Tensor returns the slice holding the tensor of that Hugging Face name
// (the embeddings, the final norm, the head, a layer's weight or bias), or nil
// when p has none of that name.
func (p *Params[F]) Tensor(name string) *[]F {
	switch name {
	case EmbedName:
		return &p.Embed
	case NormName:
		return &p.Norm
	case LMHeadName:
		if p.LMHead != nil {
			return &p.LMHead
		}
		return nil
	}
	for i := range p.Layers {
		for _, ns := range p.Layers[i].tensors() {
			if LayerTensorName(i, ns.part) == name {
				return ns.s
			}
		}
		for _, ns := range p.Layers[i].biases() {
			if LayerBiasName(i, ns.part) == name && *ns.s != nil {
				return ns.s
			}
		}
	}
	return nil
}
