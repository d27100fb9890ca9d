// Package pipeline runs whole jobs: a checkpoint in, one .pllm file out
// (Compress), and a .pllm file back to dense weights (Decompress). It reads
// one tensor group at a time, so memory follows the largest group, not the
// model.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/finetune"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/vq"
	"pocketllm-native/internal/atomicfile"
	"pocketllm-native/internal/faultpoint"
)

// Method names, as stored in the container.
const (
	MethodPocketLLM = "pocketllm" // METHOD.md: latent codebook and decoder
	MethodVQ        = "vq"        // plain k-means vector quantisation of the sub-vectors
	MethodRTN       = "rtn"       // round to nearest, per group of input weights
)

// CompressOptions describe one compression run.
type CompressOptions struct {
	In, Out string
	Force   bool // overwrite Out

	// Bits is a target in bits per weight, every stored byte counted; the
	// planner then picks Dim and K per group among Dims. When Dim and K are
	// given instead (Bits 0), they are used as given.
	Bits   float64
	Dims   []int
	Dim, K int

	Share            string // ShareAuto, plan.ShareNone, ShareKind or ShareWidth
	Include, Exclude string // regular expressions on tensor names ("" exclude: none)

	// MethodName is MethodPocketLLM ("" too), MethodVQ or MethodRTN.
	MethodName string
	// Method holds the training settings of pocketllm (its Dim, Latent and K
	// are set per group); vq uses its Seed.
	Method pocketllm.Settings
	// VQIters caps vq's Lloyd steps (0: vq's default).
	VQIters int
	// RTN holds rtn's bits and group size; rtn ignores Bits, Dims, Dim and K.
	RTN rtn.Settings

	// Calibration chooses the text the original model runs over (see
	// Calibration); Calibrated, when set, is a calibration already measured
	// (sweeps measure once for many runs) and Calibration is then unused.
	Calibration Calibration
	Calibrated  *Calibrated
	// Tuning chooses the objective and the fine-tuning after training.
	Tuning Tuning
	// AfterStage, when set, is called after training and after each tuning
	// stage of a tuned run ("trained", "output", "e2e") with every
	// compressed tensor as the stage left it (and the norms end-to-end
	// tuning changed) and the seconds the stage took: what each ingredient
	// buys can be measured in one run.
	AfterStage func(stage string, tensors map[string][]float32, seconds float64) error

	Kernels bindings.Kernels
	// KernelPath names the instruction-set path of cpu kernels (each rounds
	// sums in its own order, so it changes the bytes); part of the job's
	// fingerprint.
	KernelPath string
	// Events, when set, receives progress as the run goes.
	Events func(Event)

	// WorkDir, when set, keeps each trained group there as a record, written
	// atomically as soon as the group is trained, and reuses the records an
	// earlier run of the same job left: a run killed at any point and run
	// again writes the same bytes as one uninterrupted run. A folder holding
	// another job's records is an error naming what differs, unless Fresh
	// discards them. The folder's records are removed after the output is
	// written.
	WorkDir string
	Fresh   bool
	// Shard, for CompressShard: the share of the groups this run trains.
	Shard Shard
}

// Event is a progress report: a group starting, an epoch ending, a group done.
type Event struct {
	Kind       string // "calibration", "group", "epoch", "done", "reused", "stage", "tune", "notice"
	Group      string
	Index, Of  int // group number (from 1) and group count
	Members    int
	Dim, K     int
	Epoch      *pocketllm.Progress `json:",omitempty"`
	NMSE       []float64           `json:",omitempty"`
	Seconds    float64             `json:",omitempty"`
	PlannedBPW float64             `json:",omitempty"`
	// Stage names a tuning stage ("output", "sequential", "e2e") or, for
	// "calibration" and "notice", says what happened.
	Stage string             `json:",omitempty"`
	Tune  *finetune.Progress `json:",omitempty"`
}

