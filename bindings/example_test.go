package bindings_test

import (
	"fmt"

	"pocketllm-native/bindings"
)

// Choose a backend and find the nearest codeword of each latent.
func ExampleSelect() {
	k, report, err := bindings.Select("go") // "auto" takes CUDA, then the native CPU library, then Go
	if err != nil {
		fmt.Println(report) // why each candidate was refused
		panic(err)
	}
	defer bindings.Close(k)

	latents := []float32{0.9, 0.1, -1, -1.2}  // two latents of size 2
	codebook := []float32{0, 0, 1, 0, -1, -1} // three codewords
	idx := make([]int32, 2)
	if err := k.Assign(latents, 2, 2, codebook, 3, idx, nil); err != nil {
		panic(err)
	}
	fmt.Println(k.Name(), idx)
	// Output: go [1 2]
}
