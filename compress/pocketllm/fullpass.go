package pocketllm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/metanet"
)

// fullPass encodes, assigns and decodes every row of a group with fixed
// parameters: the per-epoch measurement that picks the best epoch, the
// source of the k-means statistics, and the final assignment.
type fullPass struct {
	t    *trainer
	s    metanet.Shape
	ws   *metanet.Workspace
	rpb  int
	z    []float32 // [rows*E, Latent]
	idx  []int32
	dist []float32
	out  []float32 // [rows*E, Dim]; made by the first decode, so k-means init runs without it
}

func newFullPass(t *trainer, s metanet.Shape) *fullPass {
	n := t.rows * s.E
	rpb := t.rowsPerBatch()
	return &fullPass{
		t: t, s: s, ws: metanet.NewWorkspace(s, rpb), rpb: rpb,
		z: make([]float32, n*s.Latent), idx: make([]int32, n), dist: make([]float32, n),
	}
}

func (f *fullPass) encode(v metanet.Views) error {
	rowLen := f.s.E * f.s.Dim
	zLen := f.s.E * f.s.Latent
	for r0 := 0; r0 < f.t.rows; r0 += f.rpb {
		nr := min(f.rpb, f.t.rows-r0)
		z, err := f.ws.Encode(f.t.k, v, f.t.x[r0*rowLen:(r0+nr)*rowLen], nr)
		if err != nil {
			return err
		}
		copy(f.z[r0*zLen:], z)
	}
	return nil
}

func (f *fullPass) assign(v metanet.Views) error {
	return f.t.k.Assign(f.z, len(f.idx), f.s.Latent, v.Codebook, f.s.K, f.idx, f.dist)
}

// run returns the loss-weighted reconstruction MSE over real elements of the
// scaled weights, leaving the indices in f.idx.
func (f *fullPass) run(v metanet.Views) (float64, error) {
	if err := f.encode(v); err != nil {
		return 0, err
	}
	if err := f.assign(v); err != nil {
		return 0, err
	}
	if err := f.decode(v, f.idx); err != nil {
		return 0, err
	}
	return f.mse(), nil
}

// mse is the loss-weighted error of the rows decoded in f.out.
func (f *fullPass) mse() float64 {
	rowLen := f.s.E * f.s.Dim
	var se, sw float64
	for r := 0; r < f.t.rows; r++ {
		x := f.t.x[r*rowLen : r*rowLen+f.t.cols]
		y := f.out[r*rowLen : r*rowLen+f.t.cols]
		for i, wt := range f.t.rowWeights(r)[:f.t.cols] {
			d := float64(y[i]) - float64(x[i])
			se += float64(wt) * d * d
			sw += float64(wt)
		}
	}
	return se / sw
}

// decode reconstructs every row from idx into f.out.
func (f *fullPass) decode(v metanet.Views, idx []int32) error {
	if f.out == nil {
		f.out = make([]float32, len(f.idx)*f.s.Dim)
	}
	return decodeRows(f.t.k, f.s, v.Decoder, v.Codebook, idx, f.t.rows, f.out)
}

// decodeRows runs the decoder kernel and, for a shape with identity paths,
// adds each sub-vector's codeword (the path around D0).
func decodeRows(k bindings.Kernels, s metanet.Shape, dec bindings.Decoder, c []float32, idx []int32, rows int, out []float32) error {
	if err := k.Decode(dec, c, idx, rows, out); err != nil {
		return err
	}
	if s.Skip {
		d := s.Dim
		for i, j := range idx[:rows*s.E] {
			o := out[i*d : (i+1)*d]
			for q, cv := range c[int(j)*d : (int(j)+1)*d] {
				o[q] += cv
			}
		}
	}
	return nil
}

// kmeansInit fills the codebook with k-means of the initial latents: K
// distinct latents drawn by rng, then Lloyd steps until no assignment
// changes (at most kmeansInitSteps). It returns the full-pass MSE.
func (f *fullPass) kmeansInit(v metanet.Views, rng *rand.Rand) (float64, error) {
	if err := f.encode(v); err != nil {
		return 0, err
	}
	lat, n := f.s.Latent, len(f.idx)
	// rng.Perm(n)'s permutation, in int32s: half its memory on a big group.
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	for j, i := range perm[:f.s.K] {
		copy(v.Codebook[j*lat:(j+1)*lat], f.z[int(i)*lat:(int(i)+1)*lat])
	}
	perm = nil
	prev := make([]int32, n)
	for step := 0; step < kmeansInitSteps; step++ {
		copy(prev, f.idx)
		if err := f.lloydStep(v); err != nil {
			return 0, err
		}
		if step > 0 && slices.Equal(prev, f.idx) {
			break
		}
	}
	return f.run(v)
}

