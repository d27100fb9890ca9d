package pipeline

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/finetune"
	"pocketllm-native/compress/llama"
)

// e2eValidation is how many calibration sequences (at most) measure the
// divergence that picks the best end-to-end step.
const e2eValidation = 32

// tuneEndToEnd minimises the KL divergence of the whole compressed model's
// next-token distribution from the original's on the calibration text,
// over every group's continuous parameters and the kept norms (indices
// fixed). It returns the tuned norms by tensor name.
// start holds norms an earlier stage tuned.
func (o CompressOptions) tuneEndToEnd(src *checkpoint.Source, groups []*trained, cal *Calibrated, start map[string][]float32) (map[string][]float32, error) {
	m := cal.set.model
	seq, err := llama.NewSeq[float32](m.Config, o.Kernels)
	if err != nil {
		return nil, err
	}
	params := llama.ParamsOf[float32](m)
	obj := &klObjective{seq: seq, params: params, windows: cal.set.windows, batch: max(1, o.Tuning.E2EBatch)}
	var tg []finetune.Group
	for _, t := range groups {
		g, err := t.tunable()
		if err != nil {
			return nil, err
		}
		if g == nil {
			continue // rtn: nothing continuous to tune; its weights stay in params as the original's
		}
		for _, mat := range t.mats {
			if params.Tensor(mat.Name) == nil {
				return nil, fmt.Errorf("tensor %s is not part of the Llama model", mat.Name)
			}
		}
		tg = append(tg, g)
		obj.names = append(obj.names, names(t))
	}
	// The norms are kept in full precision anyway: tuning them is free.
	var normNames []string
	var norms [][]float32
	var dtypes []checkpoint.DType
	for _, info := range src.Tensors {
		if !isNorm(info.Name) {
			continue
		}
		p := params.Tensor(info.Name)
		if _, err := checkpoint.EncodeFloat32(info.DType, nil); p == nil || err != nil {
			continue // not the model's, or not a dtype it can be written back in
		}
		if v, ok := start[info.Name]; ok {
			*p = v
		}
		normNames = append(normNames, info.Name)
		norms = append(norms, append([]float32(nil), *p...))
		dtypes = append(dtypes, info.DType)
	}
	if len(norms) > 0 {
		tg = append(tg, finetune.Dense(norms, func(i int, v []float32) { roundToDType(dtypes[i], v) }))
		obj.names = append(obj.names, normNames)
	}
	if err := obj.prepare(o.Method.Seed, llama.ParamsOf[float32](m)); err != nil {
		return nil, err
	}
	emit := func(e Event) {
		if o.Events != nil {
			e.Group, e.Index, e.Of, e.Stage = "whole model", 1, 1, "e2e"
			o.Events(e)
		}
	}
	out, err := finetune.Tune(o.Kernels, tg, obj, finetune.Options{
		Steps: o.Tuning.E2ESteps, LR: o.Tuning.E2ELR, ValidateEvery: 10,
		Progress: func(p finetune.Progress) { emit(Event{Kind: "tune", Tune: &p}) },
	})
	if err != nil {
		return nil, fmt.Errorf("end-to-end tuning: %w", err)
	}
	emit(Event{Kind: "tuned", Tune: &finetune.Progress{Loss: out.Initial, Best: out.Best, Step: out.BestStep, Steps: o.Tuning.E2ESteps}})
	tuned := map[string][]float32{}
	for i, name := range normNames {
		tuned[name] = norms[i]
	}
	return tuned, nil
}

func isNorm(name string) bool {
	return name == llama.NormName || strings.HasSuffix(name, "layernorm.weight")
}

// roundToDType rounds values to what a tensor of that dtype (one
// EncodeFloat32 accepts) holds.
func roundToDType(dtype checkpoint.DType, v []float32) {
	raw, _ := checkpoint.EncodeFloat32(dtype, v)
	back, _ := checkpoint.DecodeFloat32(dtype, raw)
	copy(v, back)
}

