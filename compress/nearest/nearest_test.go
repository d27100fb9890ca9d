package nearest

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestFindMatchesStableSort: Find lists exactly what a stable sort by
// distance gives, ties to the lower index, for points apart from the
// codebook and for the codebook against itself.
func TestFindMatchesStableSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 100; trial++ {
		kk, lat := 2+rng.IntN(40), 1+rng.IntN(3)
		skipSelf := trial%2 == 0
		cb := make([]float32, kk*lat)
		for i := range cb {
			cb[i] = float32(rng.IntN(4)) // many ties
		}
		points := cb
		if !skipSelf {
			points = make([]float32, (1+rng.IntN(30))*lat)
			for i := range points {
				points[i] = float32(rng.IntN(4))
			}
		}
		limit := kk
		if skipSelf {
			limit--
		}
		tt := min(1+rng.IntN(8), limit)
		got := Find(points, cb, lat, tt, skipSelf)
		for i := 0; i < len(points)/lat; i++ {
			dist := func(j int) float32 {
				var d float32
				for q := 0; q < lat; q++ {
					y := points[i*lat+q] - cb[j*lat+q]
					d += y * y
				}
				return d
			}
			var order []int
			for j := 0; j < kk; j++ {
				if !skipSelf || j != i {
					order = append(order, j)
				}
			}
			sort.SliceStable(order, func(a, b int) bool { return dist(order[a]) < dist(order[b]) })
			if !skipSelf {
				if want := sortedCandidates(points[i*lat:(i+1)*lat], cb, lat, tt); !slices.Equal(got[i*tt:(i+1)*tt], want) {
					t.Fatalf("trial %d, point %d: %v, the sorting baseline %v", trial, i, got[i*tt:(i+1)*tt], want)
				}
			}
			for c := 0; c < tt; c++ {
				if int(got[i*tt+c]) != order[c] {
					t.Fatalf("trial %d (skipSelf %v), point %d, candidate %d: %d, want %d", trial, skipSelf, i, c, got[i*tt+c], order[c])
				}
			}
		}
	}
}

// sortedCandidates is what refinement did before Find: every distance to
// every codeword, stably sorted, first t kept. The benchmarks' baseline.
func sortedCandidates(points, cb []float32, lat, t int) []int32 {
	n, kk := len(points)/lat, len(cb)/lat
	out := make([]int32, n*t)
	type scored struct {
		d float32
		j int32
	}
	buf := make([]scored, kk)
	for i := 0; i < n; i++ {
		for j := 0; j < kk; j++ {
			var d float32
			for q := 0; q < lat; q++ {
				y := points[i*lat+q] - cb[j*lat+q]
				d += y * y
			}
			buf[j] = scored{d, int32(j)}
		}
		sort.SliceStable(buf, func(a, b int) bool { return buf[a].d < buf[b].d })
		for c := 0; c < t; c++ {
			out[i*t+c] = buf[c].j
		}
	}
	return out
}

// The candidates of 16384 sub-vectors among 2048 codewords of 4 values,
// 8 each (refinement's default): Find against the sort it replaced.
func benchmarkCandidates(b *testing.B, find func(points, cb []float32, lat, t int) []int32) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, kk, lat, t = 16384, 2048, 4, 8
	points, cb := make([]float32, n*lat), make([]float32, kk*lat)
	for i := range points {
		points[i] = float32(rng.NormFloat64())
	}
	for i := range cb {
		cb[i] = float32(rng.NormFloat64())
	}
	b.ResetTimer()
	for range b.N {
		find(points, cb, lat, t)
	}
}

func BenchmarkFind(b *testing.B) {
	benchmarkCandidates(b, func(p, cb []float32, lat, t int) []int32 { return Find(p, cb, lat, t, false) })
}

func BenchmarkStableSort(b *testing.B) { benchmarkCandidates(b, sortedCandidates) }
