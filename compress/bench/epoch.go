package bench

import (
	"fmt"
	"math/rand/v2"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pocketllm"
)

// Epoch is the Kernel of the rows Epochs returns.
const Epoch = "epoch"

// epochDim is the sub-vector length of the epoch measurement.
const epochDim = 8

// Epochs times one training epoch (pocketllm.TimeEpochs: every batch plus
// the full-pass measurement) of a seeded random rows x cols matrix at d = 8
// with a codebook of k, on each backend in turn. ItemsPerSec counts
// sub-vectors; there is no FLOP figure.
func Epochs(ks []bindings.Kernels, rows, cols, k int) ([]Row, error) {
	m := randomMatrix(rows, cols)
	st := pocketllm.DefaultSettings(epochDim, k)
	st.Epochs = 1
	var out []Row
	for _, kern := range ks {
		d, err := pocketllm.TimeEpochs(kern, []matrix.Matrix{m}, st)
		if err != nil {
			return nil, err
		}
		n := float64(rows * ((cols + epochDim - 1) / epochDim))
		out = append(out, Row{Kernel: Epoch, Backend: kern.Name(), Shape: fmt.Sprintf("%dx%d_d%d_K%d", rows, cols, epochDim, st.K),
			Seconds: d.Seconds(), ItemsPerSec: n / d.Seconds()})
	}
	return out, nil
}

// randomMatrix is a seeded random matrix with a transformer layer's scale.
func randomMatrix(rows, cols int) matrix.Matrix {
	rng := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	m := matrix.Matrix{Name: "bench", Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = float32(0.02 * rng.NormFloat64())
	}
	return m
}
