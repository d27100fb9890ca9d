package bindings_test

import (
	"math"
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/backendtest"
	"pocketllm-native/testvectors"
)

// The conformance suite runs every kernel on every backend that can be
// opened here, as subtests named after the backend (go, cpu, cuda), and
// compares with the float64 oracle of package testvectors: the stored golden
// vectors first, then random shapes chosen to hit edges (odd widths, k = 1,
// ties, row counts that are not multiples of ReduceBlock, empty batches).
//
// Backends are opened by internal/backendtest (POCKETLLM_REQUIRE_BACKENDS
// makes one a requirement).

// Tolerances, one per kind of computation. Each says why it is what it is.
const (
	// assignTieRel: the CPU library ranks codewords by ||c||^2 - 2 z.c in
	// float32 (pocketllm.h), so it may choose a codeword whose true distance
	// exceeds the minimum by up to (dz+2) * 2^-21 * (||z||^2 + max ||c||^2).
	assignTieRel = 0x1p-21
	// distRel: dist is a direct float32 sum of dz squared differences; each
	// term carries a few roundings, so (dz+2) * 2^-22 relative, per term.
	distRel = 0x1p-22
	// statsRel: sums are float64 additions of float32 values, exact to the
	// loop but for float64 rounding, relative to the sum of magnitudes.
	statsRel = 1e-12
	// mlpNMSE: float32 dot products of length in or hidden, in any order,
	// plus a float32 tanh: error energy about length * 2^-46 of the signal.
	mlpNMSE = 1e-10
	// rlnNMSE: float32 means and variances over one row, then an
	// element-wise affine map.
	rlnNMSE = 1e-10
	// adamRel: element-wise float32 arithmetic and one sqrt, relative to
	// the magnitude of the terms combined in each element.
	adamRel = 1e-5
	// decodeNMSE: six float32 blocks in a chain; RLN's 1/std amplifies
	// earlier rounding by the ratio of a row's scale to its spread.
	decodeNMSE = 1e-9
	// gemmNMSE: each output is a float32 sum of k products (in order) plus
	// the alpha and beta roundings; for terms of random sign the error
	// energy is about k * 2^-48 of the signal, 2e-11 at the largest k the
	// tests use (4100), worst-case orders far above that stay below 1e-9.
	gemmNMSE = 1e-9
)

func TestMain(m *testing.M) { backendtest.Main(m) }

func required() map[string]bool { return backendtest.Required() }

func TestRequiredBackendsAreKnown(t *testing.T) { backendtest.Known(t) }

const envCPUISA = backendtest.EnvCPUISA

func eachBackend(t *testing.T, fn func(t *testing.T, k bindings.Kernels)) { backendtest.Each(t, fn) }

// ---- comparisons ----------------------------------------------------------

// nmse is sum (got-want)^2 / sum want^2; with an all-zero want it is the
// plain squared error (so it must then be 0 to pass a tolerance check).
func nmse(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return num
	}
	return num / den
}

func checkNMSE(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	if e := nmse(got, want); !(e <= tol) {
		worst, at := 0.0, 0
		for i, w := range want {
			if d := math.Abs(float64(got[i]) - w); !(d <= worst) {
				worst, at = d, i
			}
		}
		t.Errorf("%s: NMSE %.3g > %.3g; worst at [%d]: got %v, want %v", what, e, tol, at, got[at], want[at])
	}
}

// checkGradNMSE compares an accumulated gradient g = g0 + gradient: the
// increment g - g0 is held to the oracle's gradient, so the initial values
// cannot mask an error.
func checkGradNMSE(t *testing.T, what string, g, g0 []float32, grad []float64, tol float64) {
	t.Helper()
	var num, den float64
	for i := range grad {
		d := (float64(g[i]) - float64(g0[i])) - grad[i]
		num += d * d
		den += grad[i] * grad[i]
	}
	// Adding the increment rounds to g's float32 precision: allow that.
	var floor float64
	for _, v := range g {
		floor += float64(v) * float64(v)
	}
	floor *= 0x1p-46
	if !(num <= tol*den+floor) {
		t.Errorf("%s: increment NMSE %.3g > %.3g (error energy %.3g, signal %.3g)", what, num/den, tol, num, den)
	}
}

