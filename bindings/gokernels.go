package bindings

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// goKernels is the pure-Go implementation of Kernels. It is always available
// and is the reference for what the other backends compute. It spreads work
// over GOMAXPROCS goroutines; reductions are summed per ReduceBlock of rows and
// the block partials are added in row order, so results never depend on the
// number of threads.
type goKernels struct{}

// Go returns the pure-Go kernels.
func Go() Kernels { return goKernels{} }

func (goKernels) Name() string { return "go" }

// parallel runs fn over [0, n) split into contiguous chunks of at least grain
// items, one goroutine per chunk, at most GOMAXPROCS chunks.
func parallel(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	workers := runtime.GOMAXPROCS(0)
	if max := (n + grain - 1) / grain; workers > max {
		workers = max
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// reduceBlocks computes one partial of size width per ReduceBlock rows (in
// parallel) with fill(partial, lo, hi), then adds the partials into acc in
// row order. fill receives a zeroed partial.
func reduceBlocks(rows, width int, acc []float32, fill func(partial []float32, lo, hi int)) {
	nb := (rows + ReduceBlock - 1) / ReduceBlock
	if nb == 0 {
		return
	}
	partials := make([]float32, nb*width)
	parallel(nb, 1, func(b0, b1 int) {
		for b := b0; b < b1; b++ {
			lo := b * ReduceBlock
			fill(partials[b*width:(b+1)*width], lo, min(lo+ReduceBlock, rows))
		}
	})
	for b := 0; b < nb; b++ {
		p := partials[b*width : (b+1)*width]
		for i, v := range p {
			acc[i] += v
		}
	}
}

func need(what string, buf []float32, n int) error {
	if len(buf) < n {
		return fmt.Errorf("bindings: %s holds %d values, need %d", what, len(buf), n)
	}
	return nil
}

// Assign implements Kernels.Assign with the direct distance, so ties are
// resolved exactly as the doc comment states.
func (goKernels) Assign(z []float32, n, dz int, c []float32, k int, idx []int32, dist []float32) error {
	if err := checkAssign(z, n, dz, c, k); err != nil {
		return err
	}
	if len(idx) < n || (dist != nil && len(dist) < n) {
		return fmt.Errorf("bindings: assign output shorter than %d latents", n)
	}
	parallel(n, 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			zi := z[i*dz : (i+1)*dz : (i+1)*dz]
			best, bestJ := float32(math.Inf(1)), 0
			for j := 0; j < k; j++ {
				cj := c[j*dz : (j+1)*dz : (j+1)*dz]
				var s float32
				for t, v := range zi {
					d := v - cj[t]
					s += d * d
				}
				if s < best {
					best, bestJ = s, j
				}
			}
			idx[i] = int32(bestJ)
			if dist != nil {
				dist[i] = best
			}
		}
	})
	return nil
}

func checkAssign(z []float32, n, dz int, c []float32, k int) error {
	if n < 0 || dz <= 0 || k <= 0 {
		return fmt.Errorf("bindings: assign: bad sizes n=%d dz=%d k=%d", n, dz, k)
	}
	if err := need("latents", z, n*dz); err != nil {
		return err
	}
	return need("codebook", c, k*dz)
}

// CodebookStats implements Kernels.CodebookStats.
func (goKernels) CodebookStats(z []float32, n, dz int, idx []int32, k int, sums []float64, counts []int64) error {
	if n < 0 || dz <= 0 || k <= 0 {
		return fmt.Errorf("bindings: codebook stats: bad sizes n=%d dz=%d k=%d", n, dz, k)
	}
	if err := need("latents", z, n*dz); err != nil {
		return err
	}
	if len(idx) < n || len(sums) < k*dz || len(counts) < k {
		return fmt.Errorf("bindings: codebook stats: buffers too short for n=%d k=%d dz=%d", n, k, dz)
	}
	// Check every index first: a failed call leaves its outputs untouched.
	for i, j := range idx[:n] {
		if j < 0 || int(j) >= k {
			return fmt.Errorf("bindings: codebook stats: index %d of latent %d is outside [0,%d)", j, i, k)
		}
	}
	clear(sums[:k*dz])
	clear(counts[:k])
	for i := 0; i < n; i++ {
		j := int(idx[i])
		counts[j]++
		s := sums[j*dz : (j+1)*dz]
		for t, v := range z[i*dz : (i+1)*dz] {
			s[t] += float64(v)
		}
	}
	return nil
}