// Settings is what a .pllm file records about the run that made it.
type Settings struct {
	Method       string  `json:"method"`
	BitsTarget   float64 `json:"bits_target,omitempty"`
	Share        string  `json:"share"`
	Include      string  `json:"include"`
	Exclude      string  `json:"exclude,omitempty"`
	Epochs       int     `json:"epochs"`
	LR           float64 `json:"lr"`
	DecayEvery   int     `json:"decay_every"`
	DecayFactor  float64 `json:"decay_factor"`
	BatchVectors int     `json:"batch_vectors"`
	Lambda       float64 `json:"lambda"`
	Beta         float64 `json:"beta"`
	KMeansEvery  int     `json:"kmeans_every"`
	KMeansInit   bool    `json:"kmeans_init,omitempty"`
	Refine       int     `json:"refine,omitempty"`
	RefinePasses int     `json:"refine_passes,omitempty"`
	Hidden       int     `json:"hidden"`
	DecoderDType string  `json:"decoder_dtype"`
	Seed         uint64  `json:"seed"`
	Backend      string  `json:"backend"`
	Calibration  string  `json:"calibration,omitempty"`
	Objective    string  `json:"objective,omitempty"`
	OutputSteps  int     `json:"output_steps,omitempty"`
	IndexUpdate  bool    `json:"index_update,omitempty"`
	Sequential   bool    `json:"sequential,omitempty"`
	E2ESteps     int     `json:"e2e_steps,omitempty"`
}

// GroupParams is a pocketllm group's settings in the container.
type GroupParams struct {
	Dim       int     `json:"dim"`
	Latent    int     `json:"latent"`
	Hidden    int     `json:"hidden"`
	K         int     `json:"k"`
	E         int     `json:"e"`
	Cols      int     `json:"cols"`
	GELU      string  `json:"gelu"`
	BestEpoch int     `json:"best_epoch"`
	ReconMSE  float64 `json:"recon_mse"`
	// Skip: identity paths around the outer MLPs (x_hat = y0 + D0(y3)).
	Skip bool `json:"skip,omitempty"`
}

// MemberParams is a member's measurements in the container (its scale is
// stored in the "scales" array).
type MemberParams struct {
	NMSE float64 `json:"nmse"`
}

type plannedGroup struct {
	plan.Group
	method string
	set    pocketllm.Settings // pocketllm; Dim and K also for vq
	bpw    float64            // planned bits per weight
}

// Compress runs a whole compression job and returns the file's report.
// With a WorkDir it keeps each trained group there and reuses what an
// earlier run of the same job left (see WorkDir).
func Compress(o CompressOptions) (*Report, error) {
	start := time.Now()
	if o.Shard.Count > 0 {
		return nil, fmt.Errorf("a shard run writes a part file: use CompressShard")
	}
	return runJob(o, nil, start)
}

