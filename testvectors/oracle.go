package testvectors

import (
	"fmt"
	"math"
)

// The oracle is a second, independent statement of every kernel in
// bindings: plain float64 loops written from METHOD.md and the Kernels doc
// comments, sharing no code with any backend, so that a bug in one is not
// copied into the other. It is slow on purpose; clarity is the point.
//
// Parameter layouts are parsed here with their own offsets (mlpLayout,
// rlnLayout) rather than with the bindings accessors, for the same reason.

// Gelu is the tanh form of GELU that every backend uses.
func Gelu(a float64) float64 {
	const c = 0.7978845608028654 // sqrt(2/pi)
	return 0.5 * a * (1 + math.Tanh(c*(a+0.044715*a*a*a)))
}

// GeluGrad is d Gelu(a) / da.
func GeluGrad(a float64) float64 {
	const c = 0.7978845608028654
	u := c * (a + 0.044715*a*a*a)
	t := math.Tanh(u)
	du := c * (1 + 3*0.044715*a*a)
	return 0.5*(1+t) + 0.5*a*(1-t*t)*du
}

// RLNEps is the LayerNorm epsilon of METHOD.md section 2.
const RLNEps = 1e-5

// mlpLayout holds the offsets of W1 | B1 | W2 | B2 inside one MLP's
// parameters.
type mlpLayout struct {
	in, hidden, out    int
	w1, b1, w2, b2, np int
}

func newMLPLayout(in, hidden, out int) mlpLayout {
	l := mlpLayout{in: in, hidden: hidden, out: out}
	l.w1 = 0
	l.b1 = l.w1 + hidden*in
	l.w2 = l.b1 + hidden
	l.b2 = l.w2 + out*hidden
	l.np = l.b2 + out
	return l
}

// MLPSize is the number of parameters of an MLP in -> hidden -> out.
func MLPSize(in, hidden, out int) int { return newMLPLayout(in, hidden, out).np }

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// SqDist is the squared distance between row i of z and row j of c, both of
// width dz, in float64.
func SqDist(z []float32, i int, c []float32, j, dz int) float64 {
	s := 0.0
	for t := 0; t < dz; t++ {
		d := float64(z[i*dz+t]) - float64(c[j*dz+t])
		s += d * d
	}
	return s
}

// Assign returns, for each of the n latents, the nearest of the k codewords
// (ties to the lowest index) and its squared distance.
func Assign(z []float32, n, dz int, c []float32, k int) ([]int32, []float64) {
	idx := make([]int32, n)
	dist := make([]float64, n)
	for i := 0; i < n; i++ {
		best, bestD := -1, math.Inf(1)
		for j := 0; j < k; j++ {
			if d := SqDist(z, i, c, j, dz); d < bestD {
				best, bestD = j, d
			}
		}
		idx[i], dist[i] = int32(best), bestD
	}
	return idx, dist
}

// CodebookStats returns the per-codeword sums of assigned latents and their
// counts; an index outside the codebook is an error.
func CodebookStats(z []float32, n, dz int, idx []int32, k int) ([]float64, []int64, error) {
	sums := make([]float64, k*dz)
	counts := make([]int64, k)
	for i := 0; i < n; i++ {
		j := int(idx[i])
		if j < 0 || j >= k {
			return nil, nil, fmt.Errorf("index %d of latent %d is outside the codebook of %d", j, i, k)
		}
		counts[j]++
		for t := 0; t < dz; t++ {
			sums[j*dz+t] += float64(z[i*dz+t])
		}
	}
	return sums, counts, nil
}

// MLPForward runs y = W2 gelu(W1 x + B1) + B2 over rows inputs and returns
// the hidden pre-activations and the outputs.
func MLPForward(p []float32, in, hidden, out int, x []float32, rows int) (pre, y []float64) {
	return mlpForward64(newMLPLayout(in, hidden, out), f64(p), f64(x), rows)
}

func mlpForward64(l mlpLayout, p, x []float64, rows int) (pre, y []float64) {
	pre = make([]float64, rows*l.hidden)
	y = make([]float64, rows*l.out)
	for r := 0; r < rows; r++ {
		for u := 0; u < l.hidden; u++ {
			s := p[l.b1+u]
			for i := 0; i < l.in; i++ {
				s += p[l.w1+u*l.in+i] * x[r*l.in+i]
			}
			pre[r*l.hidden+u] = s
		}
		for o := 0; o < l.out; o++ {
			s := p[l.b2+o]
			for u := 0; u < l.hidden; u++ {
				s += p[l.w2+o*l.hidden+u] * Gelu(pre[r*l.hidden+u])
			}
			y[r*l.out+o] = s
		}
	}
	return pre, y
}