const geluK = 0.7978845608028654 // sqrt(2/pi)

// gelu is the tanh form of GELU and its derivative.
func gelu(a float32) (y, dy float32) {
	x := float64(a)
	t := math.Tanh(geluK * (x + 0.044715*x*x*x))
	y = float32(0.5 * x * (1 + t))
	dy = float32(0.5*(1+t) + 0.5*x*(1-t*t)*geluK*(1+3*0.044715*x*x))
	return
}

func checkMLP(m MLP, x []float32, rows int) error {
	if m.In <= 0 || m.Hidden <= 0 || m.Out <= 0 || rows < 0 {
		return fmt.Errorf("bindings: mlp: bad shape %d->%d->%d over %d rows", m.In, m.Hidden, m.Out, rows)
	}
	if err := need("mlp parameters", m.P, m.NumParams()); err != nil {
		return err
	}
	return need("mlp input", x, rows*m.In)
}

// MLPForward implements Kernels.MLPForward.
func (goKernels) MLPForward(m MLP, x []float32, rows int, pre, y []float32) error {
	if err := checkMLP(m, x, rows); err != nil {
		return err
	}
	if err := need("mlp pre-activations", pre, rows*m.Hidden); err != nil {
		return err
	}
	if err := need("mlp output", y, rows*m.Out); err != nil {
		return err
	}
	parallel(rows, 256, func(lo, hi int) {
		act := make([]float32, m.Hidden)
		mlpForwardRows(m, x, pre, y, act, lo, hi)
	})
	return nil
}

func mlpForwardRows(m MLP, x, pre, y, act []float32, lo, hi int) {
	w1, b1, w2, b2 := m.W1(), m.B1(), m.W2(), m.B2()
	in, h, out := m.In, m.Hidden, m.Out
	for r := lo; r < hi; r++ {
		xr := x[r*in : (r+1)*in]
		pr := pre[r*h : (r+1)*h]
		for u := 0; u < h; u++ {
			s := b1[u]
			for i, w := range w1[u*in : (u+1)*in] {
				s += w * xr[i]
			}
			pr[u] = s
			act[u], _ = gelu(s)
		}
		yr := y[r*out : (r+1)*out]
		for o := 0; o < out; o++ {
			s := b2[o]
			for u, w := range w2[o*h : (o+1)*h] {
				s += w * act[u]
			}
			yr[o] = s
		}
	}
}

// MLPBackward implements Kernels.MLPBackward.
func (goKernels) MLPBackward(m, g MLP, x, pre, dy []float32, rows int, dx []float32) error {
	if err := checkMLP(m, x, rows); err != nil {
		return err
	}
	if g.In != m.In || g.Hidden != m.Hidden || g.Out != m.Out {
		return fmt.Errorf("bindings: mlp backward: gradient shape differs from the network's")
	}
	if err := need("mlp gradient", g.P, m.NumParams()); err != nil {
		return err
	}
	if err := need("mlp pre-activations", pre, rows*m.Hidden); err != nil {
		return err
	}
	if err := need("mlp output gradient", dy, rows*m.Out); err != nil {
		return err
	}
	if dx != nil {
		if err := need("mlp input gradient", dx, rows*m.In); err != nil {
			return err
		}
	}
	in, h, out := m.In, m.Hidden, m.Out
	w1, w2 := m.W1(), m.W2()
	np := m.NumParams()
	reduceBlocks(rows, np, g.P, func(partial []float32, lo, hi int) {
		pg := MLP{In: in, Hidden: h, Out: out, P: partial}
		gw1, gb1, gw2, gb2 := pg.W1(), pg.B1(), pg.W2(), pg.B2()
		act := make([]float32, h)
		dp := make([]float32, h)
		for r := lo; r < hi; r++ {
			pr := pre[r*h : (r+1)*h]
			dyr := dy[r*out : (r+1)*out]
			xr := x[r*in : (r+1)*in]
			for u, p := range pr {
				act[u], dp[u] = gelu(p)
			}
			for o, d := range dyr {
				gb2[o] += d
				row := gw2[o*h : (o+1)*h]
				for u, a := range act {
					row[u] += d * a
				}
			}
			for u := 0; u < h; u++ {
				var da float32
				for o, d := range dyr {
					da += d * w2[o*h+u]
				}
				dp[u] *= da
			}
			for u, d := range dp {
				gb1[u] += d
				row := gw1[u*in : (u+1)*in]
				for i, v := range xr {
					row[i] += d * v
				}
			}
			if dx != nil {
				dxr := dx[r*in : (r+1)*in]
				for i := range dxr {
					var s float32
					for u, d := range dp {
						s += d * w1[u*in+i]
					}
					dxr[i] = s
				}
			}
		}
	})
	return nil
}

