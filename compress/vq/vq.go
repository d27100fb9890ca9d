// Package vq is the plain vector-quantisation baseline: the rows of a group
// of matrices are cut into sub-vectors, one codebook is learned for the
// whole group by (optionally weighted) k-means, and each sub-vector is
// replaced by its nearest codeword. Nothing is decoded: reconstruction is a
// table look-up.
//
// # Sub-vectors and padding
//
// As in METHOD.md section 1, each row of a [rows, Cols] member is cut into
// E = ceil(Cols/Dim) contiguous sub-vectors of length Dim, ordered row-major
// (row 0's E pieces, then row 1's ...), members in the order given. When
// Cols % Dim != 0 the last sub-vector of each row has only Cols % Dim real
// coordinates. Padding is handled exactly, as a coordinate of weight zero:
// every sub-vector position e in [0, E) has a weight per coordinate,
//
//	w[e][t] = colWeight[e*Dim+t] (1 when colWeight is nil)  if e*Dim+t < Cols
//	w[e][t] = 0                                             otherwise (padding)
//
// and k-means minimises the weighted squared error
//
//	J = sum over sub-vectors x at position e of  sum_t w[e][t] (x[t] - C[idx][t])^2.
//
// Assignment uses these weighted distances, so padded coordinates never
// influence which codeword is chosen, and the update sets each codeword
// coordinate to the weighted mean of its members,
//
//	C[j][t] = sum_{x in j} w[e(x)][t] x[t] / sum_{x in j} w[e(x)][t],
//
// so padded coordinates never enter a mean. Where that denominator is zero
// (every member of j has weight zero at t) the coordinate becomes the plain
// mean over the members for which t is a real column, and keeps its value
// when there is none (it is then only ever read as padding). Padding is
// dropped on reconstruction.
//
// Sub-vector positions that share one weight vector (with nil colWeight:
// all but a padded last one) form one block, stored contiguously, so each
// Lloyd step is one Kernels.Assign and one Kernels.CodebookStats call per
// block; weighted distances are plain distances between sqrt(w)-scaled
// sub-vectors and codewords.
//
// # Algorithm
//
// Each member is first divided by its RMS (one fp32 scale per member; 0 for
// an all-zero member, which is quantised unscaled and rebuilt as exact
// zeros, and 1 for every member with Settings.Unscaled), so
// that one codebook serves members of different magnitudes. The codebook is
// initialised by k-means++ (D^2 sampling under the weighted distance) on a
// sample of at most SeedSample*K sub-vectors drawn without replacement, then
// refined by Lloyd iterations (at most Iters assignment steps, stopping
// early when no assignment changes). A codeword left with no members is
// re-seeded from the sub-vectors with the largest weighted errors. Finally
// the codebook is rounded to fp16 and every sub-vector is assigned again
// against the rounded codebook, so the reported NMSE is exactly what
// Reconstruct gives. Everything is deterministic for a seed, the matrices'
// names and a backend.
//
// # Stored layout
//
// What a group costs (Cost): the indices of every member's sub-vectors, in
// the order above, as one bit-packed array of ceil(log2 K) bits each
// (IndexBits), the codebook as K*Dim fp16 values (codeword j at j*Dim), and
// one fp32 scale per member. A weight is rebuilt as
// fl32(Codebook[idx*Dim+t] * scale).
package vq

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/matrix"
)

// DefaultIters is the number of Lloyd iterations when Settings.Iters is 0.
const DefaultIters = 25

// SeedSample bounds the k-means++ sample: at most SeedSample*K sub-vectors.
const SeedSample = 64

// Settings choose the quantiser.
type Settings struct {
	Dim   int // sub-vector length, 1..256
	K     int // codebook entries, 2..2^20
	Iters int // at most this many Lloyd assignment steps (0: DefaultIters)
	Seed  uint64
	// Unscaled skips the per-member RMS scaling (every scale is then 1).
	Unscaled bool
}

// Validate reports impossible settings.
func (s Settings) Validate() error {
	switch {
	case s.Dim < 1 || s.Dim > 256:
		return fmt.Errorf("vq: sub-vector length %d outside [1, 256]", s.Dim)
	case s.K < 2 || s.K > 1<<20:
		return fmt.Errorf("vq: codebook size %d outside [2, 2^20]", s.K)
	case s.Iters < 0 || s.Iters > 10000:
		return fmt.Errorf("vq: %d iterations outside [0, 10000] (0 means %d)", s.Iters, DefaultIters)
	}
	return nil
}

