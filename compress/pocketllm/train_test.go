package pocketllm

import (
	"math/rand/v2"
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
)

// lowRank makes a matrix with structure a codebook can learn: a sum of a few
// outer products plus a little noise.
func lowRank(name string, rows, cols int, seed uint64) matrix.Matrix {
	rng := rand.New(rand.NewPCG(seed, 7))
	const rank = 3
	u := make([]float64, rows*rank)
	v := make([]float64, cols*rank)
	for i := range u {
		u[i] = rng.NormFloat64()
	}
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	m := matrix.Matrix{Name: name, Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			var s float64
			for k := 0; k < rank; k++ {
				s += u[r*rank+k] * v[c*rank+k]
			}
			m.Data[r*cols+c] = float32(0.02 * (s + 0.1*rng.NormFloat64()))
		}
	}
	return m
}

func quick(dim, k int) Settings {
	st := DefaultSettings(dim, k)
	st.Epochs = 8
	st.DecayEvery = 6
	st.BatchVectors = 64
	return st
}

func TestCompressLearnsAndIsDeterministic(t *testing.T) {
	k := bindings.Go()
	mats := []matrix.Matrix{lowRank("a", 48, 30, 1), lowRank("b", 40, 30, 2)} // 30 % 4 != 0: padded rows
	st := quick(4, 64)
	var epochs []Progress
	res, err := Compress(k, mats, st, func(p Progress) { epochs = append(epochs, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(epochs) != st.Epochs {
		t.Fatalf("%d progress reports for %d epochs", len(epochs), st.Epochs)
	}
	if res.Shape.E != 8 || len(res.Indices) != (48+40)*8 || len(res.Scales) != 2 {
		t.Fatalf("unexpected result shape %+v, %d indices", res.Shape, len(res.Indices))
	}
	for i, n := range res.NMSE {
		if !(n < 0.5) {
			t.Errorf("%s: NMSE %.3f after training; the structure was not learned", mats[i].Name, n)
		}
	}
	if epochs[len(epochs)-1].ReconMSE >= epochs[0].ReconMSE {
		t.Errorf("full-pass MSE did not fall: first epoch %.4f, last %.4f", epochs[0].ReconMSE, epochs[len(epochs)-1].ReconMSE)
	}

	again, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Indices, again.Indices) || !slices.Equal(res.Decoder, again.Decoder) || !slices.Equal(res.Codebook, again.Codebook) {
		t.Fatal("same matrices, settings and seed gave different results")
	}
	st.Seed++
	other, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(res.Codebook, other.Codebook) {
		t.Fatal("a different seed gave the same codebook")
	}
}

func TestReconstructMatchesReportedError(t *testing.T) {
	k := bindings.Go()
	mats := []matrix.Matrix{lowRank("m", 32, 16, 3)}
	res, err := Compress(k, mats, quick(4, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Reconstruct(k, res, [][2]int{{32, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if got := matrix.NMSE(mats[0].Data, out[0]); got != res.NMSE[0] {
		t.Fatalf("reconstruction NMSE %v, reported %v", got, res.NMSE[0])
	}
	// Larger codebooks should not reconstruct worse on the same data.
	big, err := Compress(k, mats, quick(4, 256), nil)
	if err != nil {
		t.Fatal(err)
	}
	if big.NMSE[0] > res.NMSE[0]*1.5 {
		t.Errorf("K=256 NMSE %.4f much worse than K=32 %.4f", big.NMSE[0], res.NMSE[0])
	}
}

func TestKMeansRefreshReseedsDeadCodewords(t *testing.T) {
	k := bindings.Go()
	mats := []matrix.Matrix{lowRank("m", 64, 16, 4)}
	st := quick(4, 128)
	st.KMeansEvery = 2
	res, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !(res.NMSE[0] < 0.5) {
		t.Fatalf("NMSE %.3f with k-means refresh", res.NMSE[0])
	}
}

func TestCompressRefusesBadInput(t *testing.T) {
	k := bindings.Go()
	nan := lowRank("w", 4, 8, 5)
	nan.Data[9] = float32(nanValue())
	cases := map[string]struct {
		mats []matrix.Matrix
		st   Settings
	}{
		"nan weight":     {[]matrix.Matrix{nan}, quick(4, 8)},
		"mixed widths":   {[]matrix.Matrix{lowRank("a", 4, 8, 1), lowRank("b", 4, 12, 1)}, quick(4, 8)},
		"codebook of 1":  {[]matrix.Matrix{lowRank("a", 4, 8, 1)}, quick(4, 1)},
		"zero epochs":    {[]matrix.Matrix{lowRank("a", 4, 8, 1)}, func() Settings { s := quick(4, 8); s.Epochs = 0; return s }()},
		"no matrices":    {nil, quick(4, 8)},
		"short data":     {[]matrix.Matrix{{Name: "s", Rows: 2, Cols: 2, Data: []float32{1}}}, quick(4, 8)},
		"negative decay": {[]matrix.Matrix{lowRank("a", 4, 8, 1)}, func() Settings { s := quick(4, 8); s.DecayFactor = -1; return s }()},
	}
	for name, c := range cases {
		if _, err := Compress(k, c.mats, c.st, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func nanValue() float64 { var z float64; return z / z }

func TestColumnWeightsSteerTheError(t *testing.T) {
	// Weighting the first half of the columns 50x must lower their error
	// relative to an unweighted run with the same seed.
	k := bindings.Go()
	m := lowRank("w", 64, 16, 9)
	half := func(d, ref []float32) float64 {
		var num, den float64
		for r := 0; r < m.Rows; r++ {
			for c := 0; c < m.Cols/2; c++ {
				i := r*m.Cols + c
				e := float64(d[i] - ref[i])
				num += e * e
				den += float64(ref[i]) * float64(ref[i])
			}
		}
		return num / den
	}
	errOf := func(m matrix.Matrix) float64 {
		res, err := Compress(k, []matrix.Matrix{m}, quick(4, 16), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Reconstruct(k, res, [][2]int{{m.Rows, m.Cols}})
		if err != nil {
			t.Fatal(err)
		}
		return half(out[0], m.Data)
	}
	plain := errOf(m)
	m.ColWeight = make([]float32, m.Cols)
	for c := range m.ColWeight {
		m.ColWeight[c] = 1
		if c < m.Cols/2 {
			m.ColWeight[c] = 50
		}
	}
	weighted := errOf(m)
	if !(weighted < plain) {
		t.Fatalf("emphasised columns: NMSE %.4f weighted, %.4f unweighted", weighted, plain)
	}
}

func TestRefineNeverRaisesTheError(t *testing.T) {
	k := bindings.Go()
	mats := []matrix.Matrix{lowRank("a", 40, 18, 11), lowRank("b", 24, 18, 12)}
	st := quick(4, 32)
	plain, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.RefineCandidates, st.RefinePasses = 8, 2
	refined, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !(refined.ReconMSE <= plain.ReconMSE) {
		t.Fatalf("refined MSE %.5f above the latent assignment's %.5f", refined.ReconMSE, plain.ReconMSE)
	}
	if slices.Equal(refined.Indices, plain.Indices) {
		t.Fatal("refinement changed no index")
	}
	out, err := Reconstruct(k, refined, [][2]int{{40, 18}, {24, 18}})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mats {
		if got := matrix.NMSE(m.Data, out[i]); got != refined.NMSE[i] {
			t.Fatalf("%s: reconstruction NMSE %v, reported %v", m.Name, got, refined.NMSE[i])
		}
	}
}

func TestKMeansInitStartsFromVectorQuantisation(t *testing.T) {
	k := bindings.Go()
	mats := []matrix.Matrix{lowRank("a", 48, 20, 21), lowRank("b", 32, 20, 22)}
	st := quick(4, 32)
	st.KMeansInit = true
	// A learning rate that wrecks training: the kept parameters must be the
	// k-means initialisation (epoch 0), which already reconstructs well.
	wild := st
	wild.LR = 50
	init, err := Compress(k, mats, wild, nil)
	if err != nil {
		t.Fatal(err)
	}
	if init.BestEpoch != 0 {
		t.Fatalf("kept epoch %d of a wrecked run, want the initialisation", init.BestEpoch)
	}
	for i, n := range init.NMSE {
		if !(n < 0.3) {
			t.Errorf("%s: k-means initialisation NMSE %.3f", mats[i].Name, n)
		}
	}
	trained, err := Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if trained.ReconMSE > init.ReconMSE {
		t.Fatalf("training from the k-means start ended worse (%.5f) than the start (%.5f)", trained.ReconMSE, init.ReconMSE)
	}
	out, err := Reconstruct(k, trained, [][2]int{{48, 20}, {32, 20}})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mats {
		if got := matrix.NMSE(m.Data, out[i]); got != trained.NMSE[i] {
			t.Fatalf("%s: reconstruction NMSE %v, reported %v", m.Name, got, trained.NMSE[i])
		}
	}
	bad := st
	bad.K = 1000
	if _, err := Compress(k, mats, bad, nil); err == nil {
		t.Fatal("k-means initialisation with more codewords than sub-vectors was accepted")
	}
}
