// Package nearest finds, for points of a latent space, the few codewords
// nearest to each: the candidates that index refinement and index search
// try.
package nearest

import "pocketllm-native/internal/parallel"

// Find lists, for each of the len(points)/lat points, the t rows of the
// codebook cb (lat values each) nearest to it by squared distance
// ([points*t], nearest first, ties to the lower index: the first t of a
// stable sort by distance). With skipSelf the points are the codebook
// itself and point i never lists codeword i. t must not exceed the
// codewords a point may list.
//
// Each point keeps a sorted list of its t best while scanning, so the cost
// is points·K·(lat+t), not a sort of K distances per point; points are
// shared among goroutines, which changes nothing in the result.
func Find(points, cb []float32, lat, t int, skipSelf bool) []int32 {
	n, kk := len(points)/lat, len(cb)/lat
	if t <= 0 || n == 0 {
		return nil
	}
	out := make([]int32, n*t)
	parallel.Range(n, func(lo, hi int) {
		dist := make([]float32, t)
		for i := lo; i < hi; i++ {
			idx := out[i*t : (i+1)*t]
			kept := 0
			p := points[i*lat : (i+1)*lat]
			for j := 0; j < kk; j++ {
				if skipSelf && j == i {
					continue
				}
				var d float32
				for q, x := range p {
					y := x - cb[j*lat+q]
					d += y * y
				}
				if kept == t && d >= dist[t-1] {
					continue
				}
				// Insert j after every kept entry at most as near (ties keep the lower index first).
				at := min(kept, t-1)
				for at > 0 && dist[at-1] > d {
					at--
				}
				if kept < t {
					kept++
				}
				copy(dist[at+1:kept], dist[at:kept-1])
				copy(idx[at+1:kept], idx[at:kept-1])
				dist[at], idx[at] = d, int32(j)
			}
		}
	})
	return out
}
