package pocketllm

import (
	"pocketllm-native/compress/metanet"
	"pocketllm-native/compress/nearest"
	"pocketllm-native/internal/parallel"
)

// refine improves the final indices by coordinate descent on what is
// actually stored: the decoded rows' weighted error. Nearest-codeword
// assignment in latent space is only a proxy for it, because the decoder is
// nonlinear and its reshaped layer norms make every decoded sub-vector depend
// on the whole row. For each sub-vector position in turn, every row tries
// each of its top candidates codewords there (nearest in latent space first),
// all rows decoded in one batched call, and keeps a candidate only where its
// row's error falls. Rows decode independently, so the error never rises.
func (f *fullPass) refine(v metanet.Views, candidates, passes int) error {
	s, t := f.s, f.t
	e, lat, k := s.E, s.Latent, s.K
	candidates = min(candidates, k)
	n := len(f.idx)
	// The candidates of one position's sub-vectors, found when the position
	// comes up: a table for every sub-vector at once would hold candidates
	// int32 per sub-vector, twice the group's own fp32 size at d = 4.
	zp := make([]float32, t.rows*lat)
	rowLen := e * s.Dim
	rowErr := func(out []float32, r int) float64 {
		var se float64
		x := t.x[r*rowLen:]
		for i, wt := range t.rowWeights(r)[:t.cols] {
			d := float64(out[r*rowLen+i]) - float64(x[i])
			se += float64(wt) * d * d
		}
		return se
	}
	if err := f.decode(v, f.idx); err != nil {
		return err
	}
	best := make([]float64, t.rows)
	parallel.Range(t.rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			best[r] = rowErr(f.out, r)
		}
	})
	trial := make([]int32, n)
	for pass := 0; pass < passes; pass++ {
		for p := 0; p < e; p++ {
			for r := 0; r < t.rows; r++ {
				copy(zp[r*lat:(r+1)*lat], f.z[(r*e+p)*lat:])
			}
			cand := nearest.Find(zp, v.Codebook[:k*lat], lat, candidates, false)
			for c := 0; c < candidates; c++ {
				copy(trial, f.idx)
				changed := false
				for r := 0; r < t.rows; r++ {
					j := cand[r*candidates+c]
					changed = changed || j != trial[r*e+p]
					trial[r*e+p] = j
				}
				if !changed {
					continue
				}
				if err := f.decode(v, trial); err != nil {
					return err
				}
				// Rows are independent: each is compared and kept on its own.
				parallel.Range(t.rows, func(lo, hi int) {
					for r := lo; r < hi; r++ {
						if ev := rowErr(f.out, r); ev < best[r] {
							best[r] = ev
							f.idx[r*e+p] = trial[r*e+p]
						}
					}
				})
			}
		}
	}
	return nil
}
