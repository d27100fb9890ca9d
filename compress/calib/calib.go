// Package calib measures how much each input of each linear layer matters:
// it runs the original model over calibration text and records, per weight
// tensor, the mean square of every input channel's activation. Weighing a
// weight's reconstruction error by its input's mean square makes the error
// approximate the error of the layer's output on that text (for
// uncorrelated inputs, exactly), which is what the model feels.
package calib

import (
	"fmt"

	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
)

// Stats are the per-channel mean squares of the inputs of every linear
// layer's weight tensor, by tensor name, and the number of tokens seen.
type Stats struct {
	MeanSquare map[string][]float32
	Tokens     int
}

// Collect runs m over lines (each encoded with BOS, cut into the model's
// context windows as evaluation does) and accumulates the statistics.
// maxTokens > 0 stops after that many tokens.
func Collect(m *llama.Model, tok tokenizer.Tokenizer, lines []string, maxTokens int) (*Stats, error) {
	st, err := m.NewState(0)
	if err != nil {
		return nil, err
	}
	layers := m.Config.NumHiddenLayers
	inputs := []llama.Input{llama.InputAttn, llama.InputO, llama.InputMLP, llama.InputDown}
	sums := make([][][]float64, layers) // [layer][input][channel]
	for l := range sums {
		sums[l] = make([][]float64, len(inputs))
	}
	st.Observe = func(layer int, in llama.Input, x []float32) {
		s := sums[layer][in]
		if s == nil {
			s = make([]float64, len(x))
			sums[layer][in] = s
		}
		for i, v := range x {
			s[i] += float64(v) * float64(v)
		}
	}
	tokens := 0
	ctx := st.Capacity()
lines:
	for _, line := range lines {
		for _, w := range eval.Windows(tok.Encode(line, true), ctx) {
			st.Reset()
			for pos, id := range w {
				if _, err := st.Forward(id, pos); err != nil {
					return nil, err
				}
				tokens++
				if maxTokens > 0 && tokens >= maxTokens {
					break lines
				}
			}
		}
	}
	if tokens == 0 {
		return nil, fmt.Errorf("calibration text holds no tokens")
	}
	out := &Stats{MeanSquare: map[string][]float32{}, Tokens: tokens}
	for l := range sums {
		for _, in := range inputs {
			s := sums[l][in]
			ms := make([]float32, len(s))
			for i, v := range s {
				ms[i] = float32(v / float64(tokens))
			}
			for _, part := range in.Tensors() {
				out.MeanSquare[llama.LayerTensorName(l, part)] = ms
			}
		}
	}
	return out, nil
}