// runJob plans the job (the groups of parts, when merging, count as
// trained), trains what is left, writes the file and reports it. It owns
// parts: they are closed whatever happens.
func runJob(o CompressOptions, parts *partSet, start time.Time) (*Report, error) {
	j, err := startJob(o, parts)
	if err != nil {
		if parts != nil {
			parts.close()
		}
		return nil, err
	}
	defer j.close()
	rep, err := j.writeContainer()
	if err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// job is a planned run: its input, groups, calibration and where finished
// groups are kept or come from.
type job struct {
	o       CompressOptions
	src     *checkpoint.Source
	planned []plannedGroup
	kept    []checkpoint.TensorInfo
	cal     *Calibrated
	rec     jobRecord
	id      [32]byte
	work    *workDir // nil: nothing kept between runs
	parts   *partSet // merge: every group comes from parts
}

// startJob checks the options, opens the input, plans every group and
// calibrates. parts, for merge, are where the trained groups come from.
func startJob(o CompressOptions, parts *partSet) (_ *job, err error) {
	resumable := o.WorkDir != "" || parts != nil
	var given jobSettings
	if resumable {
		if o.Calibrated != nil {
			return nil, fmt.Errorf("a work folder or shards need the run to measure its own calibration")
		}
		// The settings as given, before the run resolves auto values.
		if given, err = settingsOf(o); err != nil {
			return nil, err
		}
	}
	include, err := compileRegexp("--include", o.Include)
	if err != nil {
		return nil, err
	}
	var exclude *regexp.Regexp
	if o.Exclude != "" {
		if exclude, err = compileRegexp("--exclude", o.Exclude); err != nil {
			return nil, err
		}
	}
	if o.MethodName == "" {
		o.MethodName = MethodPocketLLM
	}
	switch o.MethodName {
	case MethodPocketLLM, MethodVQ:
		// Bits is the plan unless Dim or K is given; checked here so that a
		// bad target is named as such, not by what it would make of Dim.
		switch {
		case (o.Dim != 0 || o.K != 0) && o.Bits != 0:
			return nil, fmt.Errorf("give either a bits target (--bits %v) or a sub-vector length and codebook size (--dim %d --codebook %d), not both", o.Bits, o.Dim, o.K)
		case o.Dim == 0 && o.K == 0:
			if err := plan.CheckTarget(o.Bits); err != nil {
				return nil, fmt.Errorf("--bits: %w", err)
			}
		}
	case MethodRTN:
		if err := o.RTN.Validate(); err != nil {
			return nil, err
		}
		if o.Share == ShareAuto {
			o.Share = plan.ShareNone
		}
		if o.Share != plan.ShareNone {
			return nil, fmt.Errorf("--method rtn quantises each matrix on its own; --share %s applies to pocketllm and vq", o.Share)
		}
	default:
		return nil, fmt.Errorf("--method %q: want %s, %s or %s", o.MethodName, MethodPocketLLM, MethodVQ, MethodRTN)
	}
	if o.Shard.Count > 0 {
		if err := o.Shard.check(); err != nil {
			return nil, err
		}
	}
	if resumable && !o.Force {
		// Refused before any training, and again, atomically, on publishing.
		if _, err := os.Lstat(o.Out); err == nil {
			return nil, atomicfile.ForceHint(fs.ErrExist, o.Out)
		}
	}
	src, err := checkpoint.Open(o.In)
	if err != nil {
		return nil, err
	}
	j := &job{src: src, parts: parts}
	defer func() {
		if err != nil {
			j.close()
		}
	}()
	for _, n := range src.Notices {
		o.emit(Event{Kind: "notice", Stage: n})
	}
	chosen, kept, err := plan.Select(src.Tensors, include, exclude)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("%s: no tensor matches --include %q", o.In, o.Include)
	}
	j.kept = kept
	if j.planned, err = planAll(chosen, &o); err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	if resumable {
		// Fingerprint before calibrating: a mismatch is told at once.
		if err := j.identify(o, given); err != nil {
			return nil, err
		}
	}
	if o.WorkDir != "" {
		// Before calibrating too: a folder of another job is told at once.
		lockName := "lock"
		if o.Shard.Count > 0 {
			lockName = fmt.Sprintf("lock-%d-of-%d", o.Shard.Index, o.Shard.Count)
		}
		if j.work, err = openWorkDir(o.WorkDir, j.rec, o.Fresh, lockName); err != nil {
			return nil, err
		}
	}
	if j.cal, err = o.calibrated(src); err != nil {
		return nil, err
	}
	if err := o.Tuning.check(j.cal != nil); err != nil {
		return nil, err
	}
	j.o = o
	if j.work != nil {
		j.scanWorkDir()
	}
	return j, nil
}

// identify fingerprints the job and, when merging, checks that the parts
// were made by it.
func (j *job) identify(o CompressOptions, given jobSettings) error {
	fp, err := fingerprint(j.src, o, given)
	if err != nil {
		return err
	}
	sj, err := json.Marshal(given)
	if err != nil {
		return fmt.Errorf("recording the settings: %v", err)
	}
	// Where merge reopens the input from, whatever folder it runs in.
	in, err := filepath.Abs(o.In)
	if err != nil {
		in = o.In
	}
	j.rec = jobRecord{Fingerprint: fp, Tool: ToolVersion, Backend: backendID(o), Input: in, Settings: sj}
	for _, g := range j.planned {
		j.rec.Groups = append(j.rec.Groups, g.Name)
	}
	j.id = fp.jobID()
	if j.parts != nil {
		if why := j.parts.rec.mismatch(j.rec); why != "" {
			return fmt.Errorf("%s: the parts were made by another job: %s", j.parts.first(), why)
		}
	}
	return nil
}