// MLPBackward returns the gradient of sum(dy * MLPForward(x)) with respect
// to the parameters (layout W1 | B1 | W2 | B2) and to x.
func MLPBackward(p []float32, in, hidden, out int, x, dy []float32, rows int) (g, dx []float64) {
	return mlpBackward64(newMLPLayout(in, hidden, out), f64(p), f64(x), f64(dy), rows)
}

func mlpBackward64(l mlpLayout, p, x, dy []float64, rows int) (g, dx []float64) {
	pre, _ := mlpForward64(l, p, x, rows)
	g = make([]float64, l.np)
	dx = make([]float64, rows*l.in)
	for r := 0; r < rows; r++ {
		for o := 0; o < l.out; o++ {
			d := dy[r*l.out+o]
			g[l.b2+o] += d
			for u := 0; u < l.hidden; u++ {
				g[l.w2+o*l.hidden+u] += d * Gelu(pre[r*l.hidden+u])
			}
		}
		for u := 0; u < l.hidden; u++ {
			da := 0.0
			for o := 0; o < l.out; o++ {
				da += dy[r*l.out+o] * p[l.w2+o*l.hidden+u]
			}
			dp := da * GeluGrad(pre[r*l.hidden+u])
			g[l.b1+u] += dp
			for i := 0; i < l.in; i++ {
				g[l.w1+u*l.in+i] += dp * x[r*l.in+i]
				dx[r*l.in+i] += dp * p[l.w1+u*l.in+i]
			}
		}
	}
	return g, dx
}

// RLNForward normalises each of groups rows of width values with the scale
// p[:width] and shift p[width:2*width], returning y, the row means and the
// reciprocal standard deviations.
func RLNForward(p []float32, width int, x []float32, groups int) (y, mean, rstd []float64) {
	return rlnForward64(f64(p), width, f64(x), groups)
}

func rlnForward64(p []float64, width int, x []float64, groups int) (y, mean, rstd []float64) {
	y = make([]float64, groups*width)
	mean = make([]float64, groups)
	rstd = make([]float64, groups)
	for r := 0; r < groups; r++ {
		row := x[r*width : (r+1)*width]
		m := 0.0
		for _, v := range row {
			m += v
		}
		m /= float64(width)
		vr := 0.0
		for _, v := range row {
			vr += (v - m) * (v - m)
		}
		vr /= float64(width)
		s := 1 / math.Sqrt(vr+RLNEps)
		mean[r], rstd[r] = m, s
		for w, v := range row {
			y[r*width+w] = (v-m)*s*p[w] + p[width+w]
		}
	}
	return y, mean, rstd
}

// RLNBackward returns the gradient of sum(dy * RLNForward(x)) with respect
// to the parameters (Gamma | Beta) and to x. It is derived here from the
// chain rule through mean and variance directly, not from the compact
// formula the kernels use, so the two statements check each other.
func RLNBackward(p []float32, width int, x, dy []float32, groups int) (g, dx []float64) {
	return rlnBackward64(f64(p), width, f64(x), f64(dy), groups)
}

func rlnBackward64(p []float64, width int, x, dy []float64, groups int) (g, dx []float64) {
	_, mean, rstd := rlnForward64(p, width, x, groups)
	g = make([]float64, 2*width)
	dx = make([]float64, groups*width)
	n := float64(width)
	for r := 0; r < groups; r++ {
		m, s := mean[r], rstd[r]
		// y_w = (x_w - m) s gamma_w + beta_w with m = mean(x) and
		// s = (var(x) + eps)^(-1/2), var = mean((x-m)^2).
		// dL/ds = sum_w dy_w gamma_w (x_w - m)
		// ds/dx_k = -s^3 (x_k - m) / n   (the mean term vanishes: sum(x-m) = 0)
		// dL/dm (explicit) = -s sum_w dy_w gamma_w
		dLds, dLdm := 0.0, 0.0
		for w := 0; w < width; w++ {
			xc := x[r*width+w] - m
			d := dy[r*width+w]
			g[w] += d * xc * s
			g[width+w] += d
			dLds += d * p[w] * xc
			dLdm -= d * p[w] * s
		}
		for k := 0; k < width; k++ {
			xc := x[r*width+k] - m
			dx[r*width+k] = dy[r*width+k]*p[k]*s + dLds*(-s*s*s*xc/n) + dLdm/n
		}
	}
	return g, dx
}

