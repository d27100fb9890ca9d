package testvectors

import (
	"math"
)

// Generate builds every data file from fixed seeds. The inputs are rounded
// to three decimals so the files stay short; the expected values are the
// oracle's. Keys each kernel's cases use:
//
//	assign          ints n dz k [exact]; f32 z c; want dist; want_int idx
//	                (exact: inputs are dyadic, every float32 formula is exact,
//	                so idx must match, ties to the lowest index included)
//	codebook_stats  ints n dz k; f32 z; i32 idx; want sums; want_int counts
//	mlp_forward     ints in hidden out rows; f32 p x; want pre y
//	mlp_backward    ints in hidden out rows [dx_nil]; f32 p x pre dy g0;
//	                want g (= g0 + gradient) dx
//	rln_forward     ints width groups; f32 p x; want y mean rstd
//	rln_backward    ints width groups; f32 p x dy mean rstd g0; want g dx
//	adam            ints n step; scalars lr b1 b2 eps; f32 p g m v; want p m v
//	decode          ints e dim latent hidden rows k; f32 p c; i32 idx; want out
//	encoder         ints e dim latent hidden rows; f32 p x dz; want z g dx
//	                (p is E0 | N1 | E1 | N2 | E2 | N3, see EncoderForward)
//	decoder         ints e dim latent hidden rows; f32 p y0 dout; want out g dy0
//	                (p is N1 | D1 | N2 | D2 | N3 | D0, y0 the gathered codewords)
//	gemm            ints m n k trans_a trans_b [c_nan]; scalars alpha beta;
//	                f32 a b c; want c (c_nan: the caller fills C with NaN
//	                before the call, which JSON cannot store; beta is then 0)
//	train_step      see genTrainStep (train.go)
//	train_epoch     see genTrainEpoch (train.go)
//
// Cases with an error field give the call's inputs only.
func Generate() []File {
	return []File{
		{KAssign, genAssign()},
		{KCodebookStats, genCodebookStats()},
		{KMLPForward, genMLPForward()},
		{KMLPBackward, genMLPBackward()},
		{KRLNForward, genRLNForward()},
		{KRLNBackward, genRLNBackward()},
		{KAdam, genAdam()},
		{KDecode, genDecode()},
		{KGemm, genGemm()},
		{KEncoder, genEncoder()},
		{KDecoder, genDecoder()},
		{KTrainStep, genTrainStep()},
		{KTrainEpoch, genTrainEpoch()},
	}
}

// rng is splitmix64: tiny, and fixed forever, unlike a library generator
// whose stream may change between releases.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) uniform() float64 { return float64(r.next()>>11) / (1 << 53) }

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) normal() float64 {
	u := r.uniform()
	for u == 0 {
		u = r.uniform()
	}
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.uniform())
}

func round3(x float64) float32 { return float32(math.Round(x*1000) / 1000) }

// vec returns n normal values of standard deviation sd plus mean, rounded.
func (r *rng) vec(n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = round3(mean + sd*r.normal())
	}
	return v
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func addTo(g0 []float32, g []float64) []float64 {
	out := make([]float64, len(g))
	for i := range g {
		out[i] = float64(g0[i]) + g[i]
	}
	return out
}

func ints(kv ...any) map[string]int {
	m := map[string]int{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(int)
	}
	return m
}

func assignCase(name string, z []float32, n, dz int, c []float32, k int, exact bool) Case {
	idx, dist := Assign(z, n, dz, c, k)
	cs := Case{
		Name:    name,
		Ints:    ints("n", n, "dz", dz, "k", k),
		F32:     map[string][]float32{"z": z, "c": c},
		Want:    map[string][]float64{"dist": dist},
		WantInt: map[string][]int64{"idx": widen(idx)},
	}
	if exact {
		cs.Ints["exact"] = 1
	}
	return cs
}

func widen(x []int32) []int64 {
	y := make([]int64, len(x))
	for i, v := range x {
		y[i] = int64(v)
	}
	return y
}

