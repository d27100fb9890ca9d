package llama

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas/blas32"
)

// State is one sequence being run through a model: the key/value cache and
// scratch buffers. A State is used by one goroutine at a time; run several
// States for several sequences.
type State struct {
	m        *Model
	capacity int
	filled   int // positions 0..filled-1 hold valid cache entries

	keys, values [][]float32 // per layer, [capacity, kvDim]

	x, xb, xb2, q, att, hb, hb2 []float32
	scores                      []float32 // [heads, capacity]
	cos, sin                    []float32 // [headDim/2] for the current position
	logits                      []float32

	// Observe, when set, is called with the input vector of every linear
	// layer as Forward runs: the layer's index and the tensor kinds that
	// read it ("attn": q, k and v; "o"; "mlp": gate and up; "down"). The
	// slice is only valid during the call. Calibration uses it.
	Observe func(layer int, input Input, x []float32)
}

// Input names which linear layers read an observed vector.
type Input int

// The inputs of a Llama layer's linear maps.
const (
	InputAttn Input = iota // read by q_proj, k_proj and v_proj
	InputO                 // read by o_proj
	InputMLP               // read by gate_proj and up_proj
	InputDown              // read by down_proj
)

// Tensors are the weight tensors (parts, see LayerTensorName) that read
// this input.
func (in Input) Tensors() []string {
	switch in {
	case InputAttn:
		return []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}
	case InputO:
		return []string{"self_attn.o_proj"}
	case InputMLP:
		return []string{"mlp.gate_proj", "mlp.up_proj"}
	}
	return []string{"mlp.down_proj"}
}

func (s *State) observe(layer int, in Input, x []float32) {
	if s.Observe != nil {
		s.Observe(layer, in, x)
	}
}

// NewState allocates a State holding up to capacity positions; capacity
// <= 0 means the model's context length (max_position_embeddings).
func (m *Model) NewState(capacity int) (*State, error) {
	if capacity <= 0 {
		capacity = m.Config.MaxPositionEmbeddings
	}
	if capacity <= 0 {
		return nil, fmt.Errorf("llama: no state capacity given and the config has no max_position_embeddings")
	}
	cfg := m.Config
	s := &State{
		m: m, capacity: capacity,
		keys: make([][]float32, cfg.NumHiddenLayers), values: make([][]float32, cfg.NumHiddenLayers),
		x: make([]float32, cfg.HiddenSize), xb: make([]float32, cfg.HiddenSize), xb2: make([]float32, cfg.HiddenSize),
		q: make([]float32, cfg.NumAttentionHeads*m.headDim), att: make([]float32, cfg.NumAttentionHeads*m.headDim),
		hb: make([]float32, cfg.IntermediateSize), hb2: make([]float32, cfg.IntermediateSize),
		scores: make([]float32, cfg.NumAttentionHeads*capacity),
		cos:    make([]float32, m.headDim/2), sin: make([]float32, m.headDim/2),
		logits: make([]float32, cfg.VocabSize),
	}
	for l := range s.keys {
		s.keys[l] = make([]float32, capacity*m.kvDim)
		s.values[l] = make([]float32, capacity*m.kvDim)
	}
	return s, nil
}

// Capacity is the number of positions the State can hold.
func (s *State) Capacity() int { return s.capacity }

// Len is the number of positions currently in the cache.
func (s *State) Len() int { return s.filled }

// Reset empties the cache so the next sequence starts at position 0.
func (s *State) Reset() { s.filled = 0 }

// Forward feeds token at position pos and returns the logits for the next
// token. The returned slice belongs to the State and is overwritten by the
// next call.
//
// Positions must be fed in order: pos may be at most Len(). Feeding an
// earlier position again rewinds the sequence to it (later cache entries
// are discarded).
func (s *State) Forward(token, pos int) ([]float32, error) {
	m, cfg := s.m, s.m.Config
	if token < 0 || token >= cfg.VocabSize {
		return nil, fmt.Errorf("llama: token %d outside the vocabulary of %d", token, cfg.VocabSize)
	}
	if pos < 0 || pos >= s.capacity {
		return nil, fmt.Errorf("llama: position %d outside the state's capacity %d", pos, s.capacity)
	}
	if pos > s.filled {
		return nil, fmt.Errorf("llama: position %d fed before position %d; positions must be fed in order", pos, s.filled)
	}
	hidden, hd, kvDim := cfg.HiddenSize, m.headDim, m.kvDim
	heads := cfg.NumAttentionHeads
	group := heads / cfg.NumKeyValueHeads
	copy(s.x, m.Embed[token*hidden:(token+1)*hidden])

	for i, f := range m.invFreq {
		sin, cos := math.Sincos(float64(pos) * f)
		s.cos[i], s.sin[i] = float32(cos), float32(sin)
	}
	scale := float32(1 / math.Sqrt(float64(hd)))

	for l := range m.Layers {
		L := &m.Layers[l]
		rmsNorm(s.xb, s.x, L.AttnNorm, m.eps)
		s.observe(l, InputAttn, s.xb)
		k := s.keys[l][pos*kvDim : (pos+1)*kvDim]
		v := s.values[l][pos*kvDim : (pos+1)*kvDim]
		matVec(s.q, L.Q, s.xb)
		matVec(k, L.K, s.xb)
		matVec(v, L.V, s.xb)
		addBias(s.q, L.QBias)
		addBias(k, L.KBias)
		addBias(v, L.VBias)
		s.rope(s.q)
		s.rope(k)

		keys, values := s.keys[l], s.values[l]
		lo := windowStart(pos, L.Window)
		parallelFor(heads, heads*(pos+1-lo)*hd*2, func(h0, h1 int) {
			for h := h0; h < h1; h++ {
				s.attendHead(h, (h/group)*hd, lo, pos, scale, keys, values)
			}
		})

		s.observe(l, InputO, s.att)
		matVec(s.xb2, L.O, s.att)
		for i := range s.x {
			s.x[i] += s.xb2[i]
		}

		rmsNorm(s.xb, s.x, L.MLPNorm, m.eps)
		s.observe(l, InputMLP, s.xb)
		matVec(s.hb, L.Gate, s.xb)
		matVec(s.hb2, L.Up, s.xb)
		for i, g := range s.hb {
			s.hb[i] = silu(g) * s.hb2[i]
		}
		s.observe(l, InputDown, s.hb)
		matVec(s.xb2, L.Down, s.hb)
		for i := range s.x {
			s.x[i] += s.xb2[i]
		}
	}
	rmsNorm(s.x, s.x, m.Norm, m.eps)
	matVec(s.logits, m.LMHead, s.x)
	s.filled = pos + 1
	return s.logits, nil
}