// Adam takes one bias-corrected Adam step and returns the new parameters and
// moments.
func Adam(p, g, m, v []float32, lr, b1, b2, eps float64, step int) (p2, m2, v2 []float64) {
	p2, m2, v2 = f64(p), f64(m), f64(v)
	adam64(p2, f64(g), m2, v2, lr, b1, b2, eps, step)
	return p2, m2, v2
}

// adam64 is Adam on float64 state, updated in place.
func adam64(p, g, m, v []float64, lr, b1, b2, eps float64, step int) {
	c1 := 1 - math.Pow(b1, float64(step))
	c2 := 1 - math.Pow(b2, float64(step))
	for i := range p {
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		p[i] -= lr * (m[i] / c1) / (math.Sqrt(v[i]/c2) + eps)
	}
}

// decoderLayout holds the offsets of N1 | D1 | N2 | D2 | N3 | D0 inside a
// decoder's parameters.
type decoderLayout struct {
	e, dim, latent, hidden int
	skip                   bool // identity path from y0 to the output (needs latent == dim)
	n1, d1, n2, d2, n3, d0 int
	np                     int
	mlpLat, mlpOut         mlpLayout
}

func newDecoderLayout(e, dim, latent, hidden int) decoderLayout {
	l := decoderLayout{e: e, dim: dim, latent: latent, hidden: hidden}
	l.mlpLat = newMLPLayout(latent, hidden, latent)
	l.mlpOut = newMLPLayout(latent, hidden, dim)
	rln := 2 * e * latent
	l.n1 = 0
	l.d1 = l.n1 + rln
	l.n2 = l.d1 + l.mlpLat.np
	l.d2 = l.n2 + rln
	l.n3 = l.d2 + l.mlpLat.np
	l.d0 = l.n3 + rln
	l.np = l.d0 + l.mlpOut.np
	return l
}

// DecoderSize is the number of decoder parameters.
func DecoderSize(e, dim, latent, hidden int) int { return newDecoderLayout(e, dim, latent, hidden).np }

// Decode reconstructs rows weight rows from codeword indices with the
// decoder of METHOD.md section 2 (parameters N1 | D1 | N2 | D2 | N3 | D0).
// It returns the [rows, e*dim] output before the matrix scale.
func Decode(p []float32, e, dim, latent, hidden int, c []float32, k int, idx []int32, rows int) ([]float64, error) {
	y0, err := gather(c, k, latent, idx, rows*e)
	if err != nil {
		return nil, err
	}
	out, _ := decoderForward64(newDecoderLayout(e, dim, latent, hidden), f64(p), y0, rows)
	return out, nil
}

func gather(c []float32, k, latent int, idx []int32, n int) ([]float64, error) {
	y := make([]float64, n*latent)
	for i := 0; i < n; i++ {
		j := int(idx[i])
		if j < 0 || j >= k {
			return nil, fmt.Errorf("index %d at position %d is outside the codebook of %d", j, i, k)
		}
		for t := 0; t < latent; t++ {
			y[i*latent+t] = float64(c[j*latent+t])
		}
	}
	return y, nil
}

// decoderTape keeps what the decoder's backward pass needs.
type decoderTape struct {
	y0, a1, m1, y1, a2, m2, s2, y2 []float64
}

// The skip forms (compress/metanet's Shape.Skip, beyond the paper) add
// identity paths: the decoder's output gains y0 (x_hat = y0 + D0(y3)), the
// encoder's first block gains x (z0 = x + E0(x)) and its final norm N3 is
// left out (z = s2; N3's parameters get no gradient).

