package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/calib"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/finetune"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/matrix"
)

// Objectives a group's compression can minimise.
const (
	// ObjectiveOutput is the error of each layer's output on calibration
	// inputs: (w - ŵ)ᵀ H (w - ŵ) summed over rows, with H = E[x xᵀ] the
	// input's second moment (damped). Training weighs each weight by H's
	// diagonal; tuning and index updates then minimise the full form.
	ObjectiveOutput = "output"
	// ObjectiveDiag weighs each weight's squared error by its input's mean
	// square (H's diagonal) and stops there.
	ObjectiveDiag = "diag"
	// ObjectiveWeights is the plain squared error of the weights: no
	// calibration.
	ObjectiveWeights = "weights"
)

// IndexCandidates is how many nearby codewords pocketllm's index update
// tries at each position.
const IndexCandidates = 8

// Tuning chooses what happens after each group is trained.
type Tuning struct {
	// Objective is ObjectiveOutput, ObjectiveDiag or ObjectiveWeights; ""
	// is ObjectiveOutput when there is calibration text.
	Objective string
	// OutputSteps Adam steps of each group's continuous parameters against
	// the output error (0: none), at OutputLR.
	OutputSteps int
	OutputLR    float64
	// IndexUpdate re-picks indices against the output error before
	// tuning: vq by error feedback (finetune.UpdateIndices), pocketllm by
	// a search among each index's IndexCandidates nearest codewords
	// (finetune.SearchIndices).
	IndexUpdate bool
	// Sequential measures each layer's input statistics on the model whose
	// earlier layers are already compressed, and tunes each group as soon
	// as the statistics of all its members are in.
	Sequential bool
	// BlockSteps Adam steps per layer of block-wise tuning (see
	// tuneBlocks; 0: none), at E2ELR, E2EBatch sequences per step.
	BlockSteps int
	// E2ESteps Adam steps of every group's continuous parameters (and the
	// kept norms) against the KL divergence of the whole model's next-token
	// distribution from the original's on the calibration text (0: none),
	// at E2ELR, E2EBatch sequences per step.
	E2ESteps int
	E2ELR    float64
	E2EBatch int
}

func (tu *Tuning) check(calibrated bool) error {
	switch tu.Objective {
	case "":
		tu.Objective = ObjectiveOutput
		if !calibrated {
			tu.Objective = ObjectiveWeights
		}
	case ObjectiveOutput, ObjectiveDiag:
		if !calibrated {
			// The caller was told (a notice) why there is no calibration.
			tu.Objective = ObjectiveWeights
		}
	case ObjectiveWeights:
	default:
		return fmt.Errorf("--objective %q: want %s, %s or %s", tu.Objective, ObjectiveOutput, ObjectiveDiag, ObjectiveWeights)
	}
	switch {
	case tu.OutputSteps < 0, tu.E2ESteps < 0, tu.E2EBatch < 0, tu.BlockSteps < 0:
		return fmt.Errorf("tuning steps and batch must not be negative")
	case tu.OutputSteps > 0 && !(tu.OutputLR > 0):
		return fmt.Errorf("--tune-lr %v must be positive", tu.OutputLR)
	case (tu.E2ESteps > 0 || tu.BlockSteps > 0) && !(tu.E2ELR > 0):
		return fmt.Errorf("--e2e-lr %v must be positive", tu.E2ELR)
	}
	if tu.Objective != ObjectiveOutput {
		tu.OutputSteps, tu.IndexUpdate, tu.Sequential = 0, false, false
	}
	if !calibrated {
		tu.E2ESteps, tu.BlockSteps = 0, 0
	}
	return nil
}

// active says whether anything happens after training.
func (tu Tuning) active(cal *Calibrated) bool {
	return cal != nil && (tu.Objective == ObjectiveOutput && (tu.OutputSteps > 0 || tu.IndexUpdate) || tu.E2ESteps > 0 || tu.BlockSteps > 0)
}

// Calibrated is calibration text run through the original model once.
type Calibrated struct {
	set   *calibrationSet
	stats *calib.Stats
	// About says where the text came from and how many tokens it holds.
	About string
}

// Calibrate reads or samples the calibration text for the checkpoint at in
// and measures the original model's input statistics (full second moments
// when second is set). It returns nil and a notice when there is no
// tokenizer to calibrate with.
func Calibrate(in string, c Calibration, second bool) (*Calibrated, string, error) {
	src, err := checkpoint.Open(in)
	if err != nil {
		return nil, "", err
	}
	defer src.Close()
	return calibrate(src, c, second)
}

func calibrate(src *checkpoint.Source, c Calibration, second bool) (*Calibrated, string, error) {
	set, notice, err := loadCalibration(src, c)
	if err != nil || set == nil {
		return nil, notice, err
	}
	st, err := calib.CollectWindows(set.model, set.windows, calib.Options{Second: second, Layer: -1})
	if err != nil {
		return nil, "", fmt.Errorf("calibration: %w", err)
	}
	return &Calibrated{set: set, stats: st, About: set.about}, "", nil
}