func (j *job) close() {
	if j.src != nil {
		j.src.Close()
	}
	if j.parts != nil {
		j.parts.close()
	}
	if j.work != nil {
		j.work.release()
	}
}

// obtain returns group i trained: from the parts being merged, from the
// work folder, or trained now (and then kept in the work folder).
func (j *job) obtain(i int) (*trained, error) {
	g := j.planned[i]
	var t *trained
	var err error
	switch {
	case j.parts != nil:
		if t, err = j.parts.load(i, g, j.id, len(j.planned)); err != nil {
			return nil, err
		}
	case j.work != nil:
		if t, err = j.work.load(i, g, j.id, len(j.planned)); err != nil {
			// Damaged since the scan: say so and train it again.
			j.o.emit(Event{Kind: "notice", Stage: err.Error() + "; training the group again"})
			t = nil
		}
		if t != nil {
			j.o.emit(Event{Kind: "reused", Group: g.Name, Index: i + 1, Of: len(j.planned), Members: len(g.Members), Dim: g.set.Dim, K: g.set.K, PlannedBPW: g.bpw, NMSE: t.nmse})
		}
	}
	if t != nil {
		// Tuning reads the original weights; the container writer does not.
		if j.o.Tuning.active(j.cal) {
			if t.mats, err = readMembers(j.src, g, j.o, j.cal); err != nil {
				return nil, err
			}
		}
		return t, nil
	}
	if t, err = trainGroup(j.src, g, i, len(j.planned), j.o, j.cal); err != nil {
		return nil, err
	}
	if j.work != nil {
		if err := j.work.store(i, len(j.planned), j.id, t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// writeContainer obtains every group, runs the stages that need all of
// them, and writes the .pllm file.
func (j *job) writeContainer() (*Report, error) {
	o, src := j.o, j.src
	defer limitMemory(largestPlanned(j.planned))()
	w, err := pllm.Create(o.Out, o.Force)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Abort()
		}
	}()
	md, err := meta(src, o, j.cal)
	if err != nil {
		return nil, err
	}
	if err := w.WriteMeta(md); err != nil {
		return nil, err
	}
	var tunedKept map[string][]float32
	if !o.Tuning.active(j.cal) {
		// Groups are independent: train, write and forget one at a time.
		for i := range j.planned {
			t, err := j.obtain(i)
			if err != nil {
				return nil, err
			}
			if err := writeGroup(w, t, o.In); err != nil {
				return nil, err
			}
			faultpoint.Hit("container-group")
			// The group's buffers are garbage now; handing them back
			// before the next group allocates keeps the resident set to
			// one group's worth rather than one group's plus the last's.
			t = nil
			debug.FreeOSMemory()
		}
	} else {
		groups := make([]*trained, len(j.planned))
		trainStart := time.Now()
		for i := range j.planned {
			if groups[i], err = j.obtain(i); err != nil {
				return nil, err
			}
		}
		if err := o.afterStage("trained", groups, nil, trainStart); err != nil {
			return nil, err
		}
		if tunedKept, err = o.tune(src, groups, j.cal); err != nil {
			return nil, fmt.Errorf("%s: %w", o.In, err)
		}
		for _, t := range groups {
			if err := t.refresh(o.Kernels); err != nil {
				return nil, err
			}
			if err := writeGroup(w, t, o.In); err != nil {
				return nil, err
			}
			faultpoint.Hit("container-group")
		}
	}
	for _, t := range j.kept {
		if v, ok := tunedKept[t.Name]; ok {
			raw, err := checkpoint.EncodeFloat32(t.DType, v)
			if err != nil {
				return nil, fmt.Errorf("%s: tensor %s: %w", o.In, t.Name, err)
			}
			if err := w.WriteRaw(t, raw); err != nil {
				return nil, err
			}
			continue
		}
		// Copied through a small buffer: a kept embedding can be larger
		// than any group.
		data, n, err := src.Stream(t.Name)
		if err != nil {
			return nil, err
		}
		if err := w.WriteRawFrom(t, data, n); err != nil {
			return nil, err
		}
	}
	for _, f := range src.SideFiles {
		if err := w.WriteSideFile(f); err != nil {
			return nil, err
		}
	}
	// The file is put in place only once it reads back as Inspect reads it,
	// so a file that could not be decompressed is never left at o.Out.
	var rep *Report
	if err := w.CloseVerified(func(r *pllm.Reader) error {
		rep, err = inspect(r, o.Out)
		return err
	}); err != nil {
		return nil, err
	}
	ok = true
	faultpoint.Hit("container-written")
	if j.work != nil {
		// The groups are in the file now; a failure to tidy up loses nothing.
		if err := j.work.remove(); err != nil {
			j.o.emit(Event{Kind: "notice", Stage: err.Error()})
		}
	}
	return rep, nil
}

// planAll groups the chosen matrices and plans every group before any is
// trained, so an impossible setting fails at once. ShareAuto becomes
// ShareNone when every matrix reaches the target on its own, ShareWidth
// otherwise (o.Share records the choice).
func planAll(chosen []plan.Matrix, o *CompressOptions) ([]plannedGroup, error) {
	try := func(share string) ([]plannedGroup, error) {
		groups, err := plan.Groups(chosen, share)
		if err != nil {
			return nil, err
		}
		planned := make([]plannedGroup, len(groups))
		for i, g := range groups {
			if planned[i], err = planGroup(g, *o); err != nil {
				return nil, err
			}
		}
		return planned, nil
	}
	if o.Share != ShareAuto {
		return try(o.Share)
	}
	o.Share = plan.ShareNone
	planned, err := try(o.Share)
	if errors.Is(err, plan.ErrUnreachable) || err == nil && !indicesDominate(planned) {
		o.Share = plan.ShareWidth
		return try(o.Share)
	}
	return planned, err
}

// ShareAuto shares a meta network (or codebook) across layers only where
// the matrices are too small to carry their own: where, at the target,
// what a group stores besides its indices would take more than
// autoOverhead of its bytes in some matrix, the bits are better spent on
// indices of one shared network. On a 7B model a matrix's codebook and
// decoder are well under 1% of it; on stories260K they are most of it.
const (
	ShareAuto    = "auto"
	autoOverhead = 0.05
)

// indicesDominate says whether every planned group spends at least
// 1-autoOverhead of its bytes on indices.
func indicesDominate(planned []plannedGroup) bool {
	for _, g := range planned {
		if g.method == MethodRTN {
			continue
		}
		idxBits := float64(subVectorCount(g.Group, g.set.Dim)) * float64(pllm.BitsFor(uint64(g.set.K)))
		total := g.bpw * float64(g.Weights())
		if idxBits < (1-autoOverhead)*total {
			return false
		}
	}
	return true
}

func compileRegexp(flag, expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a valid regular expression: %v", flag, expr, err)
	}
	return re, nil
}