func genAssign() []Case {
	var cs []Case
	for i, s := range []struct {
		name     string
		n, dz, k int
	}{
		{"basic", 37, 8, 16},
		{"odd_dz", 29, 3, 7},
		{"k1", 5, 4, 1},
		{"dz1", 11, 1, 5},
		{"n0", 0, 4, 3},
	} {
		r := &rng{uint64(100 + i)}
		z := r.vec(s.n*s.dz, 0, 1)
		c := r.vec(s.k*s.dz, 0, 1)
		cs = append(cs, assignCase(s.name, z, s.n, s.dz, c, s.k, false))
	}
	// Latents equal to codewords: the minimum is exactly 0.
	r := &rng{110}
	c := r.vec(6*5, 0, 1)
	z := make([]float32, 0, 9*5)
	for _, j := range []int{3, 0, 5, 5, 1, 2, 4, 0, 3} {
		z = append(z, c[j*5:(j+1)*5]...)
	}
	cs = append(cs, assignCase("hits", z, 9, 5, c, 6, false))
	// Ties. Codewords 1 and 4 are equal, 0 and 2 mirror each other about
	// the origin, and 3 and 5 are equal; every latent sits at the same
	// distance from two or more of them. The values are small dyadic
	// numbers, so any float32 formula (direct or expanded) computes the
	// distances exactly and the lowest index must win.
	c = []float32{
		1, 0, // 0
		0.5, 0.5, // 1
		-1, 0, // 2
		0, -2, // 3
		0.5, 0.5, // 4
		0, -2, // 5
	}
	z = []float32{
		0, 0, // 0 and 2 at 1, 1 at 0.5: 1
		0.5, 0.5, // 1 and 4 at 0: 1
		0, -2, // 3 and 5 at 0: 3
		0, 0.25, // 1 (and 4) at 0.3125, 0 and 2 at 1.0625: 1
		0, -0.5, // 0, 1, 2 and 4 at 1.25: 0
		-0.5, 0, // 2 at 0.25, 0 at 2.25: 2
		0.25, -1, // 3 at 1.0625, 0 at 1.5625: 3
		0, 1, // 1 at 0.5: 1
	}
	cs = append(cs, assignCase("ties", z, 8, 2, c, 6, true))
	return cs
}

func genCodebookStats() []Case {
	var cs []Case
	for i, s := range []struct {
		name     string
		n, dz, k int
	}{
		{"basic", 50, 3, 7},
		{"k1", 6, 2, 1},
		{"n0", 0, 3, 4},
		{"out_of_range", 4, 2, 3},
	} {
		r := &rng{uint64(200 + i)}
		z := r.vec(s.n*s.dz, 0, 1)
		idx := make([]int32, s.n)
		for t := range idx {
			// Leave the last codeword unused so an empty one is checked.
			idx[t] = int32(r.intn(max(s.k-1, 1)))
		}
		c := Case{
			Name: s.name,
			Ints: ints("n", s.n, "dz", s.dz, "k", s.k),
			F32:  map[string][]float32{"z": z},
			I32:  map[string][]int32{"idx": idx},
		}
		if s.name == "out_of_range" {
			idx[2] = int32(s.k)
		}
		sums, counts, err := CodebookStats(z, s.n, s.dz, idx, s.k)
		if err != nil {
			c.Error = err.Error()
		} else {
			c.Want = map[string][]float64{"sums": sums}
			c.WantInt = map[string][]int64{"counts": counts}
		}
		cs = append(cs, c)
	}
	return cs
}

var mlpShapes = []struct {
	name                  string
	in, hidden, out, rows int
}{
	{"d8h16", 8, 16, 8, 5},
	{"odd", 3, 5, 2, 7},
	{"one", 1, 1, 1, 1},
	{"wide_out", 4, 6, 9, 3},
	{"rows0", 4, 3, 2, 0},
}

func genMLPForward() []Case {
	var cs []Case
	for i, s := range mlpShapes {
		r := &rng{uint64(300 + i)}
		p := r.vec(MLPSize(s.in, s.hidden, s.out), 0, 0.5)
		x := r.vec(s.rows*s.in, 0, 1)
		pre, y := MLPForward(p, s.in, s.hidden, s.out, x, s.rows)
		cs = append(cs, Case{
			Name: s.name,
			Ints: ints("in", s.in, "hidden", s.hidden, "out", s.out, "rows", s.rows),
			F32:  map[string][]float32{"p": p, "x": x},
			Want: map[string][]float64{"pre": pre, "y": y},
		})
	}
	return cs
}