func (s Settings) iters() int {
	if s.Iters == 0 {
		return DefaultIters
	}
	return s.Iters
}

// Result is what VQ keeps for a group, already in its stored precision,
// plus what it measured.
type Result struct {
	Dim, K, E, Cols int
	Codebook        []float32 // [K, Dim], fp16 values
	Indices         []int32   // every member's rows in member order, E per row
	Scales          []float32 // one per member
	NMSE            []float64 // per member: ||W - W_hat||^2 / ||W||^2
	// Objective is the weighted squared error J (of the scaled members)
	// after each Lloyd assignment step, before fp16 rounding; it never
	// increases.
	Objective []float64
}

// IndexBits is the width of one stored index: ceil(log2 k), at least 1.
func IndexBits(k int) int {
	if k <= 2 {
		return 1
	}
	return bits.Len64(uint64(k - 1))
}

// Cost is the number of bytes the stored layout (package comment) takes for
// a group of members whose rows add up to rows, all with cols columns.
func Cost(rows, cols, members int, st Settings) int64 {
	n := int64(rows) * int64((cols+st.Dim-1)/st.Dim)
	return (n*int64(IndexBits(st.K))+7)/8 + 2*int64(st.K)*int64(st.Dim) + 4*int64(members)
}

// Compress learns one codebook for mats, which must share their column
// count. colWeight is nil (every column counts the same) or one finite,
// non-negative importance per input column, not all zero. k nil means the
// pure-Go kernels.
func Compress(k bindings.Kernels, mats []matrix.Matrix, st Settings, colWeight []float32) (*Result, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if k == nil {
		k = bindings.Go()
	}
	if len(mats) == 0 {
		return nil, fmt.Errorf("vq: no matrices to compress")
	}
	cols := mats[0].Cols
	rows := 0
	for _, m := range mats {
		if m.Cols != cols {
			return nil, fmt.Errorf("vq: %s: %d columns, but %s has %d: a shared codebook needs one row width", m.Name, m.Cols, mats[0].Name, cols)
		}
		if m.Rows < 1 || m.Cols < 1 || len(m.Data) != m.Rows*m.Cols {
			return nil, fmt.Errorf("vq: %s: %d values for a %dx%d matrix", m.Name, len(m.Data), m.Rows, m.Cols)
		}
		for i, v := range m.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("vq: %s: non-finite weight %v at row %d, column %d", m.Name, v, i/m.Cols, i%m.Cols)
			}
		}
		rows += m.Rows
	}
	if err := matrix.CheckColWeight(colWeight, cols); err != nil {
		return nil, fmt.Errorf("vq: %s: %w", mats[0].Name, err)
	}
	e := (cols + st.Dim - 1) / st.Dim
	if n := rows * e; n < st.K {
		return nil, fmt.Errorf("vq: %s: %d codewords for only %d sub-vectors", mats[0].Name, st.K, n)
	}
	q := newQuantiser(k, mats, st, colWeight, rows, e)
	rng := rand.New(rand.NewPCG(st.Seed, nameStream(mats)))
	c := q.seed(rng)
	res := &Result{Dim: st.Dim, K: st.K, E: e, Cols: cols, Scales: q.scales}
	for it := 0; it < st.iters(); it++ {
		changed, obj, err := q.assign(c)
		if err != nil {
			return nil, err
		}
		res.Objective = append(res.Objective, obj)
		if it > 0 && changed == 0 {
			break
		}
		if err := q.update(c); err != nil {
			return nil, err
		}
	}
	for i, v := range c {
		c[i] = fp16.ToFloat32(fp16.FromFloat32(v))
		if math.IsInf(float64(c[i]), 0) {
			return nil, fmt.Errorf("vq: %s: codeword %d has value %v, beyond the fp16 range", mats[0].Name, i/st.Dim, v)
		}
	}
	if _, _, err := q.assign(c); err != nil {
		return nil, err
	}
	res.Codebook = c
	res.Indices = q.indices()
	shapes := make([][2]int, len(mats))
	for i, m := range mats {
		shapes[i] = [2]int{m.Rows, m.Cols}
	}
	out, err := Reconstruct(res, shapes)
	if err != nil {
		return nil, err
	}
	res.NMSE = make([]float64, len(mats))
	for i, m := range mats {
		res.NMSE[i] = matrix.NMSE(m.Data, out[i])
	}
	return res, nil
}

