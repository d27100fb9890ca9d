// Package calib measures how much each input of each linear layer matters:
// it runs a model over calibration text and records, per weight tensor, the
// mean square of every input channel's activation and, when asked, the
// whole second-moment matrix H = E[x xᵀ] of the input. A weight row's error
// e costs eᵀ H e in the layer's output on that text, which is what the model
// feels; weighing each weight's squared error by its input's mean square is
// the diagonal of that.
package calib

import (
	"fmt"

	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
)

// Stats are the input statistics of every linear layer's weight tensor, by
// tensor name, and the number of tokens seen. Tensors that read the same
// input (q, k and v; gate and up) share one slice.
type Stats struct {
	MeanSquare map[string][]float32
	// Second holds E[x xᵀ] as a row-major [n, n] matrix per tensor (n its
	// input width); nil unless Options.Second was set.
	Second map[string][]float64
	Tokens int
}

// Options choose what Collect records.
type Options struct {
	// Second records the full second-moment matrix of each input, not only
	// its diagonal.
	Second bool
	// Layer >= 0 records only that layer's inputs (the model still runs
	// whole); -1 records every layer.
	Layer int
}

// Windows encodes lines (each with BOS) and cuts them into windows of at
// most ctx tokens, as evaluation does, stopping after maxTokens tokens when
// maxTokens > 0.
func Windows(tok tokenizer.Tokenizer, lines []string, ctx, maxTokens int) [][]int {
	var out [][]int
	n := 0
	for _, line := range lines {
		for _, w := range eval.Windows(tok.Encode(line, true), ctx) {
			if maxTokens > 0 && n+len(w) > maxTokens {
				w = w[:maxTokens-n]
			}
			if len(w) > 0 {
				out = append(out, w)
				n += len(w)
			}
			if maxTokens > 0 && n >= maxTokens {
				return out
			}
		}
	}
	return out
}

// Collect runs m over lines (each encoded with BOS, cut into the model's
// context windows as evaluation does) and accumulates the statistics of
// every layer. maxTokens > 0 stops after that many tokens.
func Collect(m *llama.Model, tok tokenizer.Tokenizer, lines []string, maxTokens int) (*Stats, error) {
	return CollectWindows(m, Windows(tok, lines, m.Config.MaxPositionEmbeddings, maxTokens), Options{Layer: -1})
}

// CollectWindows runs m over token windows, each from position 0, and
// accumulates the statistics opt asks for.
func CollectWindows(m *llama.Model, windows [][]int, opt Options) (*Stats, error) {
	st, err := m.NewState(0)
	if err != nil {
		return nil, err
	}
	layers := m.Config.NumHiddenLayers
	inputs := []llama.Input{llama.InputAttn, llama.InputO, llama.InputMLP, llama.InputDown}
	sums := make([][][]float64, layers) // [layer][input][channel]
	second := make([][][]float64, layers)
	for l := range sums {
		sums[l] = make([][]float64, len(inputs))
		second[l] = make([][]float64, len(inputs))
	}
	st.Observe = func(layer int, in llama.Input, x []float32) {
		if opt.Layer >= 0 && layer != opt.Layer {
			return
		}
		s := sums[layer][in]
		if s == nil {
			s = make([]float64, len(x))
			sums[layer][in] = s
		}
		for i, v := range x {
			s[i] += float64(v) * float64(v)
		}
		if opt.Second {
			h := second[layer][in]
			if h == nil {
				h = make([]float64, len(x)*len(x))
				second[layer][in] = h
			}
			addOuterUpper(h, x)
		}
	}
	tokens := 0
	for _, w := range windows {
		st.Reset()
		if len(w) > st.Capacity() {
			return nil, fmt.Errorf("calibration window of %d tokens is longer than the model's context of %d", len(w), st.Capacity())
		}
		for pos, id := range w {
			if _, err := st.Forward(id, pos); err != nil {
				return nil, err
			}
			tokens++
		}
	}
	if tokens == 0 {
		return nil, fmt.Errorf("calibration text holds no tokens")
	}
	out := &Stats{MeanSquare: map[string][]float32{}, Tokens: tokens}
	if opt.Second {
		out.Second = map[string][]float64{}
	}
	for l := range sums {
		for _, in := range inputs {
			s := sums[l][in]
			if s == nil {
				continue
			}
			ms := make([]float32, len(s))
			for i, v := range s {
				ms[i] = float32(v / float64(tokens))
			}
			var h []float64
			if opt.Second {
				h = symmetric(second[l][in], len(s), float64(tokens))
			}
			for _, part := range in.Tensors() {
				name := llama.LayerTensorName(l, part)
				out.MeanSquare[name] = ms
				if h != nil {
					out.Second[name] = h
				}
			}
		}
	}
	return out, nil
}

// addOuterUpper adds x xᵀ to the upper triangle of h ([n, n]).
func addOuterUpper(h []float64, x []float32) {
	n := len(x)
	for i, a := range x {
		if a == 0 {
			continue
		}
		ai := float64(a)
		row := h[i*n : (i+1)*n]
		for j := i; j < n; j++ {
			row[j] += ai * float64(x[j])
		}
	}
}

// symmetric divides the upper triangle by count and mirrors it.
func symmetric(h []float64, n int, count float64) []float64 {
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := h[i*n+j] / count
			h[i*n+j], h[j*n+i] = v, v
		}
	}
	return h
}