func planGroup(g plan.Group, o CompressOptions) (plannedGroup, error) {
	set := o.Method
	pg := plannedGroup{Group: g, method: o.MethodName}
	bpw := func(bytes int64) float64 { return 8 * float64(bytes) / float64(g.Weights()) }
	if o.MethodName == MethodRTN {
		pg.bpw = bpw(rtnBytes(g, o.RTN))
		return pg, nil
	}
	cost := func(g plan.Group, s plan.Setting) int64 {
		if o.MethodName == MethodVQ {
			return vqBytes(g, s)
		}
		return pocketllmBytes(g, s, set.Hidden, set.DecoderF32, set.KMeansInit)
	}
	if o.Dim == 0 && o.K == 0 {
		s, b, err := plan.Choose(g, o.Bits, plan.Options{Dims: o.Dims, MaxLog2K: 16, Cost: cost})
		if err != nil {
			return plannedGroup{}, err
		}
		set.Dim, set.K, set.Latent = s.Dim, s.K, s.Dim
		pg.set, pg.bpw = set, b
		return pg, nil
	}
	set.Dim, set.K, set.Latent = o.Dim, o.K, o.Dim
	if o.MethodName == MethodVQ {
		if err := (vq.Settings{Dim: o.Dim, K: o.K}).Validate(); err != nil {
			return plannedGroup{}, fmt.Errorf("group %s: %w", g.Name, err)
		}
	} else if err := set.Validate(); err != nil {
		return plannedGroup{}, fmt.Errorf("group %s: %w", g.Name, err)
	}
	if n := subVectorCount(g, o.Dim); o.K > n {
		return plannedGroup{}, fmt.Errorf("group %s: codebook of %d entries for only %d sub-vectors", g.Name, o.K, n)
	}
	pg.set = set
	pg.bpw = bpw(cost(g, plan.Setting{Dim: o.Dim, K: o.K}))
	return pg, nil
}

