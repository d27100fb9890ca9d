package pocketllm_test

import (
	"fmt"
	"math"
	"math/bits"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pocketllm"
)

// Compress one matrix with a meta network and rebuild it.
func Example() {
	k, _, err := bindings.Select("auto") // CUDA, then the native CPU library, then pure Go
	if err != nil {
		panic(err)
	}
	defer bindings.Close(k)

	// A 64x48 matrix with a little structure.
	m := matrix.Matrix{Name: "w", Rows: 64, Cols: 48, Data: make([]float32, 64*48)}
	for r := 0; r < m.Rows; r++ {
		for c := 0; c < m.Cols; c++ {
			m.Data[r*m.Cols+c] = float32(math.Sin(float64(r)*0.3) * math.Cos(float64(c)*0.2))
		}
	}

	st := pocketllm.DefaultSettings(4, 64) // sub-vectors of 4, 64 codewords
	st.Epochs = 20
	res, err := pocketllm.Compress(k, []matrix.Matrix{m}, st, nil)
	if err != nil {
		panic(err)
	}
	rebuilt, err := pocketllm.Reconstruct(k, res, [][2]int{{m.Rows, m.Cols}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d indices of %d bits, %d codewords\n", len(res.Indices), bits.Len(uint(res.Shape.K-1)), res.Shape.K)
	fmt.Println("rebuilt error matches the report:", matrix.NMSE(m.Data, rebuilt[0]) == res.NMSE[0])
	fmt.Println("error below 10%:", res.NMSE[0] < 0.1)
	// Output:
	// 768 indices of 6 bits, 64 codewords
	// rebuilt error matches the report: true
	// error below 10%: true
}