func genMLPBackward() []Case {
	shapes := append(mlpShapes[:len(mlpShapes):len(mlpShapes)], []struct {
		name                  string
		in, hidden, out, rows int
	}{
		{"rows300", 2, 3, 2, 300},
		{"dx_nil", 3, 4, 3, 6},
	}...)
	var cs []Case
	for i, s := range shapes {
		r := &rng{uint64(400 + i)}
		np := MLPSize(s.in, s.hidden, s.out)
		p := r.vec(np, 0, 0.5)
		x := r.vec(s.rows*s.in, 0, 1)
		dy := r.vec(s.rows*s.out, 0, 1)
		g0 := r.vec(np, 0, 0.1)
		pre, _ := MLPForward(p, s.in, s.hidden, s.out, x, s.rows)
		pre32 := to32(pre)
		g, dx := MLPBackward(p, s.in, s.hidden, s.out, x, dy, s.rows)
		c := Case{
			Name: s.name,
			Ints: ints("in", s.in, "hidden", s.hidden, "out", s.out, "rows", s.rows),
			F32:  map[string][]float32{"p": p, "x": x, "pre": pre32, "dy": dy, "g0": g0},
			Want: map[string][]float64{"g": addTo(g0, g), "dx": dx},
		}
		if s.name == "dx_nil" {
			c.Ints["dx_nil"] = 1
			delete(c.Want, "dx")
		}
		cs = append(cs, c)
	}
	return cs
}

var rlnShapes = []struct {
	name          string
	width, groups int
}{
	{"w24", 24, 3},
	{"odd", 7, 5},
	{"w1", 1, 2},
	{"constant_row", 6, 2},
	{"groups0", 4, 0},
}

// rlnInputs gives the parameters (gamma near 1) and input of one RLN case;
// "constant_row" makes row 0 constant, so its variance is 0 and only
// RLNEps keeps rstd finite.
func rlnInputs(r *rng, name string, width, groups int) (p, x []float32) {
	p = append(r.vec(width, 1, 0.2), r.vec(width, 0, 0.2)...)
	x = r.vec(width*groups, 0.3, 1)
	if name == "constant_row" {
		for w := 0; w < width; w++ {
			x[w] = 0.75
		}
	}
	return p, x
}

func genRLNForward() []Case {
	var cs []Case
	for i, s := range rlnShapes {
		r := &rng{uint64(500 + i)}
		p, x := rlnInputs(r, s.name, s.width, s.groups)
		y, mean, rstd := RLNForward(p, s.width, x, s.groups)
		cs = append(cs, Case{
			Name: s.name,
			Ints: ints("width", s.width, "groups", s.groups),
			F32:  map[string][]float32{"p": p, "x": x},
			Want: map[string][]float64{"y": y, "mean": mean, "rstd": rstd},
		})
	}
	return cs
}

func genRLNBackward() []Case {
	shapes := append(rlnShapes[:len(rlnShapes):len(rlnShapes)], []struct {
		name          string
		width, groups int
	}{{"groups300", 3, 300}}...)
	var cs []Case
	for i, s := range shapes {
		r := &rng{uint64(600 + i)}
		p, x := rlnInputs(r, s.name, s.width, s.groups)
		dy := r.vec(s.width*s.groups, 0, 1)
		g0 := r.vec(2*s.width, 0, 0.1)
		_, mean, rstd := RLNForward(p, s.width, x, s.groups)
		g, dx := RLNBackward(p, s.width, x, dy, s.groups)
		cs = append(cs, Case{
			Name: s.name,
			Ints: ints("width", s.width, "groups", s.groups),
			F32:  map[string][]float32{"p": p, "x": x, "dy": dy, "mean": to32(mean), "rstd": to32(rstd), "g0": g0},
			Want: map[string][]float64{"g": addTo(g0, g), "dx": dx},
		})
	}
	return cs
}