// attendHead computes head h's attention output over positions lo..pos
// (lo > 0 under a sliding window), reading the key/value head that starts
// at column kvOff.
func (s *State) attendHead(h, kvOff, lo, pos int, scale float32, keys, values []float32) {
	hd, kvDim := s.m.headDim, s.m.kvDim
	q := s.q[h*hd : (h+1)*hd]
	sc := s.scores[h*s.capacity : h*s.capacity+pos+1-lo]
	keys, values = keys[lo*kvDim:], values[lo*kvDim:]
	maxv := float32(math.Inf(-1))
	for t := range sc {
		sc[t] = dot(q, keys[t*kvDim+kvOff:t*kvDim+kvOff+hd]) * scale
		maxv = max(maxv, sc[t])
	}
	var sum float64
	for t, x := range sc {
		e := math.Exp(float64(x - maxv))
		sc[t] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	out := s.att[h*hd : (h+1)*hd]
	clear(out)
	if hd < shortVector {
		for t, a := range sc {
			a *= inv
			v := values[t*kvDim+kvOff:]
			v = v[:len(out)]
			for i := range out {
				out[i] += a * v[i]
			}
		}
		return
	}
	impl := blas32.Implementation()
	for t, a := range sc {
		impl.Saxpy(hd, a*inv, values[t*kvDim+kvOff:], 1, out, 1)
	}
}

// shortVector is the length below which a plain loop beats a call into
// gonum's assembly kernels (their fixed cost dominates tiny models).
const shortVector = 32

// dot is sum_i a[i]*b[i] for len(a) == len(b).
func dot(a, b []float32) float32 {
	if len(a) >= shortVector {
		return blas32.Implementation().Sdot(len(a), a, 1, b, 1)
	}
	return dotF(a, b)
}

// rope rotates each head of v in the Hugging Face rotate_half layout:
// dimension i pairs with i + headDim/2.
func (s *State) rope(v []float32) {
	hd := s.m.headDim
	half := hd / 2
	for h := 0; h < len(v); h += hd {
		a, b := v[h:h+half], v[h+half:h+hd]
		for i := range a {
			x0, x1 := a[i], b[i]
			a[i] = x0*s.cos[i] - x1*s.sin[i]
			b[i] = x1*s.cos[i] + x0*s.sin[i]
		}
	}
}

// addBias adds b to dst; a nil b (no bias) adds nothing.
func addBias[F Float](dst, b []F) {
	for i, v := range b {
		dst[i] += v
	}
}

// rmsNorm sets dst = x / sqrt(mean(x^2) + eps) * w (dst may be x).
func rmsNorm(dst, x, w []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i, v := range x {
		dst[i] = w[i] * (v * r)
	}
}

func silu(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

// parallelMin is the number of multiply-adds below which a product runs on
// the calling goroutine: smaller ones finish before goroutines would start.
const parallelMin = 1 << 16

// parallelFor splits [0, n) into contiguous chunks, one per processor,
// when work (a multiply-add count) is large enough. Each index is handled
// by exactly one call, so results do not depend on the split.
func parallelFor(n, work int, fn func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	if work < parallelMin || p < 2 || n < 2 {
		fn(0, n)
		return
	}
	p = min(p, n)
	var wg sync.WaitGroup
	for c := 0; c < p; c++ {
		lo, hi := c*n/p, (c+1)*n/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// matVec sets dst = W x for W of shape [len(dst), len(x)].
func matVec(dst, w, x []float32) {
	cols := len(x)
	parallelFor(len(dst), len(dst)*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dst[r] = dot(w[r*cols:(r+1)*cols], x)
		}
	})
}
