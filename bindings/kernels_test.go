package bindings_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/backendtest"
	"pocketllm-native/testvectors"
)

// Random shapes beyond the golden files, each checked against the oracle.

func randVec(r *rand.Rand, n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + sd*r.NormFloat64())
	}
	return v
}

func randIdx(r *rand.Rand, n, k int) []int32 {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(r.IntN(k))
	}
	return idx
}

func rlnParams(r *rand.Rand, w int) []float32 {
	return append(randVec(r, w, 1, 0.2), randVec(r, w, 0, 0.2)...)
}

func TestAssignShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range []struct{ n, dz, k int }{
			{1000, 8, 256}, {777, 3, 1}, {300, 5, 33}, {0, 4, 3}, {513, 16, 100}, {64, 1, 7}, {5, 8, 4097},
		} {
			t.Run(fmt.Sprintf("n%d_dz%d_k%d", s.n, s.dz, s.k), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.n), uint64(s.k)))
				z, c := randVec(r, s.n*s.dz, 0, 1), randVec(r, s.k*s.dz, 0, 1)
				idx, dist := runAssign(t, k, z, s.n, s.dz, c, s.k, true)
				checkAssign(t, z, s.n, s.dz, c, s.k, idx, dist, nil)
			})
		}
		// Duplicated codewords scattered through the codebook (so across
		// any vector-width or tile boundary) and latents placed on them
		// or halfway between two: the lowest of identical codewords wins.
		t.Run("ties", func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 7))
			const n, dz, kk = 400, 4, 67
			c := randVec(r, kk*dz, 0, 1)
			for _, dup := range [][2]int{{3, 10}, {3, 33}, {3, 66}, {0, 17}, {5, 64}} {
				copy(c[dup[1]*dz:(dup[1]+1)*dz], c[dup[0]*dz:(dup[0]+1)*dz])
			}
			z := randVec(r, n*dz, 0, 1)
			for i := 0; i < n; i += 3 {
				j := []int{3, 0, 5, 66}[i%4]
				copy(z[i*dz:(i+1)*dz], c[j*dz:(j+1)*dz])
			}
			idx, dist := runAssign(t, k, z, n, dz, c, kk, true)
			checkAssign(t, z, n, dz, c, kk, idx, dist, nil)
		})
	})
}

func TestCodebookStatsShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range []struct{ n, dz, k int }{{5000, 8, 256}, {777, 3, 1}, {0, 2, 5}, {300, 5, 1000}} {
			t.Run(fmt.Sprintf("n%d_dz%d_k%d", s.n, s.dz, s.k), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.n), 3))
				z, idx := randVec(r, s.n*s.dz, 0, 1), randIdx(r, s.n, s.k)
				sums, counts := runStats(t, k, z, s.n, s.dz, idx, s.k)
				ws, wc, err := testvectors.CodebookStats(z, s.n, s.dz, idx, s.k)
				must(t, "oracle", err)
				checkStats(t, z, s.n, s.dz, idx, s.k, sums, counts, ws, wc)
			})
		}
	})
}

var mlpTestShapes = []struct{ in, hidden, out, rows int }{
	{8, 16, 8, 1000}, {3, 5, 7, 513}, {1, 1, 1, 1}, {16, 16, 8, 0}, {5, 3, 2, 257}, {8, 16, 8, 256}, {4, 33, 4, 70},
}

func TestMLPShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range mlpTestShapes {
			t.Run(fmt.Sprintf("%dx%dx%d_rows%d", s.in, s.hidden, s.out, s.rows), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.rows), uint64(s.hidden)))
				p := randVec(r, bindings.MLPParams(s.in, s.hidden, s.out), 0, 0.5)
				x, dy := randVec(r, s.rows*s.in, 0, 1), randVec(r, s.rows*s.out, 0, 1)
				g0 := randVec(r, len(p), 0, 0.1)
				m := mlpOf(s.in, s.hidden, s.out, p)
				pre, y := runMLPForward(t, k, m, x, s.rows)
				wpre, wy := testvectors.MLPForward(p, s.in, s.hidden, s.out, x, s.rows)
				checkNMSE(t, "pre", pre, wpre, mlpNMSE)
				checkNMSE(t, "y", y, wy, mlpNMSE)
				wg, wdx := testvectors.MLPBackward(p, s.in, s.hidden, s.out, x, dy, s.rows)
				g, dx := runMLPBackward(t, k, m, g0, x, pre, dy, s.rows, true)
				checkGradNMSE(t, "g", g, g0, wg, mlpNMSE)
				checkNMSE(t, "dx", dx, wdx, mlpNMSE)
				// Without dx the gradient must be the same, bit for bit.
				g2, _ := runMLPBackward(t, k, m, g0, x, pre, dy, s.rows, false)
				if !slices.Equal(g, g2) {
					t.Errorf("gradient differs when dx is nil")
				}
			})
		}
	})
}

