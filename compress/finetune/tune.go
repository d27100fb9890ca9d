package finetune

import (
	"fmt"
	"math"
	"time"

	"pocketllm-native/bindings"
)

// Objective is what tuning minimises. Loss receives every group's
// reconstructed members (w[g][m]) and must fill dW (same shapes, zeroed by
// the caller) with the loss's gradient with respect to them. step counts
// from 0; a stochastic objective may use it to pick its batch.
type Objective interface {
	Loss(step int, w, dW [][][]float32) (float64, error)
}

// Validator is an Objective that can also measure the loss on a fixed set
// (for stochastic objectives, whose step losses are not comparable): the
// tuner keeps the parameters with the lowest Validate.
type Validator interface {
	Validate(w [][][]float32) (float64, error)
}

// Options are the tuner's schedule.
type Options struct {
	Steps int
	LR    float64 // Adam learning rate, decayed by cosine to a tenth at the last step
	// ValidateEvery measures a Validator every this many steps (and at the
	// start and end); 0 means every 10 steps.
	ValidateEvery int
	Progress      func(Progress)
}

// Progress reports one tuning step.
type Progress struct {
	Step, Steps int
	Loss        float64 // the step's objective (before its update)
	Best        float64 // lowest loss (or validation loss) so far
	Elapsed     time.Duration
}

// Outcome is what a tuning run measured.
type Outcome struct {
	Initial, Best float64 // objective (or validation) before tuning and of the kept parameters
	BestStep      int     // 0: the parameters tuning started from
}

// Tune minimises obj over the groups' continuous parameters with Adam and
// keeps the parameters with the lowest objective (by Validate where obj is
// a Validator, else by the step loss, which for a deterministic objective
// is measured on the parameters before each update). The groups are
// committed to what they were with that loss; tuning never makes the
// objective worse than where it started. Deterministic for a backend.
func Tune(k bindings.Kernels, groups []Group, obj Objective, opt Options) (Outcome, error) {
	if opt.Steps < 0 || !(opt.LR > 0) {
		return Outcome{}, fmt.Errorf("finetune: %d steps at learning rate %v", opt.Steps, opt.LR)
	}
	every := opt.ValidateEvery
	if every <= 0 {
		every = 10
	}
	val, validates := obj.(Validator)
	start := time.Now()
	grads := make([][]float32, len(groups))
	m := make([][]float32, len(groups))
	v := make([][]float32, len(groups))
	best := make([][]float32, len(groups))
	dW := make([][][]float32, len(groups))
	for i, g := range groups {
		n := len(g.Params())
		grads[i], m[i], v[i] = make([]float32, n), make([]float32, n), make([]float32, n)
		best[i] = append([]float32(nil), g.Params()...)
		for _, sh := range g.Shapes() {
			dW[i] = append(dW[i], make([]float32, sh[0]*sh[1]))
		}
	}
	reconstruct := func() ([][][]float32, error) {
		w := make([][][]float32, len(groups))
		for i, g := range groups {
			var err error
			if w[i], err = g.Reconstruct(k); err != nil {
				return nil, err
			}
		}
		return w, nil
	}
	out := Outcome{Initial: math.Inf(1), Best: math.Inf(1)}
	keep := func(loss float64, step int) {
		if step == 0 {
			out.Initial = loss
		}
		if loss < out.Best {
			out.Best, out.BestStep = loss, step
			for i, g := range groups {
				copy(best[i], g.Params())
			}
		}
	}
	validate := func(w [][][]float32, step int) error {
		loss, err := val.Validate(w)
		if err != nil {
			return err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return fmt.Errorf("finetune: validation loss %v at step %d", loss, step)
		}
		keep(loss, step)
		return nil
	}
	for step := 0; step <= opt.Steps; step++ {
		w, err := reconstruct()
		if err != nil {
			return out, err
		}
		if validates && (step%every == 0 || step == opt.Steps) {
			if err := validate(w, step); err != nil {
				return out, err
			}
		}
		if step == opt.Steps && validates {
			break
		}
		// Without a validator the loss of the parameters before each update
		// (and of the last update's result) picks the best.
		for i := range dW {
			for _, d := range dW[i] {
				clear(d)
			}
		}
		loss, err := obj.Loss(step, w, dW)
		if err != nil {
			return out, err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return out, fmt.Errorf("finetune: objective %v at step %d", loss, step)
		}
		if !validates {
			keep(loss, step)
		}
		if step == opt.Steps {
			break
		}
		if opt.Progress != nil {
			opt.Progress(Progress{Step: step + 1, Steps: opt.Steps, Loss: loss, Best: out.Best, Elapsed: time.Since(start)})
		}
		lr := float32(opt.LR * (0.1 + 0.9*0.5*(1+math.Cos(math.Pi*float64(step)/float64(opt.Steps)))))
		for i, g := range groups {
			clear(grads[i])
			if err := g.Backward(k, dW[i], grads[i]); err != nil {
				return out, err
			}
			if err := k.Adam(g.Params(), grads[i], m[i], v[i], lr, 0.9, 0.999, 1e-8, step+1); err != nil {
				return out, err
			}
		}
	}
	for i, g := range groups {
		copy(g.Params(), best[i])
		g.Commit()
	}
	return out, nil
}
