package bindings_test

import (
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/testvectors"
)

// The encoder and decoder of METHOD.md section 2, composed from the kernels
// the way training composes them, forward and backward. The golden
// "encoder" and "decoder" vectors check the composition end to end.

type netShape struct{ e, dim, latent, hidden, rows int }

func netShapeOf(c testvectors.Case) netShape {
	return netShape{c.Int("e"), c.Int("dim"), c.Int("latent"), c.Int("hidden"), c.Int("rows")}
}

func (s netShape) n() int { return s.rows * s.e }
func (s netShape) w() int { return s.e * s.latent }

// take cuts p into consecutive blocks of the given sizes.
func take(p []float32, sizes ...int) [][]float32 {
	var out [][]float32
	for _, n := range sizes {
		out = append(out, p[:n:n])
		p = p[n:]
	}
	return out
}

func addInto(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}

func plus(a, b []float32) []float32 {
	c := make([]float32, len(a))
	for i := range a {
		c[i] = a[i] + b[i]
	}
	return c
}

// block is one MLP or RLN application kept for the backward pass.
type mlpStep struct {
	m      bindings.MLP
	x, pre []float32
}

type rlnStep struct {
	n          bindings.RLN
	x          []float32
	mean, rstd []float32
}

func mlpFwd(t *testing.T, k bindings.Kernels, m bindings.MLP, x []float32, rows int) ([]float32, mlpStep) {
	t.Helper()
	pre, y := runMLPForward(t, k, m, x, rows)
	return y, mlpStep{m, x, pre}
}

func rlnFwd(t *testing.T, k bindings.Kernels, n bindings.RLN, x []float32, groups int) ([]float32, rlnStep) {
	t.Helper()
	y, mean, rstd := runRLNForward(t, k, n, x, groups)
	return y, rlnStep{n, x, mean, rstd}
}

// mlpBwd returns the parameter gradient (accumulated into zeros) and dx.
func mlpBwd(t *testing.T, k bindings.Kernels, s mlpStep, dy []float32, rows int) (g, dx []float32) {
	t.Helper()
	return runMLPBackward(t, k, s.m, make([]float32, s.m.NumParams()), s.x, s.pre, dy, rows, true)
}

func rlnBwd(t *testing.T, k bindings.Kernels, s rlnStep, dy []float32, groups int) (g, dx []float32) {
	t.Helper()
	return runRLNBackward(t, k, s.n, make([]float32, 2*s.n.Width), s.x, dy, groups, s.mean, s.rstd)
}

type encoderTape struct {
	s          netShape
	e0, e1, e2 mlpStep
	n1, n2, n3 rlnStep
}

// encoderParts views p as E0 | N1 | E1 | N2 | E2 | N3.
func encoderParts(s netShape, p []float32) (e0 bindings.MLP, n1 bindings.RLN, e1 bindings.MLP, n2 bindings.RLN, e2 bindings.MLP, n3 bindings.RLN) {
	in := bindings.MLPParams(s.dim, s.hidden, s.latent)
	lat := bindings.MLPParams(s.latent, s.hidden, s.latent)
	r := 2 * s.w()
	b := take(p, in, r, lat, r, lat, r)
	return mlpOf(s.dim, s.hidden, s.latent, b[0]), bindings.RLN{Width: s.w(), P: b[1]},
		mlpOf(s.latent, s.hidden, s.latent, b[2]), bindings.RLN{Width: s.w(), P: b[3]},
		mlpOf(s.latent, s.hidden, s.latent, b[4]), bindings.RLN{Width: s.w(), P: b[5]}
}

func encoderForward(t *testing.T, k bindings.Kernels, s netShape, p, x []float32) ([]float32, encoderTape) {
	t.Helper()
	e0, n1, e1, n2, e2, n3 := encoderParts(s, p)
	tp := encoderTape{s: s}
	z0, st := mlpFwd(t, k, e0, x, s.n())
	tp.e0 = st
	a1, rs := rlnFwd(t, k, n1, z0, s.rows)
	tp.n1 = rs
	m1, st := mlpFwd(t, k, e1, a1, s.n())
	tp.e1 = st
	z1 := plus(z0, m1)
	a2, rs := rlnFwd(t, k, n2, z1, s.rows)
	tp.n2 = rs
	m2, st := mlpFwd(t, k, e2, a2, s.n())
	tp.e2 = st
	z, rs := rlnFwd(t, k, n3, plus(z1, m2), s.rows)
	tp.n3 = rs
	return z, tp
}

func encoderBackward(t *testing.T, k bindings.Kernels, s netShape, p []float32, tp encoderTape, dz []float32) (g, dx []float32) {
	t.Helper()
	gn3, ds2 := rlnBwd(t, k, tp.n3, dz, s.rows)
	ge2, da2 := mlpBwd(t, k, tp.e2, ds2, s.n())
	gn2, dz1 := rlnBwd(t, k, tp.n2, da2, s.rows)
	addInto(dz1, ds2)
	ge1, da1 := mlpBwd(t, k, tp.e1, dz1, s.n())
	gn1, dz0 := rlnBwd(t, k, tp.n1, da1, s.rows)
	addInto(dz0, dz1)
	ge0, dx := mlpBwd(t, k, tp.e0, dz0, s.n())
	for _, b := range [][]float32{ge0, gn1, ge1, gn2, ge2, gn3} {
		g = append(g, b...)
	}
	return g, dx
}

type decoderTape struct {
	s          netShape
	n1, n2, n3 rlnStep
	d1, d2, d0 mlpStep
}

func decoderForward(t *testing.T, k bindings.Kernels, s netShape, p, y0 []float32) ([]float32, decoderTape) {
	t.Helper()
	dec := bindings.Decoder{E: s.e, Dim: s.dim, Latent: s.latent, Hidden: s.hidden, P: p}
	n1, d1, n2, d2, n3, d0 := dec.Parts()
	tp := decoderTape{s: s}
	a1, rs := rlnFwd(t, k, n1, y0, s.rows)
	tp.n1 = rs
	m1, st := mlpFwd(t, k, d1, a1, s.n())
	tp.d1 = st
	y1 := plus(y0, m1)
	a2, rs := rlnFwd(t, k, n2, y1, s.rows)
	tp.n2 = rs
	m2, st := mlpFwd(t, k, d2, a2, s.n())
	tp.d2 = st
	y2, rs := rlnFwd(t, k, n3, plus(y1, m2), s.rows)
	tp.n3 = rs
	out, st := mlpFwd(t, k, d0, y2, s.n())
	tp.d0 = st
	return out, tp
}

func decoderBackward(t *testing.T, k bindings.Kernels, s netShape, p []float32, tp decoderTape, dout []float32) (g, dy0 []float32) {
	t.Helper()
	gd0, dy2 := mlpBwd(t, k, tp.d0, dout, s.n())
	gn3, ds2 := rlnBwd(t, k, tp.n3, dy2, s.rows)
	gd2, da2 := mlpBwd(t, k, tp.d2, ds2, s.n())
	gn2, dy1 := rlnBwd(t, k, tp.n2, da2, s.rows)
	addInto(dy1, ds2)
	gd1, da1 := mlpBwd(t, k, tp.d1, dy1, s.n())
	gn1, dy0 := rlnBwd(t, k, tp.n1, da1, s.rows)
	addInto(dy0, dy1)
	for _, b := range [][]float32{gn1, gd1, gn2, gd2, gn3, gd0} {
		g = append(g, b...)
	}
	return g, dy0
}