func sub(a []float64, b []float32) []float64 {
	c := make([]float64, len(a))
	for i := range a {
		c[i] = a[i] - float64(b[i])
	}
	return c
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func checkAssign(t *testing.T, z []float32, n, dz int, c []float32, k int, idx []int32, dist []float32, exact []int64) {
	t.Helper()
	_, dmin := testvectors.Assign(z, n, dz, c, k)
	maxC := 0.0
	for j := 0; j < k; j++ {
		maxC = max(maxC, testvectors.SqDist(c, j, make([]float32, dz), 0, dz))
	}
	bad := 0
	for i := 0; i < n && bad < 5; i++ {
		j := int(idx[i])
		if j < 0 || j >= k {
			t.Errorf("idx[%d] = %d, outside [0,%d)", i, j, k)
			bad++
			continue
		}
		if exact != nil && int64(j) != exact[i] {
			t.Errorf("idx[%d] = %d, want %d (exact tie case: lowest index)", i, j, exact[i])
			bad++
		}
		dj := testvectors.SqDist(z, i, c, j, dz)
		zz := testvectors.SqDist(z, i, make([]float32, dz), 0, dz)
		if tol := float64(dz+2) * assignTieRel * (zz + maxC); dj-dmin[i] > tol {
			t.Errorf("idx[%d] = %d at distance %v; the minimum is %v (tolerance %.3g)", i, j, dj, dmin[i], tol)
			bad++
		}
		for jl := 0; jl < j; jl++ {
			if slices.Equal(c[jl*dz:(jl+1)*dz], c[j*dz:(j+1)*dz]) {
				t.Errorf("idx[%d] = %d, but codeword %d is identical and lower", i, j, jl)
				bad++
				break
			}
		}
		if dist != nil {
			if tol := float64(dz+2) * distRel * dj; math.Abs(float64(dist[i])-dj) > tol || math.IsNaN(float64(dist[i])) {
				t.Errorf("dist[%d] = %v, distance to codeword %d is %v", i, dist[i], j, dj)
				bad++
			}
		}
	}
}

func checkStats(t *testing.T, z []float32, n, dz int, idx []int32, k int, sums []float64, counts []int64, wantSums []float64, wantCounts []int64) {
	t.Helper()
	if !slices.Equal(counts, wantCounts) {
		t.Errorf("counts = %v, want %v", counts, wantCounts)
	}
	mag := make([]float64, k*dz)
	for i := 0; i < n; i++ {
		for d := 0; d < dz; d++ {
			mag[int(idx[i])*dz+d] += math.Abs(float64(z[i*dz+d]))
		}
	}
	for i, w := range wantSums {
		if math.Abs(sums[i]-w) > statsRel*mag[i] || math.IsNaN(sums[i]) {
			t.Errorf("sums[%d] = %v, want %v", i, sums[i], w)
			return
		}
	}
}

func checkAdam(t *testing.T, p, g, m, v []float32, lr, b1, b2, eps float32, step int, gotP, gotM, gotV []float32, wantP, wantM, wantV []float64) {
	t.Helper()
	c1 := 1 - math.Pow(float64(b1), float64(step))
	c2 := 1 - math.Pow(float64(b2), float64(step))
	for i := range p {
		gi := float64(g[i])
		sm := math.Abs(float64(b1)*float64(m[i])) + math.Abs((1-float64(b1))*gi)
		sv := float64(b2)*float64(v[i]) + (1-float64(b2))*gi*gi
		upd := float64(lr) * math.Abs(wantM[i]/c1) / (math.Sqrt(wantV[i]/c2) + float64(eps))
		sp := math.Abs(float64(p[i])) + upd
		for _, e := range []struct {
			name      string
			got       float32
			want, mag float64
		}{{"p", gotP[i], wantP[i], sp}, {"m", gotM[i], wantM[i], sm}, {"v", gotV[i], wantV[i], sv}} {
			if d := math.Abs(float64(e.got) - e.want); !(d <= adamRel*e.mag) {
				t.Errorf("%s[%d] = %v, want %v (tolerance %.3g)", e.name, i, e.got, e.want, adamRel*e.mag)
				return
			}
		}
	}
}

// ---- calls with guarded buffers --------------------------------------------

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func runAssign(t *testing.T, k bindings.Kernels, z []float32, n, dz int, c []float32, kk int, withDist bool) ([]int32, []float32) {
	t.Helper()
	var a arena
	idx := a.outI32("idx", n)
	var dist []float32
	if withDist {
		dist = a.out("dist", n)
	}
	must(t, "Assign", k.Assign(a.in("z", z), n, dz, a.in("c", c), kk, idx, dist))
	a.check(t)
	return slices.Clone(idx), slices.Clone(dist)
}

func runStats(t *testing.T, k bindings.Kernels, z []float32, n, dz int, idx []int32, kk int) ([]float64, []int64) {
	t.Helper()
	var a arena
	sums, counts := a.outF64("sums", kk*dz), a.outI64("counts", kk)
	must(t, "CodebookStats", k.CodebookStats(a.in("z", z), n, dz, a.inI32("idx", idx), kk, sums, counts))
	a.check(t)
	return slices.Clone(sums), slices.Clone(counts)
}

func mlpOf(in, hidden, out int, p []float32) bindings.MLP {
	return bindings.MLP{In: in, Hidden: hidden, Out: out, P: p}
}

func runMLPForward(t *testing.T, k bindings.Kernels, m bindings.MLP, x []float32, rows int) (pre, y []float32) {
	t.Helper()
	var a arena
	m.P = a.in("p", m.P)
	pre, y = a.out("pre", rows*m.Hidden), a.out("y", rows*m.Out)
	must(t, "MLPForward", k.MLPForward(m, a.in("x", x), rows, pre, y))
	a.check(t)
	return slices.Clone(pre), slices.Clone(y)
}

// runMLPBackward returns the updated gradient and dx (nil when withDx is
// false, in which case dx is passed as nil).
func runMLPBackward(t *testing.T, k bindings.Kernels, m bindings.MLP, g0, x, pre, dy []float32, rows int, withDx bool) (g, dx []float32) {
	t.Helper()
	var a arena
	m.P = a.in("p", m.P)
	gm := m
	gm.P = a.inout("g", g0)
	if withDx {
		dx = a.out("dx", rows*m.In)
	}
	must(t, "MLPBackward", k.MLPBackward(m, gm, a.in("x", x), a.in("pre", pre), a.in("dy", dy), rows, dx))
	a.check(t)
	return slices.Clone(gm.P), slices.Clone(dx)
}

func runRLNForward(t *testing.T, k bindings.Kernels, n bindings.RLN, x []float32, groups int) (y, mean, rstd []float32) {
	t.Helper()
	var a arena
	n.P = a.in("p", n.P)
	y, mean, rstd = a.out("y", groups*n.Width), a.out("mean", groups), a.out("rstd", groups)
	must(t, "RLNForward", k.RLNForward(n, a.in("x", x), groups, y, mean, rstd))
	a.check(t)
	return slices.Clone(y), slices.Clone(mean), slices.Clone(rstd)
}

func runRLNBackward(t *testing.T, k bindings.Kernels, n bindings.RLN, g0, x, dy []float32, groups int, mean, rstd []float32) (g, dx []float32) {
	t.Helper()
	var a arena
	n.P = a.in("p", n.P)
	gn := bindings.RLN{Width: n.Width, P: a.inout("g", g0)}
	dx = a.out("dx", groups*n.Width)
	must(t, "RLNBackward", k.RLNBackward(n, gn, a.in("x", x), a.in("dy", dy), groups, a.in("mean", mean), a.in("rstd", rstd), dx))
	a.check(t)
	return slices.Clone(gn.P), slices.Clone(dx)
}

func runAdam(t *testing.T, k bindings.Kernels, p, g, m, v []float32, lr, b1, b2, eps float32, step int) (p2, m2, v2 []float32) {
	t.Helper()
	var a arena
	p2, m2, v2 = a.inout("p", p), a.inout("m", m), a.inout("v", v)
	must(t, "Adam", k.Adam(p2, a.in("g", g), m2, v2, lr, b1, b2, eps, step))
	a.check(t)
	return slices.Clone(p2), slices.Clone(m2), slices.Clone(v2)
}

func runDecode(t *testing.T, k bindings.Kernels, dec bindings.Decoder, c []float32, idx []int32, rows int) []float32 {
	t.Helper()
	var a arena
	dec.P = a.in("p", dec.P)
	out := a.out("out", rows*dec.E*dec.Dim)
	must(t, "Decode", k.Decode(dec, a.in("c", c), a.inI32("idx", idx), rows, out))
	a.check(t)
	return slices.Clone(out)
}

// runGemm calls Gemm on guarded copies; a nil c0 hands the call a C filled
// with NaN (the poison), which only beta == 0 may be given.
func runGemm(t *testing.T, k bindings.Kernels, transA, transB bool, m, n, kk int, alpha float32, a, b []float32, beta float32, c0 []float32) []float32 {
	t.Helper()
	var ar arena
	var c []float32
	if c0 == nil {
		c = ar.out("c", m*n)
	} else {
		c = ar.inout("c", c0)
	}
	must(t, "Gemm", k.Gemm(transA, transB, m, n, kk, alpha, ar.in("a", a), ar.in("b", b), beta, c))
	ar.check(t)
	return slices.Clone(c)
}

// ---- golden vectors ----------------------------------------------------------

func loadVectors(t *testing.T, kernel string) []testvectors.Case {
	t.Helper()
	cs, err := testvectors.Load(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 {
		t.Fatalf("no golden cases for %s", kernel)
	}
	return cs
}

// TestGolden checks every backend on the stored vectors.
func TestGolden(t *testing.T) {
	eachBackend(t, func(t *testing.T, k bindings.Kernels) {
		for _, kernel := range testvectors.Kernels {
			t.Run(kernel, func(t *testing.T) {
				for _, c := range loadVectors(t, kernel) {
					t.Run(c.Name, func(t *testing.T) { golden(t, k, kernel, c) })
				}
			})
		}
	})
}

func golden(t *testing.T, k bindings.Kernels, kernel string, c testvectors.Case) {
	f, ix := c.F32, c.I32
	if c.Error != "" {
		goldenError(t, k, kernel, c)
		return
	}
	switch kernel {
	case testvectors.KAssign:
		n, dz, kk := c.Int("n"), c.Int("dz"), c.Int("k")
		idx, dist := runAssign(t, k, f["z"], n, dz, f["c"], kk, true)
		var exact []int64
		if c.Has("exact") {
			exact = c.WantInt["idx"]
		}
		checkAssign(t, f["z"], n, dz, f["c"], kk, idx, dist, exact)
		// dist is optional: without it the indices must not change.
		idx2, _ := runAssign(t, k, f["z"], n, dz, f["c"], kk, false)
		if !slices.Equal(idx, idx2) {
			t.Errorf("indices differ with and without dist")
		}
	case testvectors.KCodebookStats:
		n, dz, kk := c.Int("n"), c.Int("dz"), c.Int("k")
		sums, counts := runStats(t, k, f["z"], n, dz, ix["idx"], kk)
		checkStats(t, f["z"], n, dz, ix["idx"], kk, sums, counts, c.Want["sums"], c.WantInt["counts"])
	case testvectors.KMLPForward:
		m := mlpOf(c.Int("in"), c.Int("hidden"), c.Int("out"), f["p"])
		pre, y := runMLPForward(t, k, m, f["x"], c.Int("rows"))
		checkNMSE(t, "pre", pre, c.Want["pre"], mlpNMSE)
		checkNMSE(t, "y", y, c.Want["y"], mlpNMSE)
	case testvectors.KMLPBackward:
		m := mlpOf(c.Int("in"), c.Int("hidden"), c.Int("out"), f["p"])
		g, dx := runMLPBackward(t, k, m, f["g0"], f["x"], f["pre"], f["dy"], c.Int("rows"), !c.Has("dx_nil"))
		checkGradNMSE(t, "g", g, f["g0"], sub(c.Want["g"], f["g0"]), mlpNMSE)
		if !c.Has("dx_nil") {
			checkNMSE(t, "dx", dx, c.Want["dx"], mlpNMSE)
		}
	case testvectors.KRLNForward:
		n := bindings.RLN{Width: c.Int("width"), P: f["p"]}
		y, mean, rstd := runRLNForward(t, k, n, f["x"], c.Int("groups"))
		checkNMSE(t, "y", y, c.Want["y"], rlnNMSE)
		checkNMSE(t, "mean", mean, c.Want["mean"], rlnNMSE)
		checkNMSE(t, "rstd", rstd, c.Want["rstd"], rlnNMSE)
	case testvectors.KRLNBackward:
		n := bindings.RLN{Width: c.Int("width"), P: f["p"]}
		g, dx := runRLNBackward(t, k, n, f["g0"], f["x"], f["dy"], c.Int("groups"), f["mean"], f["rstd"])
		checkGradNMSE(t, "g", g, f["g0"], sub(c.Want["g"], f["g0"]), rlnNMSE)
		checkNMSE(t, "dx", dx, c.Want["dx"], rlnNMSE)
	case testvectors.KAdam:
		s := c.Scalars
		lr, b1, b2, eps := float32(s["lr"]), float32(s["b1"]), float32(s["b2"]), float32(s["eps"])
		p2, m2, v2 := runAdam(t, k, f["p"], f["g"], f["m"], f["v"], lr, b1, b2, eps, c.Int("step"))
		checkAdam(t, f["p"], f["g"], f["m"], f["v"], lr, b1, b2, eps, c.Int("step"), p2, m2, v2, c.Want["p"], c.Want["m"], c.Want["v"])
	case testvectors.KDecode:
		dec := bindings.Decoder{E: c.Int("e"), Dim: c.Int("dim"), Latent: c.Int("latent"), Hidden: c.Int("hidden"), P: f["p"]}
		out := runDecode(t, k, dec, f["c"], ix["idx"], c.Int("rows"))
		checkNMSE(t, "out", out, c.Want["out"], decodeNMSE)
	case testvectors.KGemm:
		m, n, kk := c.Int("m"), c.Int("n"), c.Int("k")
		c0 := f["c"]
		if c.Has("c_nan") {
			c0 = nil // C poisoned with NaN, which beta == 0 must not read
		}
		got := runGemm(t, k, c.Int("trans_a") == 1, c.Int("trans_b") == 1, m, n, kk, float32(c.Scalars["alpha"]), f["a"], f["b"], float32(c.Scalars["beta"]), c0)
		checkNMSE(t, "c", got, c.Want["c"], gemmNMSE)
	default:
		t.Fatalf("no check for golden kernel %q", kernel)
	}
}

// goldenError runs a case the oracle refuses: the backend must return an
// error, write nothing, and not panic.
func goldenError(t *testing.T, k bindings.Kernels, kernel string, c testvectors.Case) {
	var a arena
	f, ix := c.F32, c.I32
	var err error
	switch kernel {
	case testvectors.KCodebookStats:
		n, dz, kk := c.Int("n"), c.Int("dz"), c.Int("k")
		sums, counts := a.outF64("sums", kk*dz), a.outI64("counts", kk)
		z, idx := a.in("z", f["z"]), a.inI32("idx", ix["idx"])
		a.frozen()
		err = k.CodebookStats(z, n, dz, idx, kk, sums, counts)
	case testvectors.KDecode:
		dec := bindings.Decoder{E: c.Int("e"), Dim: c.Int("dim"), Latent: c.Int("latent"), Hidden: c.Int("hidden"), P: a.in("p", f["p"])}
		rows := c.Int("rows")
		out := a.out("out", rows*dec.E*dec.Dim)
		cb, idx := a.in("c", f["c"]), a.inI32("idx", ix["idx"])
		a.frozen()
		err = k.Decode(dec, cb, idx, rows, out)
	default:
		t.Fatalf("no error check for golden kernel %q", kernel)
	}
	if err == nil {
		t.Fatalf("no error; the oracle says: %s", c.Error)
	}
	t.Logf("error as expected: %v", err)
	a.check(t)
}
