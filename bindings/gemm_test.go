package bindings

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// plainGemm is the loop of the Gemm doc comment in float32, each product
// rounded before it is added (the conversion forbids fusing).
func plainGemm(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for t := 0; t < k; t++ {
				x, y := a[i*k+t], b[t*n+j]
				if transA {
					x = a[t*m+i]
				}
				if transB {
					y = b[j*k+t]
				}
				s += float32(x * y)
			}
			if beta == 0 {
				c[i*n+j] = alpha * s
			} else {
				c[i*n+j] = alpha*s + beta*c[i*n+j]
			}
		}
	}
}

// normalVec is n draws from the standard normal distribution.
func normalVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// The blocked pure-Go product sums every output in the loop's order, so it
// equals the plain loop bit for bit, across micro-tile, tile and k-slice
// boundaries and for any GOMAXPROCS.
func TestGemmEqualsPlainLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []struct{ m, n, k int }{{1, 1, 1}, {3, 5, 7}, {65, 257, 300}, {130, 70, 600}} {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, beta := range []float32{0, 0.5} {
				a, b := normalVec(r, s.m*s.k), normalVec(r, s.k*s.n)
				c0 := normalVec(r, s.m*s.n)
				want := append([]float32(nil), c0...)
				plainGemm(tr[0], tr[1], s.m, s.n, s.k, 1.5, a, b, beta, want)
				for _, procs := range []int{1, 3} {
					name := fmt.Sprintf("%v_%dx%dx%d_beta%g_procs%d", tr, s.m, s.n, s.k, beta, procs)
					old := runtime.GOMAXPROCS(procs)
					got := append([]float32(nil), c0...)
					err := Go().Gemm(tr[0], tr[1], s.m, s.n, s.k, 1.5, a, b, beta, got)
					runtime.GOMAXPROCS(old)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s: c[%d] = %v, the plain loop gives %v", name, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}
