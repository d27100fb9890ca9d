package bindings

import "fmt"

// The pure-Go matrix product is blocked like a BLAS: C is cut into tiles of
// gemmMC x gemmNC, each computed by one goroutine; for each slice of
// gemmKC values of the inner dimension, the tile's part of op(A) is packed
// into panels of gemmMR rows and op(B)'s into panels of gemmNR columns (each
// panel contiguous in t, so the inner loop streams memory), and a register
// micro-kernel updates gemmMR x gemmNR accumulators. The accumulators of a
// tile live in a float32 buffer carried from one k-slice to the next, so
// every output is summed over t = 0, 1, ..., k-1 in order, exactly as the
// loop of the doc comment (each product rounded, then added): the result
// does not depend on the tile sizes, the number of goroutines or which
// goroutine ran which tile (gemm_test.go checks it bit for bit).
const (
	gemmMR = 2   // rows of a micro-tile (see gemmMicro)
	gemmNR = 4   // columns of a micro-tile
	gemmKC = 256 // inner-dimension slice: a packed A panel and B panel stay in L1
	gemmMC = 64  // tile rows: the tile's packed A (gemmMC x gemmKC) stays in L2
	gemmNC = 256 // tile columns
)

// gemmParallelFLOPs is the product size below which one goroutine is faster
// than starting several.
const gemmParallelFLOPs = 1 << 21

// checkGemm refuses negative sizes and buffers too short for them; it is
// shared by every backend's Go side so they refuse the same calls.
func checkGemm(m, n, k int, a, b, c []float32) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("bindings: gemm: bad sizes m=%d n=%d k=%d", m, n, k)
	}
	for _, s := range []struct {
		name string
		buf  []float32
		r, c int
	}{{"A", a, m, k}, {"B", b, k, n}, {"C", c, m, n}} {
		need, ok := sizeOf(s.r, s.c)
		if !ok {
			return fmt.Errorf("bindings: gemm: size of %s (%d x %d) overflows", s.name, s.r, s.c)
		}
		if len(s.buf) < need {
			return fmt.Errorf("bindings: gemm: %s holds %d values, need %d", s.name, len(s.buf), need)
		}
	}
	return nil
}

// Gemm implements Kernels.Gemm.
func (goKernels) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) error {
	if err := checkGemm(m, n, k, a, b, c); err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	g := gemmCall{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: b, c: c}
	tm, tn := (m+gemmMC-1)/gemmMC, (n+gemmNC-1)/gemmNC
	run := func(lo, hi int) {
		w := g.newWork()
		for t := lo; t < hi; t++ {
			g.tile(w, t/tn*gemmMC, t%tn*gemmNC)
		}
	}
	if 2*float64(m)*float64(n)*float64(k) < gemmParallelFLOPs {
		run(0, tm*tn)
		return nil
	}
	parallel(tm*tn, 1, run)
	return nil
}

type gemmCall struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
}