var rlnTestShapes = []struct{ width, groups int }{{64, 300}, {7, 513}, {1, 5}, {24, 0}, {200, 257}, {8, 256}}

func TestRLNShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range rlnTestShapes {
			t.Run(fmt.Sprintf("w%d_groups%d", s.width, s.groups), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.width), uint64(s.groups)))
				p := rlnParams(r, s.width)
				x, dy := randVec(r, s.width*s.groups, 0.5, 2), randVec(r, s.width*s.groups, 0, 1)
				g0 := randVec(r, 2*s.width, 0, 0.1)
				n := bindings.RLN{Width: s.width, P: p}
				y, mean, rstd := runRLNForward(t, k, n, x, s.groups)
				wy, wmean, wrstd := testvectors.RLNForward(p, s.width, x, s.groups)
				checkNMSE(t, "y", y, wy, rlnNMSE)
				checkNMSE(t, "mean", mean, wmean, rlnNMSE)
				checkNMSE(t, "rstd", rstd, wrstd, rlnNMSE)
				wg, wdx := testvectors.RLNBackward(p, s.width, x, dy, s.groups)
				g, dx := runRLNBackward(t, k, n, g0, x, dy, s.groups, mean, rstd)
				checkGradNMSE(t, "g", g, g0, wg, rlnNMSE)
				checkNMSE(t, "dx", dx, wdx, rlnNMSE)
			})
		}
	})
}

func TestAdamShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range []struct{ n, step int }{{10007, 5}, {1, 1}, {0, 2}, {4096, 100000}} {
			t.Run(fmt.Sprintf("n%d_step%d", s.n, s.step), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.n), uint64(s.step)))
				p, g, m := randVec(r, s.n, 0, 1), randVec(r, s.n, 0, 0.1), randVec(r, s.n, 0, 0.05)
				v := randVec(r, s.n, 0, 0.01)
				for i := range v {
					v[i] *= v[i]
				}
				const lr, b1, b2, eps = float32(1.6e-2), float32(0.9), float32(0.999), float32(1e-8)
				p2, m2, v2 := runAdam(t, k, p, g, m, v, lr, b1, b2, eps, s.step)
				wp, wm, wv := testvectors.Adam(p, g, m, v, float64(lr), float64(b1), float64(b2), float64(eps), s.step)
				checkAdam(t, p, g, m, v, lr, b1, b2, eps, s.step, p2, m2, v2, wp, wm, wv)
			})
		}
	})
}

// TestGemmShapes runs every transpose combination over sizes that cross the
// micro-tile, tile and k-slice boundaries of every backend, each with C
// poisoned by NaN and beta = 0, accumulated into (beta = 1) and scaled.
func TestGemmShapes(t *testing.T) {
	type gemmCase struct {
		name           string
		transA, transB bool
		m, n, k        int
		alpha, beta    float32
		a, b, c0       []float32 // c0 nil: C starts as NaN
		want           []float64
	}
	var cases []gemmCase
	for _, s := range []struct{ m, n, k int }{
		{1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {130, 300, 520}, {9, 10, 4100}, {3, 5, 0}, {0, 4, 3}, {4, 0, 3},
	} {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-0.375, 2.5}} {
				r := rand.New(rand.NewPCG(uint64(s.m*1000+s.n), uint64(s.k)))
				gc := gemmCase{transA: tr[0], transB: tr[1], m: s.m, n: s.n, k: s.k, alpha: ab[0], beta: ab[1],
					a: randVec(r, s.m*s.k, 0, 1), b: randVec(r, s.k*s.n, 0, 1)}
				if gc.beta != 0 {
					gc.c0 = randVec(r, s.m*s.n, 0, 1)
				}
				gc.name = fmt.Sprintf("%s%s_%dx%dx%d_alpha%g_beta%g", tname(tr[0]), tname(tr[1]), s.m, s.n, s.k, gc.alpha, gc.beta)
				gc.want = testvectors.Gemm(gc.transA, gc.transB, s.m, s.n, s.k, float64(gc.alpha), gc.a, gc.b, float64(gc.beta), gc.c0)
				cases = append(cases, gc)
			}
		}
	}
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, gc := range cases {
			t.Run(gc.name, func(t *testing.T) {
				got := runGemm(t, k, gc.transA, gc.transB, gc.m, gc.n, gc.k, gc.alpha, gc.a, gc.b, gc.beta, gc.c0)
				checkNMSE(t, "c", got, gc.want, gemmNMSE)
			})
		}
	})
}

