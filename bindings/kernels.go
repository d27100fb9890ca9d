// Package bindings holds the hot loops of PocketLLM compression behind one
// interface, Kernels, and chooses an implementation at run time: the CUDA
// library, the native CPU library, or the pure-Go kernels in this package,
// which are always compiled and define the semantics every backend must equal.
//
// Every call works on whole buffers (a batch of sub-vectors, a whole
// codebook), never on one vector, so that a native or GPU backend pays its
// call overhead once per batch. All matrices are row-major float32.
package bindings

// MLP is one two-layer perceptron, In -> Hidden -> Out, with GELU between:
//
//	y = W2 · gelu(W1 · x + B1) + B2,  W1 is [Hidden, In], W2 is [Out, Hidden].
//
// P holds W1 | B1 | W2 | B2 contiguously (NumParams values), usually as a view
// into a flat parameter (or gradient) vector, so one Adam call updates a whole
// network and a native call takes one pointer per MLP.
type MLP struct {
	In, Hidden, Out int
	P               []float32
}

// MLPParams is the number of values an MLP of this shape holds.
func MLPParams(in, hidden, out int) int { return hidden*in + hidden + out*hidden + out }

// NumParams is the number of values m holds.
func (m MLP) NumParams() int { return MLPParams(m.In, m.Hidden, m.Out) }

// W1 is the first layer's [Hidden, In] weight matrix.
func (m MLP) W1() []float32 { return m.P[:m.Hidden*m.In] }

// B1 is the first layer's bias.
func (m MLP) B1() []float32 { o := m.Hidden * m.In; return m.P[o : o+m.Hidden] }

// W2 is the second layer's [Out, Hidden] weight matrix.
func (m MLP) W2() []float32 { o := m.Hidden*m.In + m.Hidden; return m.P[o : o+m.Out*m.Hidden] }

// B2 is the second layer's bias.
func (m MLP) B2() []float32 { o := m.Hidden*m.In + m.Hidden + m.Out*m.Hidden; return m.P[o : o+m.Out] }

// RLN is a reshaped layer norm: the activations of one weight row (E
// sub-vectors of C values each, Width = E*C) are normalised together, with a
// learned scale and shift per position in the row. P holds Gamma | Beta.
type RLN struct {
	Width int
	P     []float32
}

// Gamma is the per-position scale.
func (n RLN) Gamma() []float32 { return n.P[:n.Width] }

// Beta is the per-position shift.
func (n RLN) Beta() []float32 { return n.P[n.Width : 2*n.Width] }

// RLNEps is the LayerNorm epsilon used everywhere (METHOD.md section 2).
const RLNEps = 1e-5

// Decoder is everything reconstruction needs besides the codebook and the
// indices: METHOD.md section 2,
//
//	y = C[idx]
//	y = y + D1(N1(y))
//	y = N3(y + D2(N2(y)))
//	x = D0(y)
//
// where N1, N2, N3 are RLNs of width E*Latent, D1 and D2 are Latent -> Hidden
// -> Latent MLPs and D0 is Latent -> Hidden -> Dim. P holds the parameters in
// the canonical order N1 | D1 | N2 | D2 | N3 | D0 (the order they are used),
// which is also the order the .pllm container stores and the C ABI takes.
type Decoder struct {
	E, Dim, Latent, Hidden int // sub-vectors per row, sub-vector length, latent and hidden sizes
	P                      []float32
}

// DecoderParams is the number of values a decoder of this shape holds.
func DecoderParams(e, dim, latent, hidden int) int {
	return 3*2*e*latent + 2*MLPParams(latent, hidden, latent) + MLPParams(latent, hidden, dim)
}

// Parts returns views of P as the six blocks, in use order.
func (d Decoder) Parts() (n1 RLN, d1 MLP, n2 RLN, d2 MLP, n3 RLN, d0 MLP) {
	w := d.E * d.Latent
	p := d.P
	take := func(k int) []float32 { s := p[:k:k]; p = p[k:]; return s }
	n1 = RLN{Width: w, P: take(2 * w)}
	d1 = MLP{In: d.Latent, Hidden: d.Hidden, Out: d.Latent}
	d1.P = take(d1.NumParams())
	n2 = RLN{Width: w, P: take(2 * w)}
	d2 = MLP{In: d.Latent, Hidden: d.Hidden, Out: d.Latent}
	d2.P = take(d2.NumParams())
	n3 = RLN{Width: w, P: take(2 * w)}
	d0 = MLP{In: d.Latent, Hidden: d.Hidden, Out: d.Dim}
	d0.P = take(d0.NumParams())
	return
}

// ReduceBlock is the number of rows whose contributions are summed together
// before they are added, block by block in row order, to an accumulated
// gradient. Fixing it (instead of splitting by the number of threads) makes
// every reduction give the same bytes on any machine for a given backend.
const ReduceBlock = 256