// calibrated is the run's calibration: the one given, or one measured now.
func (o *CompressOptions) calibrated(src *checkpoint.Source) (*Calibrated, error) {
	if o.Calibrated != nil || o.Calibration.Off || o.MethodName == MethodRTN && o.Calibration.Text == "" {
		return o.Calibrated, nil
	}
	obj := o.Tuning.Objective
	if obj == ObjectiveWeights {
		return nil, nil
	}
	cal, notice, err := calibrate(src, o.Calibration, obj == "" || obj == ObjectiveOutput)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	if o.Events != nil {
		if notice != "" {
			o.Events(Event{Kind: "notice", Stage: notice})
		} else {
			o.Events(Event{Kind: "calibration", Stage: cal.About})
		}
	}
	return cal, nil
}

// colWeights are the per-column loss weights of training: H's diagonal.
func (c *Calibrated) colWeights(tu Tuning) map[string][]float32 {
	if c == nil || tu.Objective == ObjectiveWeights {
		return nil
	}
	return c.stats.MeanSquare
}

// tunable is a group's tunable form, nil for rtn.
func (t *trained) tunable() (finetune.Group, error) {
	shapes := make([][2]int, len(t.mats))
	for i, m := range t.mats {
		shapes[i] = [2]int{m.Rows, m.Cols}
	}
	switch {
	case t.pl != nil:
		return finetune.PocketLLM(t.pl, shapes, t.g.set.DecoderF32)
	case t.vq != nil:
		return finetune.VQ(t.vq, shapes)
	}
	return nil, nil
}

// refresh measures each member's NMSE again after tuning.
func (t *trained) refresh(k bindings.Kernels) error {
	g, err := t.tunable()
	if err != nil || g == nil {
		return err
	}
	w, err := g.Reconstruct(k)
	if err != nil {
		return err
	}
	for i, m := range t.mats {
		t.nmse[i] = matrix.NMSE(m.Data, w[i])
	}
	return nil
}

// tune runs the stages Tuning asks for over the trained groups. It returns
// the kept tensors it changed (the norms, end to end), by name.
func (o CompressOptions) tune(src *checkpoint.Source, groups []*trained, cal *Calibrated) (map[string][]float32, error) {
	tu := o.Tuning
	if tu.Objective == ObjectiveOutput && (tu.OutputSteps > 0 || tu.IndexUpdate) {
		start := time.Now()
		if err := o.tuneOutput(groups, cal); err != nil {
			return nil, err
		}
		if err := o.afterStage("output", groups, nil, start); err != nil {
			return nil, err
		}
	}
	var norms map[string][]float32
	if tu.BlockSteps > 0 {
		start := time.Now()
		var err error
		if norms, err = o.tuneBlocks(groups, cal, llama.ParamsOf[float32](cal.set.model)); err != nil {
			return nil, err
		}
		if err := o.afterStage("block", groups, norms, start); err != nil {
			return nil, err
		}
	}
	if tu.E2ESteps > 0 {
		start := time.Now()
		var err error
		if norms, err = o.tuneEndToEnd(src, groups, cal, norms); err != nil {
			return nil, err
		}
		return norms, o.afterStage("e2e", groups, norms, start)
	}
	return norms, nil
}

// emit reports an event when someone listens.
func (o CompressOptions) emit(e Event) {
	if o.Events != nil {
		o.Events(e)
	}
}

// afterStage hands AfterStage the tensors as a stage left them.
func (o CompressOptions) afterStage(stage string, groups []*trained, norms map[string][]float32, start time.Time) error {
	if o.AfterStage == nil {
		return nil
	}
	secs := time.Since(start).Seconds()
	tensors := map[string][]float32{}
	for name, v := range norms {
		tensors[name] = v
	}
	for _, t := range groups {
		g, err := t.tunable()
		if err != nil {
			return err
		}
		if g == nil {
			continue
		}
		w, err := g.Reconstruct(o.Kernels)
		if err != nil {
			return err
		}
		for j, m := range t.mats {
			tensors[m.Name] = w[j]
		}
	}
	return o.AfterStage(stage, tensors, secs)
}

