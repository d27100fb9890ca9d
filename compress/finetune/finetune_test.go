package finetune

import (
	"math"
	"math/rand/v2"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/vq"
)

func randomMatrix(name string, rows, cols int, seed uint64) matrix.Matrix {
	rng := rand.New(rand.NewPCG(seed, 3))
	m := matrix.Matrix{Name: name, Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = float32(0.05 * rng.NormFloat64())
	}
	return m
}

// randomSecond is a random positive semi-definite matrix with correlated inputs.
func randomSecond(n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 5))
	a := make([]float64, n*n)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	h := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for t := 0; t < n; t++ {
				s += a[i*n+t] * a[j*n+t]
			}
			h[i*n+j] = s / float64(n)
		}
	}
	return h
}

func smallPocketLLM(t *testing.T, k bindings.Kernels) (Group, []matrix.Matrix) {
	mats := []matrix.Matrix{randomMatrix("a", 12, 10, 1), randomMatrix("b", 8, 10, 2)} // 10 % 4: padded rows
	st := pocketllm.DefaultSettings(4, 16)
	st.Epochs, st.BatchVectors, st.KMeansInit = 3, 24, true
	res, err := pocketllm.Compress(k, mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := PocketLLM(res, [][2]int{{12, 10}, {8, 10}}, false)
	if err != nil {
		t.Fatal(err)
	}
	return g, mats
}

func smallVQ(t *testing.T, k bindings.Kernels) (Group, []matrix.Matrix) {
	mats := []matrix.Matrix{randomMatrix("a", 12, 10, 1), randomMatrix("b", 8, 10, 2)}
	res, err := vq.Compress(k, mats, vq.Settings{Dim: 4, K: 16, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := VQ(res, [][2]int{{12, 10}, {8, 10}})
	if err != nil {
		t.Fatal(err)
	}
	return g, mats
}

// The gradient Backward gives for a linear loss sum(c ⊙ Ŵ) matches central
// differences of that loss in every parameter.
func TestBackwardMatchesFiniteDifferences(t *testing.T) {
	k := bindings.Go()
	for name, build := range map[string]func(*testing.T, bindings.Kernels) (Group, []matrix.Matrix){"pocketllm": smallPocketLLM, "vq": smallVQ} {
		t.Run(name, func(t *testing.T) {
			g, _ := build(t, k)
			switch x := g.(type) {
			case *pocketGroup:
				x.exact = true
			case *vqGroup:
				x.exact = true
			}
			rng := rand.New(rand.NewPCG(9, 9))
			var c [][]float32
			for _, sh := range g.Shapes() {
				ci := make([]float32, sh[0]*sh[1])
				for i := range ci {
					ci[i] = float32(rng.NormFloat64())
				}
				c = append(c, ci)
			}
			loss := func() float64 {
				w, err := g.Reconstruct(k)
				if err != nil {
					t.Fatal(err)
				}
				var s float64
				for m := range w {
					for i, v := range w[m] {
						s += float64(c[m][i]) * float64(v)
					}
				}
				return s
			}
			loss()
			grad := make([]float32, len(g.Params()))
			if err := g.Backward(k, c, grad); err != nil {
				t.Fatal(err)
			}
			p := g.Params()
			var num, den float64
			for i := range p {
				old := p[i]
				h := float32(1e-2) * max(1, float32(math.Abs(float64(old))))
				p[i] = old + h
				up := loss()
				p[i] = old - h
				down := loss()
				p[i] = old
				fd := (up - down) / float64(2*h)
				num += (fd - float64(grad[i])) * (fd - float64(grad[i]))
				den += fd * fd
			}
			// float32 central differences: a relative error of a few 1e-3 is noise.
			if rel := math.Sqrt(num / den); !(rel < 2e-2) {
				t.Fatalf("gradient differs from finite differences by %.3g (relative)", rel)
			}
		})
	}
}

// Tuning against the output error lowers it, the committed (rounded)
// parameters reconstruct exactly the weights whose error was reported, and
// the run is deterministic.
func TestTuneLowersOutputError(t *testing.T) {
	k := bindings.Go()
	for name, build := range map[string]func(*testing.T, bindings.Kernels) (Group, []matrix.Matrix){"pocketllm": smallPocketLLM, "vq": smallVQ} {
		t.Run(name, func(t *testing.T) {
			run := func() (Outcome, [][]float32) {
				g, mats := build(t, k)
				obj, err := NewOutputError(k, [][]float32{mats[0].Data, mats[1].Data}, g.Shapes(), [][]float64{randomSecond(10, 1), randomSecond(10, 2)})
				if err != nil {
					t.Fatal(err)
				}
				out, err := Tune(k, []Group{g}, obj, Options{Steps: 60, LR: 3e-3})
				if err != nil {
					t.Fatal(err)
				}
				w, err := g.Reconstruct(k)
				if err != nil {
					t.Fatal(err)
				}
				got, err := obj.Value(w, nil)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(got-out.Best) > 1e-12*max(1, out.Best) {
					t.Fatalf("committed parameters give %v, tuning reported %v", got, out.Best)
				}
				return out, w
			}
			out, w := run()
			if !(out.Best < 0.95*out.Initial) || out.BestStep == 0 {
				t.Fatalf("tuning took the output error from %v to %v (step %d)", out.Initial, out.Best, out.BestStep)
			}
			out2, w2 := run()
			if out2 != out {
				t.Fatalf("two runs differ: %+v vs %+v", out, out2)
			}
			for m := range w {
				for i := range w[m] {
					if w[m][i] != w2[m][i] {
						t.Fatalf("two runs reconstruct different weights")
					}
				}
			}
		})
	}
}

// Index updates against the output error never raise it, and on inputs
// with correlated second moments they lower it (nearest-codeword
// assignment ignores the correlation).
func TestIndexUpdatesLowerOutputError(t *testing.T) {
	k := bindings.Go()
	for name, build := range map[string]func(*testing.T, bindings.Kernels) (Group, []matrix.Matrix){"pocketllm": smallPocketLLM, "vq": smallVQ} {
		t.Run(name, func(t *testing.T) {
			g, mats := build(t, k)
			obj, err := NewOutputError(k, [][]float32{mats[0].Data, mats[1].Data}, g.Shapes(), [][]float64{randomSecond(10, 1), randomSecond(10, 2)})
			if err != nil {
				t.Fatal(err)
			}
			value := func() float64 {
				w, err := g.Reconstruct(k)
				if err != nil {
					t.Fatal(err)
				}
				v, err := obj.Value(w, nil)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			before := value()
			var changed bool
			if name == "vq" {
				changed, err = UpdateIndices(k, g, obj)
			} else {
				changed, err = SearchIndices(k, g, obj, 4, 1)
			}
			if err != nil {
				t.Fatal(err)
			}
			after := value()
			if !changed || !(after < before) {
				t.Fatalf("index update: changed %v, output error %v -> %v", changed, before, after)
			}
		})
	}
}