func decoderForward64(l decoderLayout, p, y0 []float64, rows int) ([]float64, decoderTape) {
	w := l.e * l.latent
	n := rows * l.e
	t := decoderTape{y0: y0}
	t.a1, _, _ = rlnForward64(p[l.n1:l.d1], w, y0, rows)
	_, t.m1 = mlpForward64(l.mlpLat, p[l.d1:l.n2], t.a1, n)
	t.y1 = add(y0, t.m1)
	t.a2, _, _ = rlnForward64(p[l.n2:l.d2], w, t.y1, rows)
	_, t.m2 = mlpForward64(l.mlpLat, p[l.d2:l.n3], t.a2, n)
	t.s2 = add(t.y1, t.m2)
	t.y2, _, _ = rlnForward64(p[l.n3:l.d0], w, t.s2, rows)
	_, out := mlpForward64(l.mlpOut, p[l.d0:l.np], t.y2, n)
	if l.skip {
		out = add(out, y0)
	}
	return out, t
}

func add(a, b []float64) []float64 {
	c := make([]float64, len(a))
	for i := range a {
		c[i] = a[i] + b[i]
	}
	return c
}

// DecoderBackward returns the gradient of sum(dout * decoder(y0)) with
// respect to the decoder parameters (N1 | D1 | N2 | D2 | N3 | D0) and to
// the gathered codewords y0 ([rows*e, latent]), which the straight-through
// estimator hands to the latents.
func DecoderBackward(p []float32, e, dim, latent, hidden int, y0, dout []float32, rows int) (g, dy0 []float64) {
	l := newDecoderLayout(e, dim, latent, hidden)
	pp := f64(p)
	_, t := decoderForward64(l, pp, f64(y0), rows)
	return decoderBackward64(l, pp, t, f64(dout), rows)
}

func decoderBackward64(l decoderLayout, pp []float64, t decoderTape, dout []float64, rows int) (g, dy0 []float64) {
	w := l.e * l.latent
	n := rows * l.e
	g = make([]float64, l.np)
	gd0, dy2 := mlpBackward64(l.mlpOut, pp[l.d0:l.np], t.y2, dout, n)
	copy(g[l.d0:], gd0)
	gn3, ds2 := rlnBackward64(pp[l.n3:l.d0], w, t.s2, dy2, rows)
	copy(g[l.n3:], gn3)
	gd2, da2 := mlpBackward64(l.mlpLat, pp[l.d2:l.n3], t.a2, ds2, n)
	copy(g[l.d2:], gd2)
	gn2, dy1 := rlnBackward64(pp[l.n2:l.d2], w, t.y1, da2, rows)
	copy(g[l.n2:], gn2)
	dy1 = add(dy1, ds2)
	gd1, da1 := mlpBackward64(l.mlpLat, pp[l.d1:l.n2], t.a1, dy1, n)
	copy(g[l.d1:], gd1)
	gn1, dy0r := rlnBackward64(pp[l.n1:l.d1], w, t.y0, da1, rows)
	copy(g[l.n1:], gn1)
	dy0 = add(dy0r, dy1)
	if l.skip {
		dy0 = add(dy0, dout)
	}
	return g, dy0
}

// encoderLayout holds the offsets of E0 | N1 | E1 | N2 | E2 | N3 inside an
// encoder's parameters (the order the encoder uses them).
type encoderLayout struct {
	e, dim, latent, hidden int
	skip                   bool // identity path around E0, no final norm (needs latent == dim)
	e0, n1, e1, n2, e2, n3 int
	np                     int
	mlpIn, mlpLat          mlpLayout
}

func newEncoderLayout(e, dim, latent, hidden int) encoderLayout {
	l := encoderLayout{e: e, dim: dim, latent: latent, hidden: hidden}
	l.mlpIn = newMLPLayout(dim, hidden, latent)
	l.mlpLat = newMLPLayout(latent, hidden, latent)
	rln := 2 * e * latent
	l.e0 = 0
	l.n1 = l.e0 + l.mlpIn.np
	l.e1 = l.n1 + rln
	l.n2 = l.e1 + l.mlpLat.np
	l.e2 = l.n2 + rln
	l.n3 = l.e2 + l.mlpLat.np
	l.np = l.n3 + rln
	return l
}

// EncoderSize is the number of encoder parameters.
func EncoderSize(e, dim, latent, hidden int) int { return newEncoderLayout(e, dim, latent, hidden).np }

type encoderTape struct {
	x, z0, a1, m1, z1, a2, m2, s2 []float64
}