// Kernels is the set of hot loops. Implementations must be safe for use by
// one goroutine at a time; they may use many threads inside a call.
//
// Each method's doc comment states the loop it must equal; a backend may
// reorder floating-point operations (tolerances in the conformance suite say
// by how much), but never change which elements are read or written.
type Kernels interface {
	// Name is "go", "cpu" or "cuda".
	Name() string

	// Assign finds the nearest codeword of each latent:
	//
	//	for i < n: idx[i] = argmin_j sum_t (z[i*dz+t] - c[j*dz+t])^2, ties to the lowest j
	//	           dist[i] = that minimum (dist may be nil)
	//
	// z is [n, dz], c is [k, dz].
	Assign(z []float32, n, dz int, c []float32, k int, idx []int32, dist []float32) error

	// CodebookStats sums the latents assigned to each codeword:
	//
	//	for j < k: counts[j] = #{i : idx[i] == j}
	//	           sums[j*dz+t] = sum over those i of z[i*dz+t]   (in float64)
	//
	// sums and counts are overwritten.
	CodebookStats(z []float32, n, dz int, idx []int32, k int, sums []float64, counts []int64) error

	// MLPForward runs an MLP over rows inputs and keeps the hidden
	// pre-activations for the backward pass:
	//
	//	pre[r*H+u] = B1[u] + sum_i W1[u*In+i] * x[r*In+i]
	//	y[r*Out+o] = B2[o] + sum_u W2[o*H+u] * gelu(pre[r*H+u])
	//
	// gelu is the tanh form: 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))).
	MLPForward(m MLP, x []float32, rows int, pre, y []float32) error

	// MLPBackward is the gradient of MLPForward. With a = gelu(pre):
	//
	//	gW2[o*H+u] += sum_r dy[r*Out+o] * a[r*H+u];   gB2[o] += sum_r dy[r*Out+o]
	//	da[r*H+u]   = sum_o dy[r*Out+o] * W2[o*H+u]
	//	dp[r*H+u]   = da[r*H+u] * gelu'(pre[r*H+u])
	//	gW1[u*In+i] += sum_r dp[r*H+u] * x[r*In+i];    gB1[u] += sum_r dp[r*H+u]
	//	dx[r*In+i]  = sum_u dp[r*H+u] * W1[u*In+i]     (overwritten; skipped if dx is nil)
	//
	// g has the shape of m and is accumulated into; sums over r are taken in
	// blocks of ReduceBlock rows.
	MLPBackward(m, g MLP, x, pre, dy []float32, rows int, dx []float32) error

	// RLNForward normalises each of groups rows of n.Width values:
	//
	//	mean[r] = sum_w x[r*W+w] / W
	//	rstd[r] = 1 / sqrt(sum_w (x[r*W+w]-mean[r])^2 / W + RLNEps)
	//	y[r*W+w] = (x[r*W+w]-mean[r]) * rstd[r] * Gamma[w] + Beta[w]
	RLNForward(n RLN, x []float32, groups int, y, mean, rstd []float32) error

	// RLNBackward is the gradient of RLNForward. With h = (x-mean)*rstd and
	// dh = dy*Gamma:
	//
	//	gGamma[w] += sum_r dy[r*W+w] * h[r*W+w];   gBeta[w] += sum_r dy[r*W+w]
	//	dx[r*W+w]   = rstd[r] * (dh[r*W+w] - mean_w(dh[r]) - h[r*W+w] * mean_w(dh[r]*h[r]))
	//
	// dx is overwritten; sums over r are taken in blocks of ReduceBlock rows.
	RLNBackward(n, g RLN, x, dy []float32, groups int, mean, rstd, dx []float32) error

	// Adam takes one bias-corrected Adam step (step counts from 1):
	//
	//	m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
	//	p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps)
	Adam(p, g, m, v []float32, lr, b1, b2, eps float32, step int) error

	// Decode reconstructs rows weight rows from their codeword indices with
	// the decoder (see Decoder): idx is [rows*E], out is [rows, E*Dim],
	// padding included and not yet multiplied by the matrix scale.
	Decode(dec Decoder, c []float32, idx []int32, rows int, out []float32) error

	// Gemm computes C = alpha*op(A)*op(B) + beta*C over row-major matrices:
	//
	//	op(A) is [m,k]: A stored [m,k], or with transA the transpose of A stored [k,m]
	//	op(B) is [k,n]: B stored [k,n], or with transB the transpose of B stored [n,k]
	//	for i < m, j < n: c[i*n+j] = alpha * sum_t opA[i,t]*opB[t,j] + beta*c[i*n+j]
	//
	// With beta == 0, C is overwritten and never read (NaN in C does not propagate).
	Gemm(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) error
}
