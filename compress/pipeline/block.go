package pipeline

import (
	"fmt"
	"math/rand/v2"

	"pocketllm-native/compress/finetune"
	"pocketllm-native/compress/llama"
)

// tuneBlocks tunes layer by layer, in model order: each layer's own
// groups (those whose members all lie in it) and its two norms minimise the
// mean square difference between the original layer's output on the
// original model's activations and the compressed layer's output on the
// activations of the model compressed so far, so each layer also corrects
// what the layers before it left. Groups shared across layers are not
// touched here (tuning them for one layer would move the others); the
// end-to-end stage tunes them. It returns the tuned norms by name, and
// params holds the compressed model as tuned.
func (o CompressOptions) tuneBlocks(groups []*trained, cal *Calibrated, params *llama.Params[float32]) (map[string][]float32, error) {
	m := cal.set.model
	seq, err := llama.NewSeq[float32](m.Config, o.Kernels)
	if err != nil {
		return nil, err
	}
	orig := llama.ParamsOf[float32](m)
	hidden := m.Config.HiddenSize
	xo := make([][]float32, len(cal.set.windows)) // original activations
	xc := make([][]float32, len(cal.set.windows)) // compressed model's
	for i, w := range cal.set.windows {
		xo[i] = make([]float32, len(w)*hidden)
		for t, tok := range w {
			copy(xo[i][t*hidden:(t+1)*hidden], orig.Embed[tok*hidden:(tok+1)*hidden])
		}
		xc[i] = append([]float32(nil), xo[i]...)
	}
	rng := rand.New(rand.NewPCG(o.Method.Seed, 0xb10c))
	order := rng.Perm(len(xo))
	tunedNorms := map[string][]float32{}
	for l := range m.Layers {
		targets := make([][]float32, len(xo))
		for i := range xo {
			c, err := seq.LayerForward(&orig.Layers[l], xo[i])
			if err != nil {
				return nil, err
			}
			targets[i] = c.Out
		}
		obj := &blockObjective{seq: seq, params: params, layer: l, inputs: xc, targets: targets,
			order: order, batch: max(1, o.Tuning.E2EBatch)}
		var tg []finetune.Group
		for _, t := range groups {
			if t.rtn != nil || firstLayer(t) != l || lastLayer(t) != l {
				continue
			}
			g, err := t.tunable()
			if err != nil {
				return nil, err
			}
			if err := obj.add(g, names(t)); err != nil {
				return nil, err
			}
			tg = append(tg, g)
		}
		normNames := []string{llama.LayerTensorName(l, "input_layernorm"), llama.LayerTensorName(l, "post_attention_layernorm")}
		norms := [][]float32{append([]float32(nil), *params.Tensor(normNames[0])...), append([]float32(nil), *params.Tensor(normNames[1])...)}
		dense := finetune.Dense(norms, nil)
		if err := obj.add(dense, normNames); err != nil {
			return nil, err
		}
		tg = append(tg, dense)
		out, err := finetune.Tune(o.Kernels, tg, obj, finetune.Options{
			Steps: o.Tuning.BlockSteps, LR: o.Tuning.E2ELR, ValidateEvery: 10,
			Progress: func(p finetune.Progress) {
				o.emit(Event{Kind: "tune", Stage: "block", Group: fmt.Sprintf("layer %d", l), Index: l + 1, Of: len(m.Layers), Tune: &p})
			},
		})
		if err != nil {
			return nil, fmt.Errorf("block tuning of layer %d: %w", l, err)
		}
		o.emit(Event{Kind: "tuned", Stage: "block", Group: fmt.Sprintf("layer %d", l), Index: l + 1, Of: len(m.Layers),
			Tune: &finetune.Progress{Loss: out.Initial, Best: out.Best, Step: out.BestStep, Steps: o.Tuning.BlockSteps}})
		// Install what tuning kept, and move both streams of activations on.
		w, err := reconstructAll(o, tg)
		if err != nil {
			return nil, err
		}
		obj.install(w)
		for i, name := range normNames {
			tunedNorms[name] = norms[i]
		}
		for i := range xc {
			c, err := seq.LayerForward(&params.Layers[l], xc[i])
			if err != nil {
				return nil, err
			}
			xc[i], xo[i] = c.Out, targets[i]
		}
	}
	return tunedNorms, nil
}