// Reconstruct rebuilds the members from r: shapes[i] is member i's [rows,
// cols]; the result holds each member's rows*cols weights.
func Reconstruct(r *Result, shapes [][2]int) ([][]float32, error) {
	d := r.Dim
	if d < 1 || r.K < 1 || r.E != (r.Cols+d-1)/d || len(r.Codebook) != r.K*d {
		return nil, fmt.Errorf("vq: reconstruct: codebook of %d values, %d sub-vectors per row of %d columns do not match K=%d, Dim=%d", len(r.Codebook), r.E, r.Cols, r.K, d)
	}
	if len(r.Scales) != len(shapes) {
		return nil, fmt.Errorf("vq: reconstruct: %d scales for %d matrices", len(r.Scales), len(shapes))
	}
	out := make([][]float32, len(shapes))
	at := 0
	for i, sh := range shapes {
		rows, cols := sh[0], sh[1]
		if cols != r.Cols || rows < 1 {
			return nil, fmt.Errorf("vq: reconstruct: matrix %d is %dx%d, the group's rows have %d columns", i, rows, cols, r.Cols)
		}
		if at+rows*r.E > len(r.Indices) {
			return nil, fmt.Errorf("vq: reconstruct: %d indices, matrix %d needs up to %d", len(r.Indices), i, at+rows*r.E)
		}
		w := make([]float32, rows*cols)
		s := r.Scales[i]
		for row := 0; row < rows; row++ {
			for p := 0; p < r.E; p++ {
				j := r.Indices[at]
				at++
				if j < 0 || int(j) >= r.K {
					return nil, fmt.Errorf("vq: reconstruct: matrix %d, row %d: index %d outside [0, %d)", i, row, j, r.K)
				}
				cw := r.Codebook[int(j)*d : int(j)*d+d]
				c0 := p * d
				for t := 0; t < d && c0+t < cols; t++ {
					w[row*cols+c0+t] = cw[t] * s
				}
			}
		}
		out[i] = w
	}
	if at != len(r.Indices) {
		return nil, fmt.Errorf("vq: reconstruct: %d indices left over", len(r.Indices)-at)
	}
	return out, nil
}

