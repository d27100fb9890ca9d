package finetune

import "pocketllm-native/bindings"

// Dense makes tensors kept at full precision tunable (a model's norms):
// every value is a parameter and its gradient is the loss's. round, when
// set, rounds a tensor's values to the precision it is stored in (an fp16
// or bf16 source). Commit writes the rounded values back into tensors.
func Dense(tensors [][]float32, round func(i int, v []float32)) Group {
	g := &denseGroup{tensors: tensors, round: round}
	for _, t := range tensors {
		g.shapes = append(g.shapes, [2]int{1, len(t)})
		g.master = append(g.master, t...)
	}
	return g
}

type denseGroup struct {
	tensors [][]float32
	shapes  [][2]int
	master  []float32
	round   func(i int, v []float32)
}

func (g *denseGroup) Shapes() [][2]int  { return g.shapes }
func (g *denseGroup) Params() []float32 { return g.master }

func (g *denseGroup) Reconstruct(bindings.Kernels) ([][]float32, error) {
	out := make([][]float32, len(g.tensors))
	at := 0
	for i, t := range g.tensors {
		out[i] = append([]float32(nil), g.master[at:at+len(t)]...)
		if g.round != nil {
			g.round(i, out[i])
		}
		at += len(t)
	}
	return out, nil
}

func (g *denseGroup) Backward(_ bindings.Kernels, dW [][]float32, grad []float32) error {
	at := 0
	for i, d := range dW {
		for j, v := range d {
			grad[at+j] += v
		}
		at += len(g.tensors[i])
	}
	return nil
}

func (g *denseGroup) Commit() {
	w, _ := g.Reconstruct(nil)
	for i, t := range g.tensors {
		copy(t, w[i])
	}
}