// kmeansInitSteps bounds the Lloyd steps of the initialisation.
const kmeansInitSteps = 25

// kmeansRefresh is one exact Lloyd step on the latents: each codeword becomes
// the mean of the latents assigned to it, and each dead codeword (none
// assigned) is re-seeded from a latent with one of the largest errors.
func (f *fullPass) kmeansRefresh(v metanet.Views) error {
	if err := f.encode(v); err != nil {
		return err
	}
	return f.lloydStep(v)
}

// lloydStep is kmeansRefresh on the latents already in f.z.
func (f *fullPass) lloydStep(v metanet.Views) error {
	if err := f.assign(v); err != nil {
		return err
	}
	lat, k := f.s.Latent, f.s.K
	sums := make([]float64, k*lat)
	counts := make([]int64, k)
	if err := f.t.k.CodebookStats(f.z, len(f.idx), lat, f.idx, k, sums, counts); err != nil {
		return err
	}
	var dead []int
	for j, c := range counts {
		if c == 0 {
			dead = append(dead, j)
			continue
		}
		for t := 0; t < lat; t++ {
			v.Codebook[j*lat+t] = float32(sums[j*lat+t] / float64(c))
		}
	}
	if len(dead) == 0 {
		return nil
	}
	// Worst-served latents first; ties by position keep this deterministic.
	order := make([]int, len(f.idx))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return f.dist[order[a]] > f.dist[order[b]] })
	if len(order) < len(dead) {
		return fmt.Errorf("k-means refresh: %d dead codewords but only %d latents", len(dead), len(order))
	}
	for n, j := range dead {
		i := order[n]
		copy(v.Codebook[j*lat:(j+1)*lat], f.z[i*lat:(i+1)*lat])
	}
	return nil
}

// Reconstruct rebuilds the members of a group from what Compress kept:
// shapes[i] is member i's [rows, cols]; the result holds each member's
// rows*cols weights. It runs the decoder; nothing is looked up in a table,
// because the reshaped layer norm makes each decoded sub-vector depend on its
// whole row.
func Reconstruct(k bindings.Kernels, res *Result, shapes [][2]int) ([][]float32, error) {
	s := res.Shape
	if len(res.Scales) != len(shapes) {
		return nil, fmt.Errorf("reconstruct: %d scales for %d matrices", len(res.Scales), len(shapes))
	}
	if len(res.Codebook) != s.K*s.Latent || len(res.Decoder) != s.DecoderParams() {
		return nil, fmt.Errorf("reconstruct: codebook or decoder size does not match the shape %+v", s)
	}
	dec := bindings.Decoder{E: s.E, Dim: s.Dim, Latent: s.Latent, Hidden: s.Hidden, P: res.Decoder}
	rowLen := s.E * s.Dim
	out := make([][]float32, len(shapes))
	at := 0
	for i, sh := range shapes {
		rows, cols := sh[0], sh[1]
		if (cols+s.Dim-1)/s.Dim != s.E {
			return nil, fmt.Errorf("reconstruct: matrix %d has %d columns, the group's rows have %d sub-vectors of %d", i, cols, s.E, s.Dim)
		}
		n := rows * s.E
		if at+n > len(res.Indices) {
			return nil, fmt.Errorf("reconstruct: %d indices, matrix %d needs up to %d", len(res.Indices), i, at+n)
		}
		buf := make([]float32, rows*rowLen)
		if err := decodeRows(k, s, dec, res.Codebook, res.Indices[at:at+n], rows, buf); err != nil {
			return nil, err
		}
		at += n
		w := make([]float32, rows*cols)
		scale := res.Scales[i]
		for r := 0; r < rows; r++ {
			src := buf[r*rowLen : r*rowLen+cols]
			dst := w[r*cols : (r+1)*cols]
			for c, v := range src {
				dst[c] = v * scale
			}
		}
		out[i] = w
	}
	if at != len(res.Indices) {
		return nil, fmt.Errorf("reconstruct: %d indices left over", len(res.Indices)-at)
	}
	return out, nil
}