func checkRLN(n RLN, x []float32, groups int) error {
	if n.Width <= 0 || groups < 0 {
		return fmt.Errorf("bindings: rln: bad width %d over %d groups", n.Width, groups)
	}
	if err := need("rln parameters", n.P, 2*n.Width); err != nil {
		return err
	}
	return need("rln input", x, groups*n.Width)
}

// RLNForward implements Kernels.RLNForward.
func (goKernels) RLNForward(n RLN, x []float32, groups int, y, mean, rstd []float32) error {
	if err := checkRLN(n, x, groups); err != nil {
		return err
	}
	if err := need("rln output", y, groups*n.Width); err != nil {
		return err
	}
	if len(mean) < groups || len(rstd) < groups {
		return fmt.Errorf("bindings: rln: statistics buffers shorter than %d groups", groups)
	}
	parallel(groups, 64, func(lo, hi int) { rlnForwardRows(n, x, y, mean, rstd, lo, hi) })
	return nil
}

func rlnForwardRows(n RLN, x, y, mean, rstd []float32, lo, hi int) {
	w := n.Width
	gamma, beta := n.Gamma(), n.Beta()
	inv := 1 / float32(w)
	for r := lo; r < hi; r++ {
		xr := x[r*w : (r+1)*w]
		var s float32
		for _, v := range xr {
			s += v
		}
		mu := s * inv
		var q float32
		for _, v := range xr {
			d := v - mu
			q += d * d
		}
		rs := float32(1 / math.Sqrt(float64(q*inv+RLNEps)))
		yr := y[r*w : (r+1)*w]
		for i, v := range xr {
			yr[i] = (v-mu)*rs*gamma[i] + beta[i]
		}
		mean[r], rstd[r] = mu, rs
	}
}

// RLNBackward implements Kernels.RLNBackward.
func (goKernels) RLNBackward(n, g RLN, x, dy []float32, groups int, mean, rstd, dx []float32) error {
	if err := checkRLN(n, x, groups); err != nil {
		return err
	}
	if g.Width != n.Width {
		return fmt.Errorf("bindings: rln backward: gradient width %d differs from %d", g.Width, n.Width)
	}
	if err := need("rln gradient", g.P, 2*n.Width); err != nil {
		return err
	}
	if err := need("rln output gradient", dy, groups*n.Width); err != nil {
		return err
	}
	if err := need("rln input gradient", dx, groups*n.Width); err != nil {
		return err
	}
	if len(mean) < groups || len(rstd) < groups {
		return fmt.Errorf("bindings: rln: statistics buffers shorter than %d groups", groups)
	}
	w := n.Width
	gamma := n.Gamma()
	inv := 1 / float32(w)
	reduceBlocks(groups, 2*w, g.P, func(partial []float32, lo, hi int) {
		gg, gb := partial[:w], partial[w:]
		hb := make([]float32, w)
		dh := make([]float32, w)
		for r := lo; r < hi; r++ {
			xr, dyr, dxr := x[r*w:(r+1)*w], dy[r*w:(r+1)*w], dx[r*w:(r+1)*w]
			mu, rs := mean[r], rstd[r]
			var sdh, sdhh float32
			for i, v := range xr {
				hv := (v - mu) * rs
				hb[i] = hv
				gg[i] += dyr[i] * hv
				gb[i] += dyr[i]
				d := dyr[i] * gamma[i]
				dh[i] = d
				sdh += d
				sdhh += d * hv
			}
			mdh, mdhh := sdh*inv, sdhh*inv
			for i := range dxr {
				dxr[i] = rs * (dh[i] - mdh - hb[i]*mdhh)
			}
		}
	})
	return nil
}