// nameStream derives the generator's stream from the members' names, so a
// group's result does not depend on which groups were compressed before it.
func nameStream(mats []matrix.Matrix) uint64 {
	h := fnv.New64a()
	for _, m := range mats {
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// block is the sub-vectors of the positions sharing one weight vector,
// row-major over (row, position in pos).
type block struct {
	pos   []int     // sub-vector positions, ascending
	w     []float32 // per-coordinate weight
	sw    []float32 // sqrt(w)
	real  []bool    // coordinate is a real column (not padding)
	x     []float32 // [n, dim] scaled sub-vectors, padding 0
	y     []float32 // sqrt(w)-scaled x (x itself when w is all ones)
	n     int
	idx   []int32
	prev  []int32
	dist  []float32
	cy    []float32 // sqrt(w)-scaled codebook
	sums  []float64
	count []int64
}

type quantiser struct {
	k       bindings.Kernels
	dim, kc int
	e, rows int
	scales  []float32
	blocks  []*block
	posB    []int // position -> block
	posS    []int // position -> slot in its block's pos
}

func newQuantiser(k bindings.Kernels, mats []matrix.Matrix, st Settings, colWeight []float32, rows, e int) *quantiser {
	d := st.Dim
	cols := mats[0].Cols
	q := &quantiser{k: k, dim: d, kc: st.K, e: e, rows: rows, posB: make([]int, e), posS: make([]int, e)}
	byKey := map[string]int{}
	for p := 0; p < e; p++ {
		w := make([]float32, d)
		real := make([]bool, d)
		key := make([]byte, 0, 5*d)
		for t := range w {
			c := p*d + t
			if c < cols {
				real[t] = true
				w[t] = 1
				if colWeight != nil {
					w[t] = colWeight[c]
				}
			}
			b := math.Float32bits(w[t])
			key = append(key, byte(b), byte(b>>8), byte(b>>16), byte(b>>24))
			if real[t] {
				key = append(key, 1)
			} else {
				key = append(key, 0)
			}
		}
		bi, ok := byKey[string(key)]
		if !ok {
			bi = len(q.blocks)
			byKey[string(key)] = bi
			sw := make([]float32, d)
			for t, v := range w {
				sw[t] = float32(math.Sqrt(float64(v)))
			}
			q.blocks = append(q.blocks, &block{w: w, sw: sw, real: real})
		}
		b := q.blocks[bi]
		q.posB[p], q.posS[p] = bi, len(b.pos)
		b.pos = append(b.pos, p)
	}
	for _, b := range q.blocks {
		b.n = rows * len(b.pos)
		b.x = make([]float32, b.n*d)
		b.idx = make([]int32, b.n)
		b.prev = make([]int32, b.n)
		b.dist = make([]float32, b.n)
		b.cy = make([]float32, st.K*d)
		b.sums = make([]float64, st.K*d)
		b.count = make([]int64, st.K)
	}
	q.scales = make([]float32, len(mats))
	r0 := 0
	for mi, m := range mats {
		scale, inv := float32(1), float32(1)
		if !st.Unscaled {
			var ss float64
			for _, v := range m.Data {
				ss += float64(v) * float64(v)
			}
			// An all-zero member keeps scale 0: its sub-vectors are
			// quantised as they are, and it reconstructs to exact zeros
			// whatever codewords they get (an error of 0, not an infinite NMSE).
			scale = float32(math.Sqrt(ss / float64(len(m.Data))))
			if scale != 0 {
				inv = 1 / scale
			}
		}
		q.scales[mi] = scale
		for r := 0; r < m.Rows; r++ {
			row := m.Data[r*cols : (r+1)*cols]
			for c, v := range row {
				p := c / d
				b := q.blocks[q.posB[p]]
				b.x[((r0+r)*len(b.pos)+q.posS[p])*d+c%d] = v * inv
			}
		}
		r0 += m.Rows
	}
	for _, b := range q.blocks {
		if !slices.ContainsFunc(b.w, func(v float32) bool { return v != 1 }) {
			b.y = b.x
			continue
		}
		b.y = make([]float32, len(b.x))
		for i, v := range b.x {
			b.y[i] = v * b.sw[i%d]
		}
	}
	return q
}

// point returns the block and the index in it of sub-vector i (row-major
// over all rows and positions).
func (q *quantiser) point(i int) (*block, int) {
	r, p := i/q.e, i%q.e
	b := q.blocks[q.posB[p]]
	return b, r*len(b.pos) + q.posS[p]
}

// seed is k-means++ on a sample of at most SeedSample*K sub-vectors.
func (q *quantiser) seed(rng *rand.Rand) []float32 {
	d, kc := q.dim, q.kc
	n := q.rows * q.e
	sample := sampleIndices(rng, n, min(n, SeedSample*kc))
	s := len(sample)
	sx := make([]float32, s*d)
	sw := make([][]float32, s)
	for i, gi := range sample {
		b, li := q.point(gi)
		copy(sx[i*d:(i+1)*d], b.x[li*d:(li+1)*d])
		sw[i] = b.w
	}
	c := make([]float32, kc*d)
	dist := make([]float64, s)
	pick := rng.IntN(s)
	for j := 0; j < kc; j++ {
		if j > 0 {
			var total float64
			for _, v := range dist {
				total += v
			}
			if total > 0 {
				u := rng.Float64() * total
				pick = -1
				var acc float64
				for i, v := range dist {
					acc += v
					if v > 0 {
						pick = i
						if acc > u {
							break
						}
					}
				}
			} else {
				// Fewer distinct sub-vectors than codewords: the duplicates
				// end up dead and are re-seeded by the Lloyd steps.
				pick = rng.IntN(s)
			}
		}
		cj := c[j*d : (j+1)*d]
		copy(cj, sx[pick*d:(pick+1)*d])
		parallel(s, 1024, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				var e float64
				for t, v := range sx[i*d : (i+1)*d] {
					df := float64(v) - float64(cj[t])
					e += float64(sw[i][t]) * df * df
				}
				if j == 0 || e < dist[i] {
					dist[i] = e
				}
			}
		})
	}
	return c
}