func encoderForward64(l encoderLayout, p, x []float64, rows int) ([]float64, encoderTape) {
	w := l.e * l.latent
	n := rows * l.e
	t := encoderTape{x: x}
	_, t.z0 = mlpForward64(l.mlpIn, p[l.e0:l.n1], x, n)
	if l.skip {
		t.z0 = add(t.z0, x)
	}
	t.a1, _, _ = rlnForward64(p[l.n1:l.e1], w, t.z0, rows)
	_, t.m1 = mlpForward64(l.mlpLat, p[l.e1:l.n2], t.a1, n)
	t.z1 = add(t.z0, t.m1)
	t.a2, _, _ = rlnForward64(p[l.n2:l.e2], w, t.z1, rows)
	_, t.m2 = mlpForward64(l.mlpLat, p[l.e2:l.n3], t.a2, n)
	t.s2 = add(t.z1, t.m2)
	if l.skip {
		return t.s2, t
	}
	z, _, _ := rlnForward64(p[l.n3:l.np], w, t.s2, rows)
	return z, t
}

// EncoderForward runs the encoder of METHOD.md section 2 with parameters
// E0 | N1 | E1 | N2 | E2 | N3:
//
//	z = E0(x); z = z + E1(N1(z)); z = N3(z + E2(N2(z)))
//
// over rows weight rows of e sub-vectors of dim values.
func EncoderForward(p []float32, e, dim, latent, hidden int, x []float32, rows int) []float64 {
	z, _ := encoderForward64(newEncoderLayout(e, dim, latent, hidden), f64(p), f64(x), rows)
	return z
}

// EncoderBackward returns the gradient of sum(dz * EncoderForward(x)) with
// respect to the encoder parameters and to x.
func EncoderBackward(p []float32, e, dim, latent, hidden int, x, dz []float32, rows int) (g, dx []float64) {
	l := newEncoderLayout(e, dim, latent, hidden)
	pp := f64(p)
	_, t := encoderForward64(l, pp, f64(x), rows)
	return encoderBackward64(l, pp, t, f64(dz), rows)
}

func encoderBackward64(l encoderLayout, pp []float64, t encoderTape, dz []float64, rows int) (g, dx []float64) {
	w := l.e * l.latent
	n := rows * l.e
	g = make([]float64, l.np)
	ds2 := dz
	if !l.skip {
		var gn3 []float64
		gn3, ds2 = rlnBackward64(pp[l.n3:l.np], w, t.s2, dz, rows)
		copy(g[l.n3:], gn3)
	}
	ge2, da2 := mlpBackward64(l.mlpLat, pp[l.e2:l.n3], t.a2, ds2, n)
	copy(g[l.e2:], ge2)
	gn2, dz1 := rlnBackward64(pp[l.n2:l.e2], w, t.z1, da2, rows)
	copy(g[l.n2:], gn2)
	dz1 = add(dz1, ds2)
	ge1, da1 := mlpBackward64(l.mlpLat, pp[l.e1:l.n2], t.a1, dz1, n)
	copy(g[l.e1:], ge1)
	gn1, dz0 := rlnBackward64(pp[l.n1:l.e1], w, t.z0, da1, rows)
	copy(g[l.n1:], gn1)
	dz0 = add(dz0, dz1)
	ge0, dx := mlpBackward64(l.mlpIn, pp[l.e0:l.n1], t.x, dz0, n)
	copy(g[l.e0:], ge0)
	if l.skip {
		dx = add(dx, dz0)
	}
	return g, dx
}

// Gemm is alpha*op(A)*op(B) + beta*C in float64, written from the Kernels
// doc comment: op(A) is [m,k] (A stored [k,m] when transA), op(B) is [k,n]
// (B stored [n,k] when transB), all row-major. With beta == 0, C is not
// read (it may be nil).
func Gemm(transA, transB bool, m, n, k int, alpha float64, a, b []float32, beta float64, c []float32) []float64 {
	opA := func(i, t int) float64 {
		if transA {
			return float64(a[t*m+i])
		}
		return float64(a[i*k+t])
	}
	opB := func(t, j int) float64 {
		if transB {
			return float64(b[j*k+t])
		}
		return float64(b[t*n+j])
	}
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for t := 0; t < k; t++ {
				s += opA(i, t) * opB(t, j)
			}
			out[i*n+j] = alpha * s
			if beta != 0 {
				out[i*n+j] += beta * float64(c[i*n+j])
			}
		}
	}
	return out
}