func genAdam() []Case {
	var cs []Case
	for i, s := range []struct {
		name    string
		n, step int
		lr      float32
	}{
		{"step1", 17, 1, 1.6e-2},
		{"step1000", 9, 1000, 1.6e-3},
		{"n0", 0, 3, 1e-2},
	} {
		r := &rng{uint64(700 + i)}
		p := r.vec(s.n, 0, 1)
		g := r.vec(s.n, 0, 0.1)
		m := r.vec(s.n, 0, 0.05)
		v := r.vec(s.n, 0, 0.01)
		for t := range v {
			v[t] *= v[t]
		}
		if s.n > 3 {
			// A parameter that has never had a gradient must not move.
			g[3], m[3], v[3] = 0, 0, 0
		}
		if s.step == 1 {
			for t := range m {
				m[t], v[t] = 0, 0
			}
		}
		const b1, b2, eps = float32(0.9), float32(0.999), float32(1e-8)
		p2, m2, v2 := Adam(p, g, m, v, float64(s.lr), float64(b1), float64(b2), float64(eps), s.step)
		cs = append(cs, Case{
			Name:    s.name,
			Ints:    ints("n", s.n, "step", s.step),
			Scalars: map[string]float64{"lr": float64(s.lr), "b1": float64(b1), "b2": float64(b2), "eps": float64(eps)},
			F32:     map[string][]float32{"p": p, "g": g, "m": m, "v": v},
			Want:    map[string][]float64{"p": p2, "m": m2, "v": v2},
		})
	}
	return cs
}

type netShape struct {
	name                            string
	e, dim, latent, hidden, rows, k int
}

// netParams draws the parameters of a network of blocks (sizes in blocks;
// rlnAt marks the RLNs, whose scales are drawn near 1 as training keeps them).
func netParams(r *rng, blocks []int, rlnAt []bool, e, latent int) []float32 {
	var p []float32
	for b, n := range blocks {
		if rlnAt[b] {
			p = append(p, r.vec(e*latent, 1, 0.2)...)
			p = append(p, r.vec(e*latent, 0, 0.2)...)
		} else {
			p = append(p, r.vec(n, 0, 0.5)...)
		}
	}
	return p
}

func decoderParams(r *rng, s netShape) []float32 {
	rln := 2 * s.e * s.latent
	lat := MLPSize(s.latent, s.hidden, s.latent)
	out := MLPSize(s.latent, s.hidden, s.dim)
	return netParams(r, []int{rln, lat, rln, lat, rln, out}, []bool{true, false, true, false, true, false}, s.e, s.latent)
}

func encoderParams(r *rng, s netShape) []float32 {
	rln := 2 * s.e * s.latent
	lat := MLPSize(s.latent, s.hidden, s.latent)
	in := MLPSize(s.dim, s.hidden, s.latent)
	return netParams(r, []int{in, rln, lat, rln, lat, rln}, []bool{false, true, false, true, false, true}, s.e, s.latent)
}

func genDecode() []Case {
	var cs []Case
	for i, s := range []netShape{
		{"d8h16", 3, 8, 8, 16, 2, 5},
		{"odd", 2, 5, 3, 4, 3, 4},
		{"k1", 4, 2, 2, 3, 2, 1},
		{"e1", 1, 3, 3, 2, 3, 3},
		{"rows0", 2, 4, 4, 4, 0, 3},
		{"index_k", 2, 3, 3, 4, 2, 3},
		{"index_negative", 2, 3, 3, 4, 2, 3},
	} {
		r := &rng{uint64(800 + i)}
		p := decoderParams(r, s)
		c := r.vec(s.k*s.latent, 0, 1)
		idx := make([]int32, s.rows*s.e)
		for t := range idx {
			idx[t] = int32(r.intn(s.k))
		}
		cs1 := Case{
			Name: s.name,
			Ints: ints("e", s.e, "dim", s.dim, "latent", s.latent, "hidden", s.hidden, "rows", s.rows, "k", s.k),
			F32:  map[string][]float32{"p": p, "c": c},
			I32:  map[string][]int32{"idx": idx},
		}
		switch s.name {
		case "index_k":
			idx[len(idx)-1] = int32(s.k)
		case "index_negative":
			idx[1] = -1
		}
		out, err := Decode(p, s.e, s.dim, s.latent, s.hidden, c, s.k, idx, s.rows)
		if err != nil {
			cs1.Error = err.Error()
		} else {
			cs1.Want = map[string][]float64{"out": out}
		}
		cs = append(cs, cs1)
	}
	return cs
}