// sampleIndices draws m distinct indices of [0, n) (Floyd's algorithm) and
// returns them in ascending order.
func sampleIndices(rng *rand.Rand, n, m int) []int {
	if m == n {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	set := make(map[int]struct{}, m)
	out := make([]int, 0, m)
	for j := n - m; j < n; j++ {
		t := rng.IntN(j + 1)
		if _, dup := set[t]; dup {
			t = j
		}
		set[t] = struct{}{}
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// assign finds each sub-vector's nearest codeword of c under the weighted
// distance and returns how many assignments changed and the objective J.
func (q *quantiser) assign(c []float32) (changed int, obj float64, err error) {
	d := q.dim
	for _, b := range q.blocks {
		b.idx, b.prev = b.prev, b.idx
		for i, v := range c {
			b.cy[i] = v * b.sw[i%d]
		}
		if err := q.k.Assign(b.y, b.n, d, b.cy, q.kc, b.idx, b.dist); err != nil {
			return 0, 0, err
		}
		for i, j := range b.idx {
			if j != b.prev[i] {
				changed++
			}
			obj += float64(b.dist[i])
		}
	}
	return changed, obj, nil
}

// update moves each codeword to the weighted mean of its members and
// re-seeds codewords without members.
func (q *quantiser) update(c []float32) error {
	d, kc := q.dim, q.kc
	num := make([]float64, kc*d)
	den := make([]float64, kc*d)
	numR := make([]float64, kc*d)
	denR := make([]float64, kc*d)
	count := make([]int64, kc)
	for _, b := range q.blocks {
		if err := q.k.CodebookStats(b.x, b.n, d, b.idx, kc, b.sums, b.count); err != nil {
			return err
		}
		for j := 0; j < kc; j++ {
			nj := b.count[j]
			if nj == 0 {
				continue
			}
			count[j] += nj
			for t := 0; t < d; t++ {
				if !b.real[t] {
					continue
				}
				s := b.sums[j*d+t]
				num[j*d+t] += float64(b.w[t]) * s
				den[j*d+t] += float64(b.w[t]) * float64(nj)
				numR[j*d+t] += s
				denR[j*d+t] += float64(nj)
			}
		}
	}
	var dead []int
	for j := 0; j < kc; j++ {
		if count[j] == 0 {
			dead = append(dead, j)
			continue
		}
		for t := 0; t < d; t++ {
			i := j*d + t
			switch {
			case den[i] > 0:
				c[i] = float32(num[i] / den[i])
			case denR[i] > 0:
				c[i] = float32(numR[i] / denR[i])
			}
		}
	}
	if len(dead) == 0 {
		return nil
	}
	worst := q.worst(len(dead))
	for n, j := range dead {
		b, li := q.point(worst[n])
		copy(c[j*d:(j+1)*d], b.x[li*d:(li+1)*d])
	}
	return nil
}

// worst returns the m sub-vectors (row-major numbers) with the largest
// current distances, largest first, ties to the lower number.
func (q *quantiser) worst(m int) []int {
	h := &minHeap{}
	for i := 0; i < q.rows*q.e; i++ {
		b, li := q.point(i)
		it := item{b.dist[li], i}
		if h.Len() < m {
			heap.Push(h, it)
		} else if (*h)[0].less(it) {
			(*h)[0] = it
			heap.Fix(h, 0)
		}
	}
	out := make([]int, h.Len())
	for n := len(out) - 1; n >= 0; n-- {
		out[n] = heap.Pop(h).(item).i
	}
	return out
}

type item struct {
	dist float32
	i    int
}

// less orders by badness: a is less bad than b.
func (a item) less(b item) bool {
	if a.dist != b.dist {
		return a.dist < b.dist
	}
	return a.i > b.i
}

// minHeap keeps the least bad item at the top.
type minHeap []item

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(a, b int) bool { return h[a].less(h[b]) }
func (h minHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *minHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// indices lays the assignments out row-major, E per row.
func (q *quantiser) indices() []int32 {
	out := make([]int32, q.rows*q.e)
	for i := range out {
		b, li := q.point(i)
		out[i] = b.idx[li]
	}
	return out
}

// parallel runs fn over [0, n) in contiguous chunks of at least grain items,
// at most GOMAXPROCS at once. fn must write only its own items, so the
// result does not depend on the split.
func parallel(n, grain int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+grain-1)/grain)
	if workers <= 1 {
		fn(0, n)
		return
	}
	per := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+per, n))
	}
	wg.Wait()
}
