package pocketllm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
)

// BenchmarkEpoch times one training epoch (every batch's passes and Adam
// step, plus the full-pass measurement) at d=8, K=4096 on a ladder of
// matrix sizes, every usable backend side by side.
//
//	go test ./compress/pocketllm -run '^$' -bench Epoch -benchtime 1x
func BenchmarkEpoch(b *testing.B) {
	var ks []bindings.Kernels
	for _, name := range bindings.Backends {
		if k, _, err := bindings.Select(name); err == nil {
			ks = append(ks, k)
			defer bindings.Close(k)
		}
	}
	for _, size := range [][2]int{{256, 1024}, {1024, 4096}} {
		rows, cols := size[0], size[1]
		rng := rand.New(rand.NewPCG(1, 2))
		m := matrix.Matrix{Name: "bench", Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
		for i := range m.Data {
			m.Data[i] = float32(0.02 * rng.NormFloat64())
		}
		st := DefaultSettings(8, 4096)
		st.Epochs = 1
		for _, k := range ks {
			b.Run(fmt.Sprintf("%dx%d_d8_K4096/%s", rows, cols, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := TimeEpochs(k, []matrix.Matrix{m}, st); err != nil {
						b.Fatal(err)
					}
				}
				subVectors := float64(rows * cols / 8)
				b.ReportMetric(subVectors*float64(b.N)/b.Elapsed().Seconds(), "subvectors/s")
			})
		}
	}
}