func names(t *trained) []string {
	out := make([]string, len(t.mats))
	for i, m := range t.mats {
		out[i] = m.Name
	}
	return out
}

// firstLayer is the lowest layer of a group's members (-1 when a member
// lies outside every layer).
func firstLayer(t *trained) int {
	first := 1 << 30
	for _, m := range t.mats {
		l := layerOf(m.Name)
		if l < 0 {
			return -1
		}
		first = min(first, l)
	}
	return first
}

func reconstructAll(o CompressOptions, gs []finetune.Group) ([][][]float32, error) {
	w := make([][][]float32, len(gs))
	for i, g := range gs {
		var err error
		if w[i], err = g.Reconstruct(o.Kernels); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// blockObjective is the mean square difference between one compressed
// layer's outputs and the original's, over batches of calibration
// sequences.
type blockObjective struct {
	seq             *llama.Seq[float32]
	params          *llama.Params[float32]
	layer           int
	inputs, targets [][]float32
	order           []int
	batch           int
	names           [][]string // per tuned group, its members' tensor names
}

func (b *blockObjective) add(g finetune.Group, names []string) error {
	for _, n := range names {
		if layerOf(n) != b.layer || b.params.Tensor(n) == nil {
			return fmt.Errorf("tensor %s is not part of layer %d", n, b.layer)
		}
	}
	b.names = append(b.names, names)
	return nil
}

func (b *blockObjective) install(w [][][]float32) {
	for g, names := range b.names {
		for m, n := range names {
			*b.params.Tensor(n) = w[g][m]
		}
	}
}

func (b *blockObjective) mse(seqs []int, dW [][][]float32) (float64, error) {
	lp := &b.params.Layers[b.layer]
	var grad *llama.Params[float32]
	if dW != nil {
		grad = &llama.Params[float32]{Layers: make([]llama.LayerParams[float32], len(b.params.Layers))}
		for _, names := range b.names {
			for _, n := range names {
				*grad.Tensor(n) = make([]float32, len(*b.params.Tensor(n)))
			}
		}
	}
	var sum float64
	for _, i := range seqs {
		c, err := b.seq.LayerForward(lp, b.inputs[i])
		if err != nil {
			return 0, err
		}
		var d []float32
		if grad != nil {
			d = make([]float32, len(c.Out))
		}
		e, err := llama.SquaredError(c.Out, b.targets[i], d)
		if err != nil {
			return 0, err
		}
		sum += e
		if grad != nil {
			if _, err := b.seq.LayerBackward(lp, c, d, &grad.Layers[b.layer]); err != nil {
				return 0, err
			}
		}
	}
	n := float64(len(seqs))
	if grad != nil {
		for g, names := range b.names {
			for m, name := range names {
				for j, v := range *grad.Tensor(name) {
					dW[g][m][j] = v / float32(n)
				}
			}
		}
	}
	return sum / n, nil
}

func (b *blockObjective) Loss(step int, w, dW [][][]float32) (float64, error) {
	b.install(w)
	seqs := make([]int, 0, b.batch)
	for j := 0; j < min(b.batch, len(b.order)); j++ {
		seqs = append(seqs, b.order[(step*b.batch+j)%len(b.order)])
	}
	return b.mse(seqs, dW)
}

func (b *blockObjective) Validate(w [][][]float32) (float64, error) {
	b.install(w)
	return b.mse(b.order[:min(e2eValidation, len(b.order))], nil)
}