var netShapes = []netShape{
	{"e3d4l4h5", 3, 4, 4, 5, 2, 0},
	{"odd", 2, 3, 2, 3, 3, 0},
	{"e1", 1, 2, 3, 2, 4, 0},
}

func genEncoder() []Case {
	var cs []Case
	for i, s := range netShapes {
		r := &rng{uint64(900 + i)}
		p := encoderParams(r, s)
		n := s.rows * s.e
		x := r.vec(n*s.dim, 0, 1)
		dz := r.vec(n*s.latent, 0, 1)
		z := EncoderForward(p, s.e, s.dim, s.latent, s.hidden, x, s.rows)
		g, dx := EncoderBackward(p, s.e, s.dim, s.latent, s.hidden, x, dz, s.rows)
		cs = append(cs, Case{
			Name: s.name,
			Ints: ints("e", s.e, "dim", s.dim, "latent", s.latent, "hidden", s.hidden, "rows", s.rows),
			F32:  map[string][]float32{"p": p, "x": x, "dz": dz},
			Want: map[string][]float64{"z": z, "g": g, "dx": dx},
		})
	}
	return cs
}

func genDecoder() []Case {
	var cs []Case
	for i, s := range netShapes {
		r := &rng{uint64(1000 + i)}
		p := decoderParams(r, s)
		n := s.rows * s.e
		y0 := r.vec(n*s.latent, 0, 1)
		dout := r.vec(n*s.dim, 0, 1)
		out, _ := decoderForward64(newDecoderLayout(s.e, s.dim, s.latent, s.hidden), f64(p), f64(y0), s.rows)
		g, dy0 := DecoderBackward(p, s.e, s.dim, s.latent, s.hidden, y0, dout, s.rows)
		cs = append(cs, Case{
			Name: s.name,
			Ints: ints("e", s.e, "dim", s.dim, "latent", s.latent, "hidden", s.hidden, "rows", s.rows),
			F32:  map[string][]float32{"p": p, "y0": y0, "dout": dout},
			Want: map[string][]float64{"out": out, "g": g, "dy0": dy0},
		})
	}
	return cs
}

func genGemm() []Case {
	var cs []Case
	for i, s := range []struct {
		name           string
		m, n, k        int
		transA, transB bool
		alpha, beta    float32
		cNaN           bool
	}{
		{"1x1x1", 1, 1, 1, false, false, 1, 0, false},
		{"nn_7x13x5", 7, 13, 5, false, false, 1, 0, false},
		{"tn_7x13x5", 7, 13, 5, true, false, 1, 0, false},
		{"nt_7x13x5", 7, 13, 5, false, true, 1, 0, false},
		{"tt_7x13x5", 7, 13, 5, true, true, 1, 0, false},
		{"beta0_nan_c", 5, 6, 9, false, true, 1, 0, true},
		{"beta1_accumulate", 6, 5, 4, true, false, 1, 1, false},
		{"alpha_beta_scale", 3, 9, 11, false, false, -0.375, 2.5, false},
		{"k0", 2, 3, 0, false, false, 1, 0.5, false},
	} {
		r := &rng{uint64(1100 + i)}
		a, b, c := r.vec(s.m*s.k, 0, 1), r.vec(s.k*s.n, 0, 1), r.vec(s.m*s.n, 0, 1)
		tr := func(v bool) int {
			if v {
				return 1
			}
			return 0
		}
		cs = append(cs, Case{
			Name:    s.name,
			Ints:    ints("m", s.m, "n", s.n, "k", s.k, "trans_a", tr(s.transA), "trans_b", tr(s.transB)),
			Scalars: map[string]float64{"alpha": float64(s.alpha), "beta": float64(s.beta)},
			F32:     map[string][]float32{"a": a, "b": b, "c": c},
			Want:    map[string][]float64{"c": Gemm(s.transA, s.transB, s.m, s.n, s.k, float64(s.alpha), a, b, float64(s.beta), c)},
		})
		if s.cNaN {
			cs[len(cs)-1].Ints["c_nan"] = 1
			delete(cs[len(cs)-1].F32, "c")
		}
	}
	return cs
}
