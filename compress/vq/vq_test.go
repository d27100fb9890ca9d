package vq

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/internal/sharedtest"
)

// clustered makes a matrix whose sub-vectors of length dim gather around a
// few centres, with heavy-ish noise, so k-means has structure to find.
func clustered(name string, rows, cols, dim int, seed uint64) matrix.Matrix {
	rng := rand.New(rand.NewPCG(seed, 3))
	centres := make([]float64, 12*dim)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	m := matrix.Matrix{Name: name, Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for r := 0; r < rows; r++ {
		for c0 := 0; c0 < cols; c0 += dim {
			k := rng.IntN(12)
			for t := 0; t < dim && c0+t < cols; t++ {
				m.Data[r*cols+c0+t] = float32(0.05 * (centres[k*dim+t] + 0.3*rng.NormFloat64()))
			}
		}
	}
	return m
}

func shapes(mats []matrix.Matrix) [][2]int {
	sh := make([][2]int, len(mats))
	for i, m := range mats {
		sh[i] = [2]int{m.Rows, m.Cols}
	}
	return sh
}

// TestPaddingDoesNotBiasCentroids: rows alternate between all 4 and all -4
// with 3 columns cut into sub-vectors of 2, so half the sub-vectors are
// (v, padding). Two codewords reconstruct the matrix exactly only if the
// padding never pulls the second coordinate of a codeword towards 0.
func TestPaddingDoesNotBiasCentroids(t *testing.T) {
	m := matrix.Matrix{Name: "pm4", Rows: 10, Cols: 3, Data: make([]float32, 30)}
	for r := 0; r < m.Rows; r++ {
		v := float32(4)
		if r%2 == 1 {
			v = -4
		}
		for c := 0; c < 3; c++ {
			m.Data[r*3+c] = v
		}
	}
	for seed := uint64(1); seed <= 5; seed++ {
		for _, unscaled := range []bool{false, true} {
			st := Settings{Dim: 2, K: 2, Seed: seed, Unscaled: unscaled}
			res, err := Compress(bindings.Go(), []matrix.Matrix{m}, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			scale := float32(4) // the RMS
			if unscaled {
				scale = 1
			}
			if res.Scales[0] != scale {
				t.Errorf("%+v: scale %v, want %v", st, res.Scales[0], scale)
			}
			v := 4 / scale
			cb := res.Codebook
			if !(cb[0] == cb[1] && cb[2] == cb[3] && cb[0] == -cb[2] && (cb[0] == v || cb[0] == -v)) {
				t.Errorf("%+v: codebook %v, want (v,v) and (-v,-v) with v = %v", st, cb, v)
			}
			if res.NMSE[0] != 0 {
				t.Errorf("%+v: NMSE %v, want 0", st, res.NMSE[0])
			}
		}
	}
}

// TestAssignmentIsMaskedNearest checks every kept index against a float64
// brute force over the real, weighted coordinates, and that reconstruction
// gives the reported error with padding dropped.
func TestAssignmentIsMaskedNearest(t *testing.T) {
	mats := []matrix.Matrix{clustered("a", 30, 7, 3, 1), clustered("b", 20, 7, 3, 2)}
	rng := rand.New(rand.NewPCG(5, 5))
	cw := make([]float32, 7)
	for i := range cw {
		cw[i] = float32(rng.Float64() * 3)
	}
	cw[2] = 0
	for _, w := range [][]float32{nil, cw} {
		st := Settings{Dim: 3, K: 16, Seed: 3}
		res, err := Compress(bindings.Go(), mats, st, w)
		if err != nil {
			t.Fatal(err)
		}
		if res.E != 3 || len(res.Indices) != 50*3 || len(res.Codebook) != 16*3 {
			t.Fatalf("E %d, %d indices, %d codebook values", res.E, len(res.Indices), len(res.Codebook))
		}
		out, err := Reconstruct(res, shapes(mats))
		if err != nil {
			t.Fatal(err)
		}
		at := 0
		for mi, m := range mats {
			if len(out[mi]) != m.Rows*m.Cols {
				t.Fatalf("member %d: %d values for %dx%d", mi, len(out[mi]), m.Rows, m.Cols)
			}
			if got := matrix.NMSE(m.Data, out[mi]); got != res.NMSE[mi] {
				t.Errorf("member %d: reported NMSE %v, reconstruction gives %v", mi, res.NMSE[mi], got)
			}
			s := float64(res.Scales[mi])
			for r := 0; r < m.Rows; r++ {
				for p := 0; p < res.E; p++ {
					dist := func(j int) float64 {
						var e float64
						for tt := 0; tt < 3 && p*3+tt < 7; tt++ {
							c := p*3 + tt
							wt := 1.0
							if w != nil {
								wt = float64(w[c])
							}
							df := float64(m.Data[r*7+c])/s - float64(res.Codebook[j*3+tt])
							e += wt * df * df
						}
						return e
					}
					best := math.Inf(1)
					for j := 0; j < res.K; j++ {
						best = min(best, dist(j))
					}
					if got := dist(int(res.Indices[at])); got > best*(1+1e-5)+1e-9 {
						t.Errorf("member %d row %d position %d: codeword at distance %v, nearest at %v", mi, r, p, got, best)
					}
					at++
				}
			}
		}
	}
}

func TestDeterministicAndObjectiveNonIncreasing(t *testing.T) {
	mats := []matrix.Matrix{clustered("a", 64, 30, 4, 1), clustered("b", 48, 30, 4, 2)} // 30 % 4 != 0
	st := Settings{Dim: 4, K: 32, Iters: 40, Seed: 7}
	r1, err := Compress(bindings.Go(), mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Compress(bindings.Go(), mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r1, r2); d != "" {
		t.Fatalf("same seed, different results:\n%s", d)
	}
	if len(r1.Objective) < 3 {
		t.Fatalf("only %d Lloyd steps", len(r1.Objective))
	}
	for i := 1; i < len(r1.Objective); i++ {
		if r1.Objective[i] > r1.Objective[i-1]*(1+1e-6) {
			t.Errorf("objective rose at step %d: %v -> %v", i, r1.Objective[i-1], r1.Objective[i])
		}
	}
	if !(r1.Objective[len(r1.Objective)-1] < 0.99*r1.Objective[0]) {
		t.Errorf("Lloyd steps did not improve on the seeding: %v", r1.Objective)
	}
	t.Logf("objective %v, NMSE %v", r1.Objective, r1.NMSE)
	st.Seed = 8
	r3, err := Compress(bindings.Go(), mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Equal(r1.Codebook, r3.Codebook) {
		t.Error("seeds 7 and 8 gave the same codebook")
	}
}

func TestWeightedReducesWeightedError(t *testing.T) {
	mats := []matrix.Matrix{clustered("a", 96, 16, 4, 11)}
	rng := rand.New(rand.NewPCG(4, 4))
	cw := make([]float32, 16)
	for i := range cw {
		cw[i] = float32(math.Exp(2 * rng.NormFloat64()))
	}
	werr := func(res *Result) float64 {
		out, err := Reconstruct(res, shapes(mats))
		if err != nil {
			t.Fatal(err)
		}
		var e float64
		for i, v := range mats[0].Data {
			d := float64(v) - float64(out[0][i])
			e += float64(cw[i%16]) * d * d
		}
		return e
	}
	for _, dim := range []int{2, 4} {
		st := Settings{Dim: dim, K: 8, Seed: 1}
		u, err := Compress(nil, mats, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Compress(nil, mats, st, cw)
		if err != nil {
			t.Fatal(err)
		}
		eu, ew := werr(u), werr(w)
		t.Logf("d=%d: weighted error, unweighted k-means %.4g, weighted k-means %.4g", dim, eu, ew)
		if !(ew < eu) {
			t.Errorf("d=%d: weighted k-means error %v not below unweighted %v", dim, ew, eu)
		}
	}
}

// TestDeadCodewordReseeded puts a codeword far from every sub-vector and
// checks one update moves it onto the worst-served sub-vector.
func TestDeadCodewordReseeded(t *testing.T) {
	m := matrix.Matrix{Name: "d", Rows: 4, Cols: 2, Data: []float32{1, 1, 1, 1, 0, 0, 5, 6}}
	st := Settings{Dim: 1, K: 3, Unscaled: true}
	q := newQuantiser(bindings.Go(), []matrix.Matrix{m}, st, nil, 4, 2)
	c := []float32{1, 0, 100}
	if _, _, err := q.assign(c); err != nil {
		t.Fatal(err)
	}
	if err := q.update(c); err != nil {
		t.Fatal(err)
	}
	// Codeword 0 serves 1,1,1,1,5,6 (mean 2.5), 1 serves 0,0; 2 is dead and
	// takes the worst-served value, 6 (distance 25 from 1).
	if want := []float32{2.5, 0, 6}; !cmp.Equal(c, want) {
		t.Errorf("codebook after update %v, want %v", c, want)
	}
}

func TestCost(t *testing.T) {
	st := Settings{Dim: 2, K: 64}
	// 5 members of 64x64: 5*64*32 indices of 6 bits, 64*2 fp16, 5 fp32.
	if got, want := Cost(5*64, 64, 5, st), int64(5*64*32*6/8+2*64*2+4*5); got != want {
		t.Errorf("Cost = %d, want %d", got, want)
	}
	// 172 columns at d=8: 22 sub-vectors per row, 9-bit indices.
	if got, want := Cost(64, 172, 1, Settings{Dim: 8, K: 300}), int64((64*22*9+7)/8+2*300*8+4); got != want {
		t.Errorf("Cost = %d, want %d", got, want)
	}
	for k := 2; k <= 5000; k++ {
		if IndexBits(k) != pllm.BitsFor(uint64(k)) {
			t.Fatalf("IndexBits(%d) = %d, container width %d", k, IndexBits(k), pllm.BitsFor(uint64(k)))
		}
	}
}

func TestRefusesBadInput(t *testing.T) {
	good := []matrix.Matrix{clustered("g", 8, 6, 2, 1)}
	nan := float32(math.NaN())
	bad := clustered("bad", 8, 6, 2, 1)
	bad.Data[13] = nan
	for _, c := range []struct {
		mats []matrix.Matrix
		st   Settings
		cw   []float32
		want string
	}{
		{good, Settings{Dim: 0, K: 4}, nil, "sub-vector length 0"},
		{good, Settings{Dim: 2, K: 1}, nil, "codebook size 1"},
		{good, Settings{Dim: 2, K: 4, Iters: -1}, nil, "iterations"},
		{nil, Settings{Dim: 2, K: 4}, nil, "no matrices"},
		{[]matrix.Matrix{good[0], clustered("h", 3, 5, 2, 1)}, Settings{Dim: 2, K: 4}, nil, "h: 5 columns, but g has 6"},
		{[]matrix.Matrix{{Name: "s", Rows: 2, Cols: 2, Data: []float32{1}}}, Settings{Dim: 2, K: 2}, nil, "s: 1 values for a 2x2"},
		{[]matrix.Matrix{bad}, Settings{Dim: 2, K: 4}, nil, "bad: non-finite weight NaN at row 2, column 1"},
		{good, Settings{Dim: 2, K: 25}, nil, "25 codewords for only 24 sub-vectors"},
		{good, Settings{Dim: 2, K: 4}, []float32{1, 1}, "2 column weights for 6 columns"},
		{good, Settings{Dim: 2, K: 4}, []float32{1, 1, nan, 1, 1, 1}, "column weight NaN at column 2"},
		{good, Settings{Dim: 2, K: 4}, []float32{1, 1, 1, 1, float32(math.Inf(1)), 1}, "column weight +Inf"},
		{good, Settings{Dim: 2, K: 4}, make([]float32, 6), "all zero"},
		{[]matrix.Matrix{{Name: "big", Rows: 2, Cols: 1, Data: []float32{1e6, 2e6}}}, Settings{Dim: 1, K: 2, Unscaled: true}, nil, "fp16 range"},
	} {
		_, err := Compress(bindings.Go(), c.mats, c.st, c.cw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %v: error %v, want one containing %q", c.st, c.cw, err, c.want)
		}
	}
	res, err := Compress(bindings.Go(), good, Settings{Dim: 2, K: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reconstruct(res, [][2]int{{8, 5}}); err == nil || !strings.Contains(err.Error(), "columns") {
		t.Errorf("wrong width: %v", err)
	}
	if _, err := Reconstruct(res, [][2]int{{7, 6}}); err == nil || !strings.Contains(err.Error(), "left over") {
		t.Errorf("too few rows: %v", err)
	}
	res.Indices[5] = 4
	if _, err := Reconstruct(res, [][2]int{{8, 6}}); err == nil || !strings.Contains(err.Error(), "index 4 outside [0, 4)") {
		t.Errorf("bad index: %v", err)
	}
}

// TestStories260K quantises every projection of a real model with one
// codebook per kind (the same projection of all layers) and reports the
// error at the stored size.
func TestStories260K(t *testing.T) {
	src, err := checkpoint.Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kinds := map[string][]matrix.Matrix{}
	var order []string
	for _, ti := range src.Tensors {
		if !strings.HasSuffix(ti.Name, "_proj.weight") {
			continue
		}
		data, err := src.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(ti.Name, ".") // model.layers.N.<block>.<kind>.weight
		kind := parts[3] + "." + parts[4]
		if kinds[kind] == nil {
			order = append(order, kind)
		}
		kinds[kind] = append(kinds[kind], matrix.Matrix{Name: ti.Name, Rows: ti.Shape[0], Cols: ti.Shape[1], Data: data})
	}
	if len(order) != 7 {
		t.Fatalf("%d projection kinds, want 7", len(order))
	}
	st := Settings{Dim: 2, K: 64, Seed: 1}
	var num, den float64
	var bytes, weights int64
	for _, kind := range order {
		mats := kinds[kind]
		res, err := Compress(bindings.Go(), mats, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if o := res.Objective; !(o[len(o)-1] < o[0]) {
			t.Errorf("%s: Lloyd steps did not improve on the seeding: %v", kind, o)
		}
		rows := 0
		var kn, kd float64
		for i, m := range mats {
			var ss float64
			for _, v := range m.Data {
				ss += float64(v) * float64(v)
			}
			kn += res.NMSE[i] * ss
			kd += ss
			rows += m.Rows
			weights += int64(m.Rows * m.Cols)
		}
		num, den = num+kn, den+kd
		bytes += Cost(rows, mats[0].Cols, len(mats), st)
		t.Logf("%s: NMSE %.5f after %d Lloyd steps", kind, kn/kd, len(res.Objective))
	}
	t.Logf("stories260K projections, vq d=%d K=%d shared per kind (%.3f bits/weight): NMSE %.5f",
		st.Dim, st.K, float64(bytes*8)/float64(weights), num/den)
}

func TestSampleIndices(t *testing.T) {
	for _, c := range [][2]int{{10, 10}, {1000, 64}, {100, 99}} {
		n, m := c[0], c[1]
		a := sampleIndices(rand.New(rand.NewPCG(1, 2)), n, m)
		b := sampleIndices(rand.New(rand.NewPCG(1, 2)), n, m)
		if !cmp.Equal(a, b) || len(a) != m {
			t.Fatalf("n=%d m=%d: %d indices, repeatable %v", n, m, len(a), cmp.Equal(a, b))
		}
		for i, v := range a {
			if v < 0 || v >= n || (i > 0 && v <= a[i-1]) {
				t.Fatalf("n=%d m=%d: indices not distinct, ascending and in range: %v", n, m, a)
			}
		}
	}
}