// Adam implements Kernels.Adam.
func (goKernels) Adam(p, g, m, v []float32, lr, b1, b2, eps float32, step int) error {
	n := len(p)
	if len(g) < n || len(m) < n || len(v) < n {
		return fmt.Errorf("bindings: adam: state buffers shorter than %d parameters", n)
	}
	if step < 1 {
		return fmt.Errorf("bindings: adam: step %d, must count from 1", step)
	}
	c1 := float32(1 - math.Pow(float64(b1), float64(step)))
	c2 := float32(1 - math.Pow(float64(b2), float64(step)))
	parallel(n, 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := g[i]
			mi := b1*m[i] + (1-b1)*gi
			vi := b2*v[i] + (1-b2)*gi*gi
			m[i], v[i] = mi, vi
			p[i] -= lr * (mi / c1) / (float32(math.Sqrt(float64(vi/c2))) + eps)
		}
	})
	return nil
}

// decodeChunk is the number of rows Decode processes per work item: enough to
// amortise the goroutine, few enough that the activations stay in cache.
const decodeChunk = 32

// Decode implements Kernels.Decode by running the decoder blocks over chunks
// of rows.
func (goKernels) Decode(dec Decoder, c []float32, idx []int32, rows int, out []float32) error {
	if dec.E <= 0 || dec.Dim <= 0 || dec.Latent <= 0 || dec.Hidden <= 0 || rows < 0 {
		return fmt.Errorf("bindings: decode: bad decoder shape E=%d dim=%d latent=%d hidden=%d", dec.E, dec.Dim, dec.Latent, dec.Hidden)
	}
	if err := need("decoder parameters", dec.P, DecoderParams(dec.E, dec.Dim, dec.Latent, dec.Hidden)); err != nil {
		return err
	}
	if len(c)%dec.Latent != 0 || len(c) == 0 {
		return fmt.Errorf("bindings: decode: codebook of %d values is not whole codewords of %d", len(c), dec.Latent)
	}
	kc := len(c) / dec.Latent
	n := rows * dec.E
	if len(idx) < n {
		return fmt.Errorf("bindings: decode: %d indices, need %d", len(idx), n)
	}
	if err := need("decode output", out, n*dec.Dim); err != nil {
		return err
	}
	for i, j := range idx[:n] {
		if j < 0 || int(j) >= kc {
			return fmt.Errorf("bindings: decode: index %d of sub-vector %d is outside [0,%d)", j, i, kc)
		}
	}
	n1, d1, n2, d2, n3, d0 := dec.Parts()
	lat, h, e := dec.Latent, dec.Hidden, dec.E
	chunks := (rows + decodeChunk - 1) / decodeChunk
	parallel(chunks, 1, func(c0, c1 int) {
		maxv := decodeChunk * e
		y := make([]float32, maxv*lat)
		t := make([]float32, maxv*lat)
		u := make([]float32, maxv*lat)
		pre := make([]float32, maxv*h)
		act := make([]float32, h)
		mean := make([]float32, decodeChunk)
		rstd := make([]float32, decodeChunk)
		for ch := c0; ch < c1; ch++ {
			r0 := ch * decodeChunk
			nr := min(decodeChunk, rows-r0)
			nv := nr * e
			for v := 0; v < nv; v++ {
				j := int(idx[r0*e+v])
				copy(y[v*lat:(v+1)*lat], c[j*lat:(j+1)*lat])
			}
			// y = y + D1(N1(y))
			rlnForwardRows(n1, y, t, mean, rstd, 0, nr)
			mlpForwardRows(d1, t, pre, u, act, 0, nv)
			addTo(y[:nv*lat], u)
			// y = N3(y + D2(N2(y)))
			rlnForwardRows(n2, y, t, mean, rstd, 0, nr)
			mlpForwardRows(d2, t, pre, u, act, 0, nv)
			addTo(y[:nv*lat], u)
			rlnForwardRows(n3, y, t, mean, rstd, 0, nr)
			// x = D0(y)
			mlpForwardRows(d0, t, pre, out[r0*e*dec.Dim:], act, 0, nv)
		}
	})
	return nil
}

func addTo(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}