func meta(src *checkpoint.Source, o CompressOptions, cal *Calibrated) (pllm.Meta, error) {
	st := o.Method
	dec := "f16"
	if st.DecoderF32 {
		dec = "f32"
	}
	s := Settings{
		Method: o.MethodName, BitsTarget: o.Bits, Share: o.Share, Include: o.Include, Exclude: o.Exclude,
		Epochs: st.Epochs, LR: st.LR, DecayEvery: st.DecayEvery, DecayFactor: st.DecayFactor,
		BatchVectors: st.BatchVectors, Lambda: st.Lambda, Beta: st.Beta, KMeansEvery: st.KMeansEvery,
		Refine: st.RefineCandidates, RefinePasses: st.RefinePasses, KMeansInit: st.KMeansInit,
		Hidden: st.Hidden, DecoderDType: dec, Seed: st.Seed, Backend: o.Kernels.Name(),
	}
	if cal != nil {
		s.Calibration = cal.About
		tu := o.Tuning
		s.Objective, s.OutputSteps, s.IndexUpdate, s.Sequential, s.E2ESteps = tu.Objective, tu.OutputSteps, tu.IndexUpdate, tu.Sequential, tu.E2ESteps
	}
	sj, err := json.Marshal(s)
	if err != nil {
		return pllm.Meta{}, fmt.Errorf("%s: recording the settings: %v", o.In, err)
	}
	return pllm.Meta{Tool: "pocketllm-native", SourceFormat: src.Format, ModelConfig: src.ConfigJSON, Settings: sj}, nil
}

// trained is a group after training: what it keeps, the original weights
// and, for tuning, its tunable form.
type trained struct {
	g    plannedGroup
	mats []matrix.Matrix
	pl   *pocketllm.Result
	vq   *vq.Result
	rtn  *pllm.Group // rtn groups are encoded at once: nothing in them is tuned
	nmse []float64
}