func tname(trans bool) string {
	if trans {
		return "T"
	}
	return "N"
}

func TestDecodeShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, s := range []struct{ e, dim, latent, hidden, rows, k int }{
			{8, 8, 8, 16, 300, 256}, {3, 5, 3, 7, 37, 5}, {4, 8, 8, 16, 0, 3}, {2, 4, 4, 4, 9, 1}, {1, 6, 2, 3, 40, 17}, {22, 8, 8, 16, 33, 64},
		} {
			t.Run(fmt.Sprintf("e%d_dim%d_lat%d_h%d_rows%d_k%d", s.e, s.dim, s.latent, s.hidden, s.rows, s.k), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(s.rows), uint64(s.k)))
				np := bindings.DecoderParams(s.e, s.dim, s.latent, s.hidden)
				p := randVec(r, np, 0, 0.4)
				// RLN scales near 1, as training keeps them.
				dec := bindings.Decoder{E: s.e, Dim: s.dim, Latent: s.latent, Hidden: s.hidden, P: p}
				n1, _, n2, _, n3, _ := dec.Parts()
				for _, n := range []bindings.RLN{n1, n2, n3} {
					copy(n.P, rlnParams(r, n.Width))
				}
				c, idx := randVec(r, s.k*s.latent, 0, 1), randIdx(r, s.rows*s.e, s.k)
				out := runDecode(t, k, dec, c, idx, s.rows)
				want, err := testvectors.Decode(p, s.e, s.dim, s.latent, s.hidden, c, s.k, idx, s.rows)
				must(t, "oracle", err)
				checkNMSE(t, "out", out, want, decodeNMSE)
			})
		}
	})
}