// tuneOutput minimises each group's output error. Sequentially, layer l's
// statistics come from the model whose layers before l are compressed as
// far as tuning has got, and a group is tuned once the statistics of all
// its members are in (at once for a group within one layer; after its last
// layer for a group shared across layers).
func (o CompressOptions) tuneOutput(groups []*trained, cal *Calibrated) error {
	second := map[string][]float64{}
	for name, h := range cal.stats.Second {
		second[name] = h
	}
	done := make([]bool, len(groups))
	tuneReady := func(upTo int) error {
		for i, t := range groups {
			if done[i] || t.rtn != nil || lastLayer(t) > upTo {
				continue
			}
			done[i] = true
			if err := o.tuneGroupOutput(t, second, i, len(groups)); err != nil {
				return err
			}
		}
		return nil
	}
	if !o.Tuning.Sequential {
		return tuneReady(1 << 30)
	}
	m := cal.set.model
	for l := 0; l < m.Config.NumHiddenLayers; l++ {
		if l > 0 {
			cm, err := compressedModel(o, m, groups, l)
			if err != nil {
				return err
			}
			st, err := calib.CollectWindows(cm, cal.set.windows, calib.Options{Second: true, Layer: l})
			if err != nil {
				return err
			}
			for name, h := range st.Second {
				second[name] = h
			}
		}
		if err := tuneReady(l); err != nil {
			return err
		}
	}
	return tuneReady(1 << 30)
}

func (o CompressOptions) tuneGroupOutput(t *trained, second map[string][]float64, i, of int) error {
	g, err := t.tunable()
	if err != nil {
		return err
	}
	orig := make([][]float32, len(t.mats))
	h := make([][]float64, len(t.mats))
	for j, m := range t.mats {
		orig[j] = m.Data
		if h[j] = second[m.Name]; h[j] == nil {
			return nil // a tensor no calibration statistics reach (e.g. the output head): nothing to tune against
		}
	}
	obj, err := finetune.NewOutputError(o.Kernels, orig, g.Shapes(), h)
	if err != nil {
		return fmt.Errorf("group %s: %w", t.g.Name, err)
	}
	emit := func(e Event) {
		if o.Events != nil {
			e.Group, e.Index, e.Of, e.Members, e.Dim, e.K, e.Stage = t.g.Name, i+1, of, len(t.mats), t.g.set.Dim, t.g.set.K, "output"
			o.Events(e)
		}
	}
	if o.Tuning.IndexUpdate {
		if t.vq != nil {
			_, err = finetune.UpdateIndices(o.Kernels, g, obj)
		} else {
			_, err = finetune.SearchIndices(o.Kernels, g, obj, IndexCandidates, 1)
		}
		if err != nil {
			return fmt.Errorf("group %s: %w", t.g.Name, err)
		}
	}
	if o.Tuning.OutputSteps > 0 {
		out, err := finetune.Tune(o.Kernels, []finetune.Group{g}, obj, finetune.Options{
			Steps: o.Tuning.OutputSteps, LR: o.Tuning.OutputLR,
			Progress: func(p finetune.Progress) { emit(Event{Kind: "tune", Tune: &p}) },
		})
		if err != nil {
			return fmt.Errorf("group %s: %w", t.g.Name, err)
		}
		emit(Event{Kind: "tuned", Tune: &finetune.Progress{Loss: out.Initial, Best: out.Best, Step: out.BestStep, Steps: o.Tuning.OutputSteps}})
	}
	return nil
}

var layerName = regexp.MustCompile(`^model\.layers\.(\d+)\.`)

// layerOf is the decoder layer a tensor belongs to, or -1.
func layerOf(name string) int {
	if m := layerName.FindStringSubmatch(name); m != nil {
		if l, err := strconv.Atoi(m[1]); err == nil {
			return l
		}
	}
	return -1
}

// lastLayer is the highest layer of a group's members (a member outside
// every layer counts as after the last).
func lastLayer(t *trained) int {
	last := -1
	for _, m := range t.mats {
		l := layerOf(m.Name)
		if l < 0 {
			return 1 << 29
		}
		last = max(last, l)
	}
	return last
}

// compressedModel is m with every compressed tensor of the layers before
// upTo replaced by its reconstruction from the groups' current parameters.
func compressedModel(o CompressOptions, m *llama.Model, groups []*trained, upTo int) (*llama.Model, error) {
	cm := *m
	cm.Layers = append([]llama.Layer(nil), m.Layers...)
	for _, t := range groups {
		g, err := t.tunable()
		if err != nil {
			return nil, err
		}
		var w [][]float32
		if g != nil {
			if w, err = g.Reconstruct(o.Kernels); err != nil {
				return nil, err
			}
		}
		for j, mat := range t.mats {
			l := layerOf(mat.Name)
			if l < 0 || l >= upTo {
				continue
			}
			if w == nil {
				continue // rtn groups are evaluated as trained: no tuning reads them
			}
			if !llama.SetLayerTensor(&cm.Layers[l], mat.Name, w[j]) {
				return nil, fmt.Errorf("tensor %s is not a Llama projection", mat.Name)
			}
		}
	}
	return &cm, nil
}

// Description says where the calibration came from ("" for none).
func (c *Calibrated) Description() string {
	if c == nil {
		return ""
	}
	return c.About
}