// trainGroup reads a group's matrices and compresses them.
func trainGroup(src *checkpoint.Source, g plannedGroup, i, of int, o CompressOptions, cal *Calibrated) (*trained, error) {
	emit := func(e Event) {
		if o.Events != nil {
			e.Group, e.Index, e.Of, e.Members, e.Dim, e.K = g.Name, i+1, of, len(g.Members), g.set.Dim, g.set.K
			e.PlannedBPW = g.bpw
			o.Events(e)
		}
	}
	emit(Event{Kind: "group"})
	start := time.Now()
	mats, err := readMembers(src, g, o, cal)
	if err != nil {
		return nil, err
	}
	t := &trained{g: g, mats: mats}
	switch g.method {
	case MethodVQ:
		t.vq, err = trainVQ(o, g, t.mats)
		if err == nil {
			t.nmse = t.vq.NMSE
		}
	case MethodRTN:
		var grp pllm.Group
		grp, t.nmse, err = compressRTN(o, g, t.mats)
		t.rtn = &grp
	default:
		progress := func(p pocketllm.Progress) { emit(Event{Kind: "epoch", Epoch: &p}) }
		set := g.set
		// The cpu library's resident run would hold the group's rows, loss
		// weights, latents and decoded rows a second time in the same
		// memory; call by call gives the same bytes (pocketllm.Settings.
		// PerCall) in less (BENCHMARKS.md, "Memory").
		set.PerCall = set.PerCall || o.Kernels.Name() == "cpu"
		if o.Tuning.active(cal) {
			t.pl, err = pocketllm.Compress(o.Kernels, t.mats, set, progress)
		} else {
			// Nothing after training needs the weights: they are dropped
			// once training has its scaled copy and read again, a member
			// at a time, for the final error, so the group is held once.
			t.pl, err = pocketllm.CompressReleasing(o.Kernels, t.mats, set, progress, func(j int, dst []float32) error {
				return src.Float32Into(g.Members[j].Name, dst)
			})
		}
		if err == nil {
			t.nmse = t.pl.NMSE
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: group %s: %w", o.In, g.Name, err)
	}
	emit(Event{Kind: "done", NMSE: t.nmse, Seconds: time.Since(start).Seconds()})
	return t, nil
}

// readMembers reads a group's matrices, with the calibration's column
// weights where training uses them.
func readMembers(src *checkpoint.Source, g plannedGroup, o CompressOptions, cal *Calibrated) ([]matrix.Matrix, error) {
	mats := make([]matrix.Matrix, len(g.Members))
	colWeights := cal.colWeights(o.Tuning)
	for j, m := range g.Members {
		data, err := src.Float32(m.Name)
		if err != nil {
			return nil, err
		}
		mats[j] = matrix.Matrix{Name: m.Name, Rows: m.Rows, Cols: m.Cols, Data: data}
		if colWeights != nil {
			w, ok := colWeights[m.Name]
			if !ok || len(w) != m.Cols {
				return nil, fmt.Errorf("%s: no calibration statistics of width %d for tensor %s", o.In, m.Cols, m.Name)
			}
			mats[j].ColWeight = w
		}
	}
	return mats, nil
}

// encode lays the group out as the container's arrays.
func (t *trained) encode() (pllm.Group, error) {
	switch {
	case t.rtn != nil:
		return *t.rtn, nil
	case t.vq != nil:
		return encodeVQ(t.g.Group, t.vq)
	}
	return encodeGroup(t.g.Group, t.pl, t.g.set.DecoderF32)
}

// writeGroup encodes a trained group and writes it.
func writeGroup(w *pllm.Writer, t *trained, in string) error {
	grp, err := t.encode()
	if err != nil {
		return fmt.Errorf("%s: group %s: %w", in, t.g.Name, err)
	}
	return w.WriteGroup(grp)
}

// encodeGroup lays a result out as the container's pocketllm group arrays
// (FORMAT.md): indices, codebook, decoder_mlp, decoder_rln, scales.
func encodeGroup(g plan.Group, res *pocketllm.Result, decoderF32 bool) (pllm.Group, error) {
	s := res.Shape
	params, err := json.Marshal(GroupParams{
		Dim: s.Dim, Latent: s.Latent, Hidden: s.Hidden, K: s.K, E: s.E, Cols: g.Cols(),
		GELU: "tanh", BestEpoch: res.BestEpoch, ReconMSE: res.ReconMSE, Skip: s.Skip,
	})
	if err != nil {
		return pllm.Group{}, fmt.Errorf("recording the settings: %v", err)
	}
	mems, err := members(g, res.NMSE)
	if err != nil {
		return pllm.Group{}, err
	}
	mlp, rln := splitDecoder(s.E, s.Dim, s.Latent, s.Hidden, res.Decoder)
	mlpArr := pllm.F16Array("decoder_mlp", mlp)
	if decoderF32 {
		mlpArr = pllm.F32Array("decoder_mlp", mlp)
	}
	return pllm.Group{
		Name: g.Name, Method: MethodPocketLLM, Params: params, Members: mems,
		Arrays: []pllm.Array{
			pllm.UintArray("indices", pllm.BitsFor(uint64(s.K)), indexArray(res.Indices)),
			pllm.F16Array("codebook", res.Codebook),
			mlpArr,
			pllm.F16Array("decoder_rln", rln),
			pllm.F32Array("scales", res.Scales),
		},
	}, nil
}

func members(g plan.Group, nmse []float64) ([]pllm.Member, error) {
	out := make([]pllm.Member, len(g.Members))
	for j, m := range g.Members {
		mp, err := json.Marshal(MemberParams{NMSE: nmse[j]})
		if err != nil {
			return nil, fmt.Errorf("member %s: recording its error: %v", m.Name, err)
		}
		out[j] = pllm.Member{Name: m.Name, Shape: []int{m.Rows, m.Cols}, DType: m.DType, Params: mp}
	}
	return out, nil
}

func indexArray(idx []int32) []uint32 {
	out := make([]uint32, len(idx))
	for j, v := range idx {
		out[j] = uint32(v)
	}
	return out
}

// VQParams is a vq group's settings in the container.
type VQParams struct {
	Dim  int `json:"dim"`
	K    int `json:"k"`
	E    int `json:"e"`
	Cols int `json:"cols"`
}

// RTNParams is an rtn group's settings in the container.
type RTNParams struct {
	Bits      int `json:"bits"`
	GroupSize int `json:"group_size"`
	Cols      int `json:"cols"`
}

// trainVQ runs the vq baseline on a group; with calibration it weighs the
// columns by the members' mean importance (vq learns one weighting per
// group).
func trainVQ(o CompressOptions, g plannedGroup, mats []matrix.Matrix) (*vq.Result, error) {
	var w []float32
	if mats[0].ColWeight != nil {
		w = make([]float32, g.Cols())
		for _, m := range mats {
			for c, v := range matrix.NormalizedWeights(m.ColWeight) {
				w[c] += v / float32(len(mats))
			}
		}
	}
	return vq.Compress(o.Kernels, mats, vq.Settings{Dim: g.set.Dim, K: g.set.K, Iters: o.VQIters, Seed: o.Method.Seed}, w)
}

func encodeVQ(g plan.Group, res *vq.Result) (pllm.Group, error) {
	params, err := json.Marshal(VQParams{Dim: res.Dim, K: res.K, E: res.E, Cols: res.Cols})
	if err != nil {
		return pllm.Group{}, fmt.Errorf("recording the settings: %v", err)
	}
	mems, err := members(g, res.NMSE)
	if err != nil {
		return pllm.Group{}, err
	}
	return pllm.Group{
		Name: g.Name, Method: MethodVQ, Params: params, Members: mems,
		Arrays: []pllm.Array{
			pllm.UintArray("indices", pllm.BitsFor(uint64(res.K)), indexArray(res.Indices)),
			pllm.F16Array("codebook", res.Codebook),
			pllm.F32Array("scales", res.Scales),
		},
	}, nil
}

// compressRTN quantises the group's single matrix.
func compressRTN(o CompressOptions, g plannedGroup, mats []matrix.Matrix) (pllm.Group, []float64, error) {
	res, err := rtn.Compress(mats[0], o.RTN, mats[0].ColWeight)
	if err != nil {
		return pllm.Group{}, nil, err
	}
	nmse := []float64{res.NMSE}
	params, err := json.Marshal(RTNParams{Bits: res.Bits, GroupSize: res.GroupSize, Cols: res.Cols})
	if err != nil {
		return pllm.Group{}, nil, fmt.Errorf("recording the settings: %v", err)
	}
	mems, err := members(g.Group, nmse)
	if err != nil {
		return pllm.Group{}, nil, err
	}
	return pllm.Group{
		Name: g.Name, Method: MethodRTN, Params: params, Members: mems,
		Arrays: []pllm.Array{
			pllm.UintArray("codes", res.Bits, res.Codes),
			pllm.F16Array("scales", res.Scales),
			pllm.F16Array("offsets", res.Offsets),
		},
	}, nmse, nil
}