// TestErrors hands every backend bad arguments: each call must return an
// error, not panic, and leave every buffer (and its guards) as it was.
func TestErrors(t *testing.T) {
	type call func(k bindings.Kernels, a *arena) error
	const n, dz, kk = 6, 3, 4
	r := rand.New(rand.NewPCG(1, 2))
	z, c := randVec(r, n*dz, 0, 1), randVec(r, kk*dz, 0, 1)
	idx := randIdx(r, n, kk)
	const in, h, out, rows = 3, 4, 2, 5
	mp := randVec(r, bindings.MLPParams(in, h, out), 0, 0.5)
	x := randVec(r, rows*in, 0, 1)
	const w, groups = 4, 3
	rp := rlnParams(r, w)
	rx := randVec(r, w*groups, 0, 1)
	const e, dim, lat, hid, drows = 2, 3, 2, 4, 3
	dp := randVec(r, bindings.DecoderParams(e, dim, lat, hid), 0, 0.4)
	dc := randVec(r, kk*lat, 0, 1)
	didx := randIdx(r, drows*e, kk)
	dec := func(a *arena) bindings.Decoder {
		return bindings.Decoder{E: e, Dim: dim, Latent: lat, Hidden: hid, P: a.in("p", dp)}
	}
	mlp := func(a *arena, p []float32, name string) bindings.MLP { return mlpOf(in, h, out, a.in(name, p)) }
	short := func(v []float32) []float32 { return v[:len(v)-1] }
	withIdx := func(v []int32, i int, j int32) []int32 { v = slices.Clone(v); v[i] = j; return v }

	cases := []struct {
		name string
		call call
	}{
		{"assign/short_z", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", short(z)), n, dz, a.in("c", c), kk, a.outI32("idx", n), nil)
		}},
		{"assign/short_c", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), n, dz, a.in("c", short(c)), kk, a.outI32("idx", n), nil)
		}},
		{"assign/short_idx", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), n, dz, a.in("c", c), kk, a.outI32("idx", n-1), nil)
		}},
		{"assign/short_dist", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), n, dz, a.in("c", c), kk, a.outI32("idx", n), a.out("dist", n-1))
		}},
		{"assign/k0", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), n, dz, a.in("c", c), 0, a.outI32("idx", n), nil)
		}},
		{"assign/dz0", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), n, 0, a.in("c", c), kk, a.outI32("idx", n), nil)
		}},
		{"assign/negative_n", func(k bindings.Kernels, a *arena) error {
			return k.Assign(a.in("z", z), -1, dz, a.in("c", c), kk, a.outI32("idx", n), nil)
		}},
		{"codebook_stats/short_sums", func(k bindings.Kernels, a *arena) error {
			return k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", idx), kk, a.outF64("sums", kk*dz-1), a.outI64("counts", kk))
		}},
		{"codebook_stats/short_counts", func(k bindings.Kernels, a *arena) error {
			return k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", idx), kk, a.outF64("sums", kk*dz), a.outI64("counts", kk-1))
		}},
		{"codebook_stats/short_idx", func(k bindings.Kernels, a *arena) error {
			return k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", idx[:n-1]), kk, a.outF64("sums", kk*dz), a.outI64("counts", kk))
		}},
		{"codebook_stats/index_negative", func(k bindings.Kernels, a *arena) error {
			return k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", withIdx(idx, 4, -1)), kk, a.outF64("sums", kk*dz), a.outI64("counts", kk))
		}},
		{"codebook_stats/index_k", func(k bindings.Kernels, a *arena) error {
			return k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", withIdx(idx, n-1, kk)), kk, a.outF64("sums", kk*dz), a.outI64("counts", kk))
		}},
		{"mlp_forward/short_params", func(k bindings.Kernels, a *arena) error {
			return k.MLPForward(mlp(a, short(mp), "p"), a.in("x", x), rows, a.out("pre", rows*h), a.out("y", rows*out))
		}},
		{"mlp_forward/short_x", func(k bindings.Kernels, a *arena) error {
			return k.MLPForward(mlp(a, mp, "p"), a.in("x", short(x)), rows, a.out("pre", rows*h), a.out("y", rows*out))
		}},
		{"mlp_forward/short_pre", func(k bindings.Kernels, a *arena) error {
			return k.MLPForward(mlp(a, mp, "p"), a.in("x", x), rows, a.out("pre", rows*h-1), a.out("y", rows*out))
		}},
		{"mlp_forward/short_y", func(k bindings.Kernels, a *arena) error {
			return k.MLPForward(mlp(a, mp, "p"), a.in("x", x), rows, a.out("pre", rows*h), a.out("y", rows*out-1))
		}},
		{"mlp_forward/hidden0", func(k bindings.Kernels, a *arena) error {
			m := mlp(a, mp, "p")
			m.Hidden = 0
			return k.MLPForward(m, a.in("x", x), rows, a.out("pre", rows*h), a.out("y", rows*out))
		}},
		{"mlp_forward/negative_rows", func(k bindings.Kernels, a *arena) error {
			return k.MLPForward(mlp(a, mp, "p"), a.in("x", x), -2, a.out("pre", rows*h), a.out("y", rows*out))
		}},
		{"mlp_backward/gradient_shape", func(k bindings.Kernels, a *arena) error {
			g := bindings.MLP{In: out, Hidden: h, Out: in, P: a.in("g", make([]float32, len(mp)))}
			return k.MLPBackward(mlp(a, mp, "p"), g, a.in("x", x), a.in("pre", make([]float32, rows*h)), a.in("dy", make([]float32, rows*out)), rows, a.out("dx", rows*in))
		}},
		{"mlp_backward/short_g", func(k bindings.Kernels, a *arena) error {
			return k.MLPBackward(mlp(a, mp, "p"), mlp(a, make([]float32, len(mp)-1), "g"), a.in("x", x), a.in("pre", make([]float32, rows*h)), a.in("dy", make([]float32, rows*out)), rows, nil)
		}},
		{"mlp_backward/short_dy", func(k bindings.Kernels, a *arena) error {
			return k.MLPBackward(mlp(a, mp, "p"), mlp(a, make([]float32, len(mp)), "g"), a.in("x", x), a.in("pre", make([]float32, rows*h)), a.in("dy", make([]float32, rows*out-1)), rows, nil)
		}},
		{"mlp_backward/short_pre", func(k bindings.Kernels, a *arena) error {
			return k.MLPBackward(mlp(a, mp, "p"), mlp(a, make([]float32, len(mp)), "g"), a.in("x", x), a.in("pre", make([]float32, rows*h-1)), a.in("dy", make([]float32, rows*out)), rows, nil)
		}},
		{"mlp_backward/short_dx", func(k bindings.Kernels, a *arena) error {
			return k.MLPBackward(mlp(a, mp, "p"), mlp(a, make([]float32, len(mp)), "g"), a.in("x", x), a.in("pre", make([]float32, rows*h)), a.in("dy", make([]float32, rows*out)), rows, a.out("dx", rows*in-1))
		}},
		{"rln_forward/width0", func(k bindings.Kernels, a *arena) error {
			return k.RLNForward(bindings.RLN{Width: 0, P: a.in("p", rp)}, a.in("x", rx), groups, a.out("y", w*groups), a.out("mean", groups), a.out("rstd", groups))
		}},
		{"rln_forward/short_params", func(k bindings.Kernels, a *arena) error {
			return k.RLNForward(bindings.RLN{Width: w, P: a.in("p", short(rp))}, a.in("x", rx), groups, a.out("y", w*groups), a.out("mean", groups), a.out("rstd", groups))
		}},
		{"rln_forward/short_y", func(k bindings.Kernels, a *arena) error {
			return k.RLNForward(bindings.RLN{Width: w, P: a.in("p", rp)}, a.in("x", rx), groups, a.out("y", w*groups-1), a.out("mean", groups), a.out("rstd", groups))
		}},
		{"rln_forward/short_rstd", func(k bindings.Kernels, a *arena) error {
			return k.RLNForward(bindings.RLN{Width: w, P: a.in("p", rp)}, a.in("x", rx), groups, a.out("y", w*groups), a.out("mean", groups), a.out("rstd", groups-1))
		}},
		{"rln_backward/gradient_width", func(k bindings.Kernels, a *arena) error {
			return k.RLNBackward(bindings.RLN{Width: w, P: a.in("p", rp)}, bindings.RLN{Width: w - 1, P: a.in("g", make([]float32, 2*w))},
				a.in("x", rx), a.in("dy", rx), groups, a.in("mean", make([]float32, groups)), a.in("rstd", make([]float32, groups)), a.out("dx", w*groups))
		}},
		{"rln_backward/short_dx", func(k bindings.Kernels, a *arena) error {
			return k.RLNBackward(bindings.RLN{Width: w, P: a.in("p", rp)}, bindings.RLN{Width: w, P: a.in("g", make([]float32, 2*w))},
				a.in("x", rx), a.in("dy", rx), groups, a.in("mean", make([]float32, groups)), a.in("rstd", make([]float32, groups)), a.out("dx", w*groups-1))
		}},
		{"rln_backward/short_mean", func(k bindings.Kernels, a *arena) error {
			return k.RLNBackward(bindings.RLN{Width: w, P: a.in("p", rp)}, bindings.RLN{Width: w, P: a.in("g", make([]float32, 2*w))},
				a.in("x", rx), a.in("dy", rx), groups, a.in("mean", make([]float32, groups-1)), a.in("rstd", make([]float32, groups)), a.out("dx", w*groups))
		}},
		{"adam/short_g", func(k bindings.Kernels, a *arena) error {
			return k.Adam(a.in("p", x), a.in("g", short(x)), a.in("m", x), a.in("v", x), 1e-2, 0.9, 0.999, 1e-8, 1)
		}},
		{"adam/short_v", func(k bindings.Kernels, a *arena) error {
			return k.Adam(a.in("p", x), a.in("g", x), a.in("m", x), a.in("v", short(x)), 1e-2, 0.9, 0.999, 1e-8, 1)
		}},
		{"adam/step0", func(k bindings.Kernels, a *arena) error {
			return k.Adam(a.in("p", x), a.in("g", x), a.in("m", x), a.in("v", x), 1e-2, 0.9, 0.999, 1e-8, 0)
		}},
		{"decode/index_k", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", dc), a.inI32("idx", withIdx(didx, drows*e-1, kk)), drows, a.out("out", drows*e*dim))
		}},
		{"decode/index_negative", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", dc), a.inI32("idx", withIdx(didx, 0, -1)), drows, a.out("out", drows*e*dim))
		}},
		{"decode/index_huge", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", dc), a.inI32("idx", withIdx(didx, 2, math.MaxInt32)), drows, a.out("out", drows*e*dim))
		}},
		{"decode/short_out", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", dc), a.inI32("idx", didx), drows, a.out("out", drows*e*dim-1))
		}},
		{"decode/short_idx", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", dc), a.inI32("idx", didx[:drows*e-1]), drows, a.out("out", drows*e*dim))
		}},
		{"decode/short_params", func(k bindings.Kernels, a *arena) error {
			d := dec(a)
			d.P = d.P[:len(d.P)-1]
			return k.Decode(d, a.in("c", dc), a.inI32("idx", didx), drows, a.out("out", drows*e*dim))
		}},
		{"decode/partial_codeword", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", short(dc)), a.inI32("idx", didx), drows, a.out("out", drows*e*dim))
		}},
		{"decode/empty_codebook", func(k bindings.Kernels, a *arena) error {
			return k.Decode(dec(a), a.in("c", nil), a.inI32("idx", didx), drows, a.out("out", drows*e*dim))
		}},
	}
	ga, gb := randVec(r, 4*3, 0, 1), randVec(r, 3*5, 0, 1)
	cases = append(cases, []struct {
		name string
		call call
	}{
		{"gemm/short_a", func(k bindings.Kernels, a *arena) error {
			return k.Gemm(false, false, 4, 5, 3, 1, a.in("a", short(ga)), a.in("b", gb), 0, a.out("c", 20))
		}},
		{"gemm/short_b", func(k bindings.Kernels, a *arena) error {
			return k.Gemm(true, true, 4, 5, 3, 1, a.in("a", ga), a.in("b", short(gb)), 0, a.out("c", 20))
		}},
		{"gemm/short_c", func(k bindings.Kernels, a *arena) error {
			return k.Gemm(false, false, 4, 5, 3, 1, a.in("a", ga), a.in("b", gb), 1, a.in("c", make([]float32, 19)))
		}},
		{"gemm/negative_k", func(k bindings.Kernels, a *arena) error {
			return k.Gemm(false, false, 4, 5, -3, 1, a.in("a", ga), a.in("b", gb), 0, a.out("c", 20))
		}},
	}...)
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var a arena
				err := tc.call(freezeFirst{k, &a}, &a)
				if err == nil {
					t.Fatal("no error")
				}
				t.Logf("error as expected: %v", err)
				a.check(t)
			})
		}
	})
}

