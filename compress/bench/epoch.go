package bench

import (
	"fmt"
	"math/rand/v2"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pocketllm"
)

// Kernels of the rows Epochs returns: the first epoch (with the run's
// setup: initialisation and, on a resident backend, the upload) and the
// mean of the later ones, what each further epoch costs.
const (
	Epoch     = "epoch"
	EpochNext = "epoch_next"
)

// epochDim is the sub-vector length of the epoch measurement.
const epochDim = 8

// Epochs trains count epochs (pocketllm.EpochTimes: every batch plus the
// full-pass measurement, each) of a seeded random rows x cols matrix at
// d = 8 with a codebook of k, on each backend in turn. Each backend gets an
// Epoch row and, when count > 1, an EpochNext row. ItemsPerSec counts
// sub-vectors; there is no FLOP figure.
func Epochs(ks []bindings.Kernels, rows, cols, k, count int) ([]Row, error) {
	if count < 1 {
		return nil, fmt.Errorf("%d epochs: need at least 1", count)
	}
	m := randomMatrix(rows, cols)
	st := pocketllm.DefaultSettings(epochDim, k)
	st.Epochs = count
	subVectors := float64(rows * ((cols + epochDim - 1) / epochDim))
	shape := fmt.Sprintf("%dx%d_d%d_K%d", rows, cols, epochDim, st.K)
	var out []Row
	for _, kern := range ks {
		times, err := pocketllm.EpochTimes(kern, []matrix.Matrix{m}, st)
		if err != nil {
			return nil, err
		}
		first := times[0].Seconds()
		out = append(out, Row{Kernel: Epoch, Backend: kern.Name(), Shape: shape, Seconds: first, ItemsPerSec: subVectors / first})
		if len(times) > 1 {
			var rest time.Duration
			for _, d := range times[1:] {
				rest += d
			}
			next := rest.Seconds() / float64(len(times)-1)
			out = append(out, Row{Kernel: EpochNext, Backend: kern.Name(), Shape: shape, Seconds: next, ItemsPerSec: subVectors / next})
		}
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