// klObjective is the mean KL divergence from the original model's
// next-token distribution to the compressed model's, over batches of
// calibration sequences.
type klObjective struct {
	seq     *llama.Seq[float32]
	params  *llama.Params[float32] // the original's, with tuned tensors swapped in
	names   [][]string             // per tuned group, its members' tensor names
	windows [][]int
	batch   int
	order   []int       // the sequences in training order
	teacher [][]float32 // per sequence, the original's log-probabilities
	valid   []int       // sequences that pick the best step
}

// prepare runs the original model once over every sequence.
func (k *klObjective) prepare(seed uint64, original *llama.Params[float32]) error {
	vocab := k.seq.Config().VocabSize
	for _, w := range k.windows {
		c, err := k.seq.Forward(original, w)
		if err != nil {
			return err
		}
		lp, err := llama.LogSoftmax(c.Logits, vocab)
		if err != nil {
			return err
		}
		k.teacher = append(k.teacher, lp)
	}
	rng := rand.New(rand.NewPCG(seed, 0xe2e))
	k.order = rng.Perm(len(k.windows))
	k.valid = k.order[:min(e2eValidation, len(k.order))]
	return nil
}

// install points params at the groups' current reconstructions.
func (k *klObjective) install(w [][][]float32) {
	for g, names := range k.names {
		for m, n := range names {
			*k.params.Tensor(n) = w[g][m]
		}
	}
}

func (k *klObjective) divergence(seqs []int, dW [][][]float32) (float64, error) {
	vocab := k.seq.Config().VocabSize
	var grad *llama.Params[float32]
	if dW != nil {
		grad = k.gradient()
	}
	var sum float64
	var tokens int
	for _, i := range seqs {
		c, err := k.seq.Forward(k.params, k.windows[i])
		if err != nil {
			return 0, err
		}
		T := len(k.windows[i])
		var dl []float32
		if grad != nil {
			dl = make([]float32, len(c.Logits))
		}
		kl, err := llama.KL(k.teacher[i], c.Logits, vocab, dl)
		if err != nil {
			return 0, err
		}
		sum += kl * float64(T)
		tokens += T
		if grad != nil {
			// KL's gradient is of the mean over this sequence; weigh it by
			// the sequence's share of the batch's tokens.
			for j := range dl {
				dl[j] *= float32(T)
			}
			if err := k.seq.Backward(k.params, c, dl, grad); err != nil {
				return 0, err
			}
		}
	}
	if grad != nil {
		inv := 1 / float32(tokens)
		for g, names := range k.names {
			for m, n := range names {
				for j, v := range *grad.Tensor(n) {
					dW[g][m][j] = v * inv
				}
			}
		}
	}
	return sum / float64(tokens), nil
}

// gradient is a zero gradient holding only the tuned tensors: the others
// (embeddings, head, kept layers) cost no products.
func (k *klObjective) gradient() *llama.Params[float32] {
	g := &llama.Params[float32]{Layers: make([]llama.LayerParams[float32], len(k.params.Layers))}
	for _, names := range k.names {
		for _, n := range names {
			v := make([]float32, len(*k.params.Tensor(n)))
			if n == llama.LMHeadName {
				g.LMHead = v // an untied head: Tensor finds it only once it is there
				continue
			}
			*g.Tensor(n) = v
		}
	}
	return g
}

// Loss is the divergence on the step's batch, with its gradient.
func (k *klObjective) Loss(step int, w, dW [][][]float32) (float64, error) {
	k.install(w)
	n := len(k.order)
	seqs := make([]int, 0, k.batch)
	for j := 0; j < min(k.batch, n); j++ {
		seqs = append(seqs, k.order[(step*k.batch+j)%n])
	}
	return k.divergence(seqs, dW)
}

// Validate is the divergence on a fixed set of sequences.
func (k *klObjective) Validate(w [][][]float32) (float64, error) {
	k.install(w)
	return k.divergence(k.valid, nil)
}