// freezeFirst wraps a backend so that the arena is frozen after a call's
// arguments have been built (inside the call expression) and before the
// backend runs: everything must then come back unchanged.
type freezeFirst struct {
	k bindings.Kernels
	a *arena
}

func (f freezeFirst) Name() string { return f.k.Name() }

func (f freezeFirst) Assign(z []float32, n, dz int, c []float32, k int, idx []int32, dist []float32) error {
	f.a.frozen()
	return f.k.Assign(z, n, dz, c, k, idx, dist)
}

func (f freezeFirst) CodebookStats(z []float32, n, dz int, idx []int32, k int, sums []float64, counts []int64) error {
	f.a.frozen()
	return f.k.CodebookStats(z, n, dz, idx, k, sums, counts)
}

func (f freezeFirst) MLPForward(m bindings.MLP, x []float32, rows int, pre, y []float32) error {
	f.a.frozen()
	return f.k.MLPForward(m, x, rows, pre, y)
}

func (f freezeFirst) MLPBackward(m, g bindings.MLP, x, pre, dy []float32, rows int, dx []float32) error {
	f.a.frozen()
	return f.k.MLPBackward(m, g, x, pre, dy, rows, dx)
}

func (f freezeFirst) RLNForward(n bindings.RLN, x []float32, groups int, y, mean, rstd []float32) error {
	f.a.frozen()
	return f.k.RLNForward(n, x, groups, y, mean, rstd)
}

