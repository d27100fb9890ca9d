package rtn

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/internal/sharedtest"
)

func mat(name string, rows, cols int, data ...float32) matrix.Matrix {
	return matrix.Matrix{Name: name, Rows: rows, Cols: cols, Data: data}
}

func f16(v float32) float32 { return fp16.ToFloat32(fp16.FromFloat32(v)) }

func TestHandChecked(t *testing.T) {
	// Row 0: one exact group 0..3 and a short group {10, 12}.
	// Row 1: a constant group and an all-zero short group.
	m := mat("hand", 2, 6,
		0, 1, 2, 3, 10, 12,
		0.1, 0.1, 0.1, 0.1, 0, 0)
	res, err := Compress(m, Settings{Bits: 2, GroupSize: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1 := f16(2.0 / 3) // 0.66650390625
	wantScales := []float32{1, s1, 0, 0}
	wantOffsets := []float32{0, 10, f16(0.1), 0}
	wantCodes := []uint32{0, 1, 2, 3, 0, 3, 0, 0, 0, 0, 0, 0}
	for g := range wantScales {
		if res.Scales[g] != wantScales[g] || res.Offsets[g] != wantOffsets[g] {
			t.Errorf("group %d: scale %v offset %v, want %v %v", g, res.Scales[g], res.Offsets[g], wantScales[g], wantOffsets[g])
		}
	}
	for i, c := range wantCodes {
		if res.Codes[i] != c {
			t.Errorf("code %d = %d, want %d", i, res.Codes[i], c)
		}
	}
	got := Reconstruct(res)
	want := []float32{0, 1, 2, 3, 10, float32(3*s1) + 10, f16(0.1), f16(0.1), f16(0.1), f16(0.1), 0, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("w[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if n := matrix.NMSE(m.Data, got); res.NMSE != n || math.IsNaN(n) {
		t.Errorf("reported NMSE %v, reconstruction gives %v", res.NMSE, n)
	}
}

func TestConstantAndZeroMatrices(t *testing.T) {
	for _, v := range []float32{0, -3.5, 1e-9} {
		m := mat("const", 3, 5, make([]float32, 15)...)
		for i := range m.Data {
			m.Data[i] = v
		}
		for _, b := range []int{1, 4, 8} {
			res, err := Compress(m, Settings{Bits: b, GroupSize: 2}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range Reconstruct(res) {
				if w != f16(v) {
					t.Fatalf("value %v, %d bits: w[%d] = %v, want %v", v, b, i, w, f16(v))
				}
			}
			if math.IsNaN(res.NMSE) {
				t.Fatalf("value %v: NaN NMSE", v)
			}
		}
	}
}

// plainRTN is an independent min/max round-to-nearest: scale and offset
// rounded to fp16 first, codes from the rounded values.
func plainRTN(m matrix.Matrix, bits, g int) []float32 {
	qmax := float64(int(1)<<bits - 1)
	out := make([]float32, len(m.Data))
	for r := 0; r < m.Rows; r++ {
		for c0 := 0; c0 < m.Cols; c0 += g {
			x := m.Data[r*m.Cols+c0 : r*m.Cols+min(c0+g, m.Cols)]
			lo, hi := x[0], x[0]
			for _, v := range x {
				lo, hi = min(lo, v), max(hi, v)
			}
			s := f16(float32((float64(hi) - float64(lo)) / qmax))
			o := f16(lo)
			for i, v := range x {
				q := 0.0
				if s != 0 {
					q = min(max(math.Round((float64(v)-float64(o))/float64(s)), 0), qmax)
				}
				out[r*m.Cols+c0+i] = float32(s*float32(q)) + o
			}
		}
	}
	return out
}

func gaussian(rows, cols int, seed uint64) matrix.Matrix {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := mat("gauss", rows, cols, make([]float32, rows*cols)...)
	for i := range m.Data {
		m.Data[i] = float32(0.02 * rng.NormFloat64())
	}
	return m
}

// heavyTailed draws Student-t values with 3 degrees of freedom: LLM weights'
// outliers make min/max ranges too wide.
func heavyTailed(rows, cols int, seed uint64) matrix.Matrix {
	rng := rand.New(rand.NewPCG(seed, 2))
	m := mat("heavy", rows, cols, make([]float32, rows*cols)...)
	for i := range m.Data {
		var chi float64
		for k := 0; k < 3; k++ {
			z := rng.NormFloat64()
			chi += z * z
		}
		m.Data[i] = float32(0.02 * rng.NormFloat64() / math.Sqrt(chi/3))
	}
	return m
}

func TestPlainEqualsMinMaxAndSearchIsNoWorse(t *testing.T) {
	for _, m := range []matrix.Matrix{gaussian(40, 100, 1), heavyTailed(40, 100, 2)} {
		for _, st := range []Settings{{Bits: 4, GroupSize: 32}, {Bits: 3, GroupSize: 64}, {Bits: 2, GroupSize: 16}} {
			plain := st
			plain.Shrinks = 1
			pr, err := Compress(m, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			ref := plainRTN(m, st.Bits, st.GroupSize)
			for i, w := range Reconstruct(pr) {
				if w != ref[i] {
					t.Fatalf("%s %+v: plain RTN w[%d] = %v, independent min/max gives %v", m.Name, st, i, w, ref[i])
				}
			}
			sr, err := Compress(m, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %d bits G=%d: NMSE plain %.5f, clip search %.5f", m.Name, st.Bits, st.GroupSize, pr.NMSE, sr.NMSE)
			if !(sr.NMSE < pr.NMSE) {
				t.Errorf("%s %+v: clip search NMSE %v not below plain %v", m.Name, st, sr.NMSE, pr.NMSE)
			}
		}
	}
}

func weightedErr(ref, got []float32, cols int, cw []float32) float64 {
	var e float64
	for i := range ref {
		d := float64(ref[i]) - float64(got[i])
		e += float64(cw[i%cols]) * d * d
	}
	return e
}

func TestColumnWeightsReduceWeightedError(t *testing.T) {
	m := heavyTailed(32, 96, 3)
	rng := rand.New(rand.NewPCG(9, 9))
	cw := make([]float32, m.Cols)
	for c := range cw {
		cw[c] = float32(math.Exp(3 * rng.NormFloat64())) // a few columns dominate
	}
	for _, st := range []Settings{{Bits: 3, GroupSize: 32}, {Bits: 2, GroupSize: 96}} {
		u, err := Compress(m, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Compress(m, st, cw)
		if err != nil {
			t.Fatal(err)
		}
		eu := weightedErr(m.Data, Reconstruct(u), m.Cols, cw)
		ew := weightedErr(m.Data, Reconstruct(w), m.Cols, cw)
		t.Logf("%+v: weighted error unweighted search %.4g, weighted search %.4g", st, eu, ew)
		if !(ew < eu) {
			t.Errorf("%+v: weighted search error %v not below unweighted %v", st, ew, eu)
		}
	}
}

func TestCost(t *testing.T) {
	cases := []struct {
		rows, cols int
		st         Settings
		want       int64
	}{
		{64, 64, Settings{Bits: 4, GroupSize: 32}, 64*64/2 + 4*64*2},
		{172, 64, Settings{Bits: 3, GroupSize: 64}, (172*64*3+7)/8 + 4*172},
		{64, 172, Settings{Bits: 3, GroupSize: 64}, (64*172*3+7)/8 + 4*64*3}, // 172 = 64+64+44
		{1, 5, Settings{Bits: 3, GroupSize: 2}, 2 + 4*3},                     // 15 bits
	}
	for _, c := range cases {
		if got := Cost(c.rows, c.cols, c.st); got != c.want {
			t.Errorf("Cost(%d, %d, %+v) = %d, want %d", c.rows, c.cols, c.st, got, c.want)
		}
	}
	if bpw := float64(Cost(4096, 4096, Settings{Bits: 4, GroupSize: 32})) * 8 / (4096 * 4096); bpw != 5 {
		t.Errorf("4 bits G=32: %v bits per weight, want 5", bpw)
	}
}

func TestRefusesBadInput(t *testing.T) {
	good := gaussian(2, 4, 5)
	nan := float32(math.NaN())
	for _, c := range []struct {
		m    matrix.Matrix
		st   Settings
		cw   []float32
		want string
	}{
		{good, Settings{Bits: 0, GroupSize: 4}, nil, "bits"},
		{good, Settings{Bits: 9, GroupSize: 4}, nil, "bits"},
		{good, Settings{Bits: 4, GroupSize: 0}, nil, "group size"},
		{good, Settings{Bits: 4, GroupSize: 4, Shrinks: -1}, nil, "clipping"},
		{mat("short", 2, 4, 1, 2, 3), Settings{Bits: 4, GroupSize: 4}, nil, "short: 3 values for a 2x4"},
		{mat("bad", 1, 2, 1, nan), Settings{Bits: 4, GroupSize: 4}, nil, "bad: non-finite weight NaN at row 0, column 1"},
		{mat("inf", 1, 2, float32(math.Inf(-1)), 0), Settings{Bits: 4, GroupSize: 4}, nil, "non-finite"},
		{mat("huge", 1, 2, 1e6, 2e6), Settings{Bits: 4, GroupSize: 4}, nil, "fp16 range"},
		{good, Settings{Bits: 4, GroupSize: 4}, []float32{1, 1, 1}, "3 column weights for 4 columns"},
		{good, Settings{Bits: 4, GroupSize: 4}, []float32{1, nan, 1, 1}, "column weight NaN at column 1"},
		{good, Settings{Bits: 4, GroupSize: 4}, []float32{1, -1, 1, 1}, "column weight -1"},
		{good, Settings{Bits: 4, GroupSize: 4}, []float32{0, 0, 0, 0}, "all zero"},
	} {
		_, err := Compress(c.m, c.st, c.cw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v %v: error %v, want one containing %q", c.m.Name, c.st, c.cw, err, c.want)
		}
	}
}

// TestStories260K measures RTN on every projection of a real model and
// checks that the clipping search never loses to plain min/max.
func TestStories260K(t *testing.T) {
	src, err := checkpoint.Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var mats []matrix.Matrix
	for _, ti := range src.Tensors {
		if !strings.HasSuffix(ti.Name, "_proj.weight") {
			continue
		}
		data, err := src.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		mats = append(mats, matrix.Matrix{Name: ti.Name, Rows: ti.Shape[0], Cols: ti.Shape[1], Data: data})
	}
	if len(mats) != 35 {
		t.Fatalf("%d projections, want 35", len(mats))
	}
	for _, st := range []Settings{{Bits: 4, GroupSize: 32}, {Bits: 3, GroupSize: 64}} {
		var num, den, numPlain float64
		var bytes, weights int64
		for _, m := range mats {
			plain := st
			plain.Shrinks = 1
			pr, err := Compress(m, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			sr, err := Compress(m, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sr.NMSE > pr.NMSE {
				t.Errorf("%s %+v: clip search NMSE %v above plain %v", m.Name, st, sr.NMSE, pr.NMSE)
			}
			var ss float64
			for _, v := range m.Data {
				ss += float64(v) * float64(v)
			}
			num += sr.NMSE * ss
			numPlain += pr.NMSE * ss
			den += ss
			bytes += Cost(m.Rows, m.Cols, st)
			weights += int64(m.Rows * m.Cols)
		}
		t.Logf("stories260K projections, %d bits G=%d (%.3f bits/weight): NMSE plain min/max %.5f, clip search %.5f",
			st.Bits, st.GroupSize, float64(bytes*8)/float64(weights), numPlain/den, num/den)
	}
}