// gemmWork is one goroutine's packing and accumulator buffers, sized for
// the largest tile of this call.
type gemmWork struct {
	ap, bp, acc []float32
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

func (g *gemmCall) newWork() gemmWork {
	mc := roundUp(min(gemmMC, g.m), gemmMR)
	nc := roundUp(min(gemmNC, g.n), gemmNR)
	kc := max(1, min(gemmKC, g.k))
	return gemmWork{ap: make([]float32, mc*kc), bp: make([]float32, kc*nc), acc: make([]float32, mc*nc)}
}

// tile computes the rows [i0, i0+gemmMC) and columns [j0, j0+gemmNC) of C
// (clipped to the matrix).
func (g *gemmCall) tile(w gemmWork, i0, j0 int) {
	mc, nc := min(gemmMC, g.m-i0), min(gemmNC, g.n-j0)
	np, nq := (mc+gemmMR-1)/gemmMR, (nc+gemmNR-1)/gemmNR
	const blk = gemmMR * gemmNR
	acc := w.acc[:np*nq*blk]
	clear(acc)
	for t0 := 0; t0 < g.k; t0 += gemmKC {
		kc := min(gemmKC, g.k-t0)
		g.packA(w.ap, i0, mc, t0, kc)
		g.packB(w.bp, j0, nc, t0, kc)
		for q := 0; q < nq; q++ {
			bq := w.bp[q*kc*gemmNR : (q+1)*kc*gemmNR]
			for p := 0; p < np; p++ {
				gemmMicro(w.ap[p*kc*gemmMR:(p+1)*kc*gemmMR], bq, acc[(p*nq+q)*blk:(p*nq+q+1)*blk])
			}
		}
	}
	for i := 0; i < mc; i++ {
		p, r := i/gemmMR, i%gemmMR
		crow := g.c[(i0+i)*g.n+j0 : (i0+i)*g.n+j0+nc]
		for j := range crow {
			s := acc[(p*nq+j/gemmNR)*blk+r*gemmNR+j%gemmNR]
			if g.beta == 0 {
				crow[j] = g.alpha * s
			} else {
				crow[j] = g.alpha*s + g.beta*crow[j]
			}
		}
	}
}

// packA writes rows [i0, i0+mc) x columns [t0, t0+kc) of op(A) as panels of
// gemmMR rows, each [kc][gemmMR]; rows past the matrix are zero.
func (g *gemmCall) packA(ap []float32, i0, mc, t0, kc int) {
	for p := 0; p*gemmMR < mc; p++ {
		panel := ap[p*kc*gemmMR : (p+1)*kc*gemmMR]
		for r := 0; r < gemmMR; r++ {
			i := i0 + p*gemmMR + r
			if p*gemmMR+r >= mc {
				for t := 0; t < kc; t++ {
					panel[t*gemmMR+r] = 0
				}
				continue
			}
			if g.transA { // op(A)[i,t] = A[t,i], A stored [k,m]
				for t := 0; t < kc; t++ {
					panel[t*gemmMR+r] = g.a[(t0+t)*g.m+i]
				}
			} else {
				row := g.a[i*g.k+t0 : i*g.k+t0+kc]
				for t, v := range row {
					panel[t*gemmMR+r] = v
				}
			}
		}
	}
}

// packB writes rows [t0, t0+kc) x columns [j0, j0+nc) of op(B) as panels of
// gemmNR columns, each [kc][gemmNR]; columns past the matrix are zero.
func (g *gemmCall) packB(bp []float32, j0, nc, t0, kc int) {
	for q := 0; q*gemmNR < nc; q++ {
		panel := bp[q*kc*gemmNR : (q+1)*kc*gemmNR]
		w := min(gemmNR, nc-q*gemmNR)
		j := j0 + q*gemmNR
		for t := 0; t < kc; t++ {
			dst := panel[t*gemmNR : (t+1)*gemmNR]
			if g.transB { // op(B)[t,j] = B[j,t], B stored [n,k]
				for u := 0; u < w; u++ {
					dst[u] = g.b[(j+u)*g.k+t0+t]
				}
			} else {
				copy(dst[:w], g.b[(t0+t)*g.n+j:(t0+t)*g.n+j+w])
			}
			clear(dst[w:])
		}
	}
}

// gemmMicro adds ap (kc x gemmMR, t-major) times bp (kc x gemmNR, t-major)
// to the 2x4 accumulators acc, one t at a time. It is written for gemmMR = 2,
// gemmNR = 4: eight accumulators and the six operands fit amd64's sixteen
// vector registers, where a 4x4 tile spills to the stack and runs slower.
// The explicit float32 conversions round each product, which forbids the
// compiler to fuse it into the add (Go fuses on arm64, and on amd64 v3), so
// the bytes are the same on every machine.
func gemmMicro(ap, bp, acc []float32) {
	acc = acc[:8:8]
	c00, c01, c02, c03 := acc[0], acc[1], acc[2], acc[3]
	c10, c11, c12, c13 := acc[4], acc[5], acc[6], acc[7]
	kc := len(ap) / 2
	ap, bp = ap[:2*kc], bp[:4*kc]
	for t := 0; t < kc; t++ {
		a := ap[2*t : 2*t+2 : 2*t+2]
		b := bp[4*t : 4*t+4 : 4*t+4]
		a0, a1 := a[0], a[1]
		b0 := b[0]
		c00 += float32(a0 * b0)
		c10 += float32(a1 * b0)
		b1 := b[1]
		c01 += float32(a0 * b1)
		c11 += float32(a1 * b1)
		b2 := b[2]
		c02 += float32(a0 * b2)
		c12 += float32(a1 * b2)
		b3 := b[3]
		c03 += float32(a0 * b3)
		c13 += float32(a1 * b3)
	}
	acc[0], acc[1], acc[2], acc[3] = c00, c01, c02, c03
	acc[4], acc[5], acc[6], acc[7] = c10, c11, c12, c13
}