func (f freezeFirst) RLNBackward(n, g bindings.RLN, x, dy []float32, groups int, mean, rstd, dx []float32) error {
	f.a.frozen()
	return f.k.RLNBackward(n, g, x, dy, groups, mean, rstd, dx)
}

func (f freezeFirst) Adam(p, g, m, v []float32, lr, b1, b2, eps float32, step int) error {
	f.a.frozen()
	return f.k.Adam(p, g, m, v, lr, b1, b2, eps, step)
}

func (f freezeFirst) Decode(dec bindings.Decoder, c []float32, idx []int32, rows int, out []float32) error {
	f.a.frozen()
	return f.k.Decode(dec, c, idx, rows, out)
}

func (f freezeFirst) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) error {
	f.a.frozen()
	return f.k.Gemm(transA, transB, m, n, k, alpha, a, b, beta, c)
}

// TestDeterministic runs the reductions twice, and for the go and cpu
// backends at different thread counts: ReduceBlock makes the bytes
// independent of both.
func TestDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const in, h, out, rows = 8, 16, 8, 1000
	mp := randVec(r, bindings.MLPParams(in, h, out), 0, 0.5)
	x, dy := randVec(r, rows*in, 0, 1), randVec(r, rows*out, 0, 1)
	const w, groups = 24, 700
	rp := rlnParams(r, w)
	rx, rdy := randVec(r, w*groups, 0, 1), randVec(r, w*groups, 0, 1)
	const n, dz, kk = 3000, 8, 300
	z, c := randVec(r, n*dz, 0, 1), randVec(r, kk*dz, 0, 1)
	ga, gb := randVec(r, 600*150, 0, 1), randVec(r, 600*300, 0, 1)

	run := func(t *testing.T, k bindings.Kernels) [][]byte {
		m := mlpOf(in, h, out, mp)
		pre, _ := runMLPForward(t, k, m, x, rows)
		g, dx := runMLPBackward(t, k, m, make([]float32, len(mp)), x, pre, dy, rows, true)
		rn := bindings.RLN{Width: w, P: rp}
		_, mean, rstd := runRLNForward(t, k, rn, rx, groups)
		rg, rdx := runRLNBackward(t, k, rn, make([]float32, 2*w), rx, rdy, groups, mean, rstd)
		idx, dist := runAssign(t, k, z, n, dz, c, kk, true)
		sums, counts := runStats(t, k, z, n, dz, idx, kk)
		// Many tiles and k-slices: enough work for every backend to split it.
		gc := runGemm(t, k, true, false, 150, 300, 600, 1, ga, gb, 0, nil)
		return [][]byte{bytesOf(g), bytesOf(dx), bytesOf(rg), bytesOf(rdx), bytesOf(idx), bytesOf(dist), bytesOf(sums), bytesOf(counts), bytesOf(gc)}
	}
	names := []string{"mlp g", "mlp dx", "rln g", "rln dx", "assign idx", "assign dist", "stats sums", "stats counts", "gemm c"}
	compare := func(t *testing.T, what string, a, b [][]byte) {
		for i := range a {
			if !slices.Equal(a[i], b[i]) {
				t.Errorf("%s: %s differs", what, names[i])
			}
		}
	}
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		first := run(t, k)
		compare(t, "second run", first, run(t, k))
		switch k.Name() {
		case bindings.BackendGo:
			for _, p := range []int{1, 3} {
				old := runtime.GOMAXPROCS(p)
				got := run(t, k)
				runtime.GOMAXPROCS(old)
				compare(t, fmt.Sprintf("GOMAXPROCS=%d", p), first, got)
			}
		case bindings.BackendCPU:
			// OMP_NUM_THREADS is read when a context is created; the
			// same SIMD path is kept, as only it promises the same bytes.
			if isa := backendtest.ISA(k); isa != "" {
				t.Setenv(envCPUISA, isa)
			}
			for _, p := range []string{"1", "3"} {
				t.Setenv("OMP_NUM_THREADS", p)
				k2, _, err := bindings.Select(bindings.BackendCPU)
				must(t, "Select cpu", err)
				got := run(t, k2)
				bindings.Close(k2)
				compare(t, "OMP_NUM_THREADS="+p, first, got)
			}
		}
	})
}

func bytesOf[T any](s []T) []byte {
	return []byte(fmt.Sprint(s)) // exact for integers; floats print shortest round-trip
}
