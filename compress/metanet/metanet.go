// Package metanet is PocketLLM's meta network: the encoder that maps weight
// sub-vectors into a latent space, the latent codebook, and the decoder that
// maps codewords back (METHOD.md sections 2 and 3), with the forward and
// backward passes over a batch of whole weight rows. The arithmetic runs on a
// bindings.Kernels backend; this package only wires the blocks together.
package metanet

import (
	"fmt"
	"math"
	"math/rand/v2"

	"pocketllm-native/bindings"
)

// Shape fixes the sizes of a meta network.
type Shape struct {
	E      int // sub-vectors per weight row
	Dim    int // sub-vector length d
	Latent int // latent size dz
	Hidden int // MLP hidden width h
	K      int // codebook entries
	// Skip adds identity paths around the first encoder MLP and the last
	// decoder MLP (z0 = x + E0(x), x_hat = y0 + D0(y3)) and drops the
	// encoder's final norm (Ne3 goes unused), so that with the residual
	// branches' output layers at zero the network is the identity and
	// training starts from plain vector quantisation (see InitSkip). It
	// needs Latent == Dim. Beyond the paper; METHOD.md's network has none.
	Skip bool
}

// Validate reports an impossible shape.
func (s Shape) Validate() error {
	switch {
	case s.E <= 0, s.Dim <= 0, s.Latent <= 0, s.Hidden <= 0:
		return fmt.Errorf("meta network shape %+v: every size must be positive", s)
	case s.K < 1 || s.K > 1<<24:
		return fmt.Errorf("meta network shape: codebook size %d outside [1, 2^24]", s.K)
	case s.Skip && s.Latent != s.Dim:
		return fmt.Errorf("meta network shape: identity paths need the latent size (%d) to equal the sub-vector length (%d)", s.Latent, s.Dim)
	}
	return nil
}

// Width is the RLN width, E*Latent.
func (s Shape) Width() int { return s.E * s.Latent }

// EncoderParams is the number of encoder values: E0 | Ne1 | E1 | Ne2 | E2 | Ne3.
func (s Shape) EncoderParams() int {
	return bindings.MLPParams(s.Dim, s.Hidden, s.Latent) + 2*bindings.MLPParams(s.Latent, s.Hidden, s.Latent) + 3*2*s.Width()
}

// DecoderParams is the number of decoder values (bindings.Decoder's layout).
func (s Shape) DecoderParams() int {
	return bindings.DecoderParams(s.E, s.Dim, s.Latent, s.Hidden)
}

// NumParams is the length of a parameter vector: encoder | decoder | codebook.
func (s Shape) NumParams() int { return s.EncoderParams() + s.DecoderParams() + s.K*s.Latent }

// Views are the blocks of one parameter (or gradient) vector.
type Views struct {
	E0, E1, E2    bindings.MLP
	Ne1, Ne2, Ne3 bindings.RLN
	Decoder       bindings.Decoder
	Codebook      []float32 // [K, Latent]
}

// ViewsOf slices p (of length s.NumParams()) into its blocks.
func (s Shape) ViewsOf(p []float32) Views {
	if len(p) != s.NumParams() {
		panic(fmt.Sprintf("metanet: parameter vector of %d values for a shape that needs %d", len(p), s.NumParams()))
	}
	take := func(k int) []float32 { b := p[:k:k]; p = p[k:]; return b }
	mlp := func(in, out int) bindings.MLP {
		m := bindings.MLP{In: in, Hidden: s.Hidden, Out: out}
		m.P = take(m.NumParams())
		return m
	}
	rln := func() bindings.RLN { return bindings.RLN{Width: s.Width(), P: take(2 * s.Width())} }
	var v Views
	v.E0 = mlp(s.Dim, s.Latent)
	v.Ne1 = rln()
	v.E1 = mlp(s.Latent, s.Latent)
	v.Ne2 = rln()
	v.E2 = mlp(s.Latent, s.Latent)
	v.Ne3 = rln()
	v.Decoder = bindings.Decoder{E: s.E, Dim: s.Dim, Latent: s.Latent, Hidden: s.Hidden, P: take(s.DecoderParams())}
	v.Codebook = take(s.K * s.Latent)
	return v
}

// Init returns a freshly initialised parameter vector: every linear layer as
// PyTorch initialises nn.Linear (weights and biases uniform in ±1/sqrt(fan_in)),
// RLN scales 1 and shifts 0, and the codebook normal with mean 0 and standard
// deviation 2/sqrt(Latent) (METHOD.md section 3).
func Init(s Shape, rng *rand.Rand) []float32 {
	p := make([]float32, s.NumParams())
	v := s.ViewsOf(p)
	initMLP := func(m bindings.MLP) {
		uniform(m.W1(), m.In, rng)
		uniform(m.B1(), m.In, rng)
		uniform(m.W2(), m.Hidden, rng)
		uniform(m.B2(), m.Hidden, rng)
	}
	initRLN := func(n bindings.RLN) {
		for i := range n.Gamma() {
			n.Gamma()[i] = 1
		}
	}
	n1, d1, n2, d2, n3, d0 := v.Decoder.Parts()
	for _, m := range []bindings.MLP{v.E0, v.E1, v.E2, d1, d2, d0} {
		initMLP(m)
	}
	for _, n := range []bindings.RLN{v.Ne1, v.Ne2, v.Ne3, n1, n2, n3} {
		initRLN(n)
	}
	std := 2 / math.Sqrt(float64(s.Latent))
	for i := range v.Codebook {
		v.Codebook[i] = float32(rng.NormFloat64() * std)
	}
	return p
}

func uniform(dst []float32, fanIn int, rng *rand.Rand) {
	b := 1 / math.Sqrt(float64(fanIn))
	for i := range dst {
		dst[i] = float32((2*rng.Float64() - 1) * b)
	}
}

// InitSkip returns a parameter vector for a Skip shape that starts as the
// identity: Init's values with the output layer (W2, B2) of every MLP set to
// zero, so every residual branch adds nothing: z = x and x_hat = y0 = C[idx].
// The codebook is left for the caller to fill (k-means on the latents).
func InitSkip(s Shape, rng *rand.Rand) []float32 {
	p := Init(s, rng)
	v := s.ViewsOf(p)
	_, d1, _, d2, _, d0 := v.Decoder.Parts()
	for _, m := range []bindings.MLP{v.E0, v.E1, v.E2, d1, d2, d0} {
		clear(m.W2())
		clear(m.B2())
	}
	return p
}
