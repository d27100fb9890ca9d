// Package pocketllm compresses a group of weight matrices with the PocketLLM
// method (METHOD.md): rows are cut into sub-vectors, a meta network is
// trained to encode them into a latent space, quantise them to a learned
// codebook and decode them back, and what is kept is the decoder, the
// codebook, the indices and one scale per matrix. It also reconstructs
// matrices from what was kept.
package pocketllm

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log"
	"math"
	"math/rand/v2"
	"runtime"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/metanet"
)

// Settings are the method's hyper-parameters (METHOD.md section 4).
type Settings struct {
	Dim    int // sub-vector length d
	Latent int // latent size dz (0: same as Dim)
	Hidden int // MLP hidden width h
	K      int // codebook entries

	Epochs       int
	LR           float64
	DecayEvery   int     // epochs between learning-rate decays
	DecayFactor  float64 // multiplier at each decay
	BatchVectors int     // sub-vectors per batch, rounded to whole rows; 0: AutoBatch
	Lambda       float64 // codebook term weight
	Beta         float64 // commitment term weight
	KMeansEvery  int     // exact k-means refresh of the codebook every this many epochs (0: never)
	// RefineCandidates > 0 refines the final indices against the decoded
	// error, trying that many nearest codewords per sub-vector (see refine).
	RefineCandidates int
	RefinePasses     int // passes over the row positions (0: 1)
	// KMeansInit gives the network identity paths (metanet.Shape.Skip),
	// starts every residual branch at zero and the codebook at k-means of
	// the initial latents, so training starts from plain vector
	// quantisation's error and the best epoch can only be better. Needs
	// Latent == Dim. Beyond the paper.
	KMeansInit bool
	Seed       uint64

	// DecoderF32 stores the decoder MLPs in fp32 instead of fp16.
	DecoderF32 bool

	// PerCall makes training call the kernels one by one even where the
	// backend can keep the whole run in its own memory
	// (bindings.ResidentTrainer: the native libraries); so does the
	// environment variable POCKETLLM_RESIDENT=0. Both paths run the same
	// steps; on the cpu backend they give the same bytes. For comparisons.
	PerCall bool
}

// DefaultSettings are METHOD.md's defaults for a sub-vector length and
// codebook size.
func DefaultSettings(dim, k int) Settings {
	return Settings{
		Dim: dim, Latent: dim, Hidden: 16, K: k,
		Epochs: 50, LR: 1.6e-2, DecayEvery: 15, DecayFactor: 0.1,
		BatchVectors: 0, Lambda: 0.4, KMeansEvery: 0, Seed: 1,
	}
}

// Validate reports impossible settings.
func (s Settings) Validate() error {
	switch {
	case s.Dim < 1 || s.Dim > 64:
		return fmt.Errorf("sub-vector length %d outside [1, 64]", s.Dim)
	case s.Latent < 0 || s.Latent > 64:
		return fmt.Errorf("latent size %d outside [1, 64]", s.Latent)
	case s.Hidden < 1 || s.Hidden > 1024:
		return fmt.Errorf("hidden width %d outside [1, 1024]", s.Hidden)
	case s.K < 2 || s.K > 1<<20:
		return fmt.Errorf("codebook size %d outside [2, 2^20]", s.K)
	case s.Epochs < 1:
		return fmt.Errorf("epochs %d: need at least 1", s.Epochs)
	case !(s.LR > 0) || math.IsInf(s.LR, 0):
		return fmt.Errorf("learning rate %v must be positive", s.LR)
	case s.DecayEvery < 1:
		return fmt.Errorf("decay interval %d: need at least 1 epoch", s.DecayEvery)
	case !(s.DecayFactor > 0 && s.DecayFactor <= 1):
		return fmt.Errorf("decay factor %v outside (0, 1]", s.DecayFactor)
	case s.BatchVectors < 0:
		return fmt.Errorf("batch of %d sub-vectors is negative", s.BatchVectors)
	case !(s.Lambda >= 0) || !(s.Beta >= 0):
		return fmt.Errorf("loss weights lambda %v and beta %v must be non-negative", s.Lambda, s.Beta)
	case s.KMeansEvery < 0:
		return fmt.Errorf("k-means interval %d is negative", s.KMeansEvery)
	case s.RefineCandidates < 0 || s.RefinePasses < 0:
		return fmt.Errorf("index refinement with %d candidates and %d passes: neither may be negative", s.RefineCandidates, s.RefinePasses)
	}
	return nil
}

func (s Settings) latent() int {
	if s.Latent == 0 {
		return s.Dim
	}
	return s.Latent
}

func (s Settings) shape(cols int) metanet.Shape {
	return metanet.Shape{E: (cols + s.Dim - 1) / s.Dim, Dim: s.Dim, Latent: s.latent(), Hidden: s.Hidden, K: s.K, Skip: s.KMeansInit}
}

// Progress reports one finished epoch.
type Progress struct {
	Epoch, Epochs int
	Loss          float64 // mean training loss over the epoch's batches
	ReconMSE      float64 // full-pass reconstruction MSE of this epoch (scaled weights, loss-weighted)
	BestEpoch     int
	Elapsed       time.Duration
	Remaining     time.Duration
}

// Result is what the method keeps for a group of matrices, already rounded
// to the precision it is stored in, plus what it measured.
type Result struct {
	Shape    metanet.Shape
	Decoder  []float32 // bindings.Decoder layout
	Codebook []float32 // [K, Latent]
	Indices  []int32   // every member's rows in member order, E per row
	Scales   []float32 // one per member
	NMSE     []float64 // per member: ||W - W_hat||^2 / ||W||^2
	// BestEpoch is the epoch (from 1) whose parameters were kept; 0 is the
	// k-means initialisation (Settings.KMeansInit).
	BestEpoch int
	ReconMSE  float64 // full-pass MSE of the kept parameters (scaled weights)
}

// Compress trains a meta network on mats (which must share their column
// count) and returns what is stored. It is deterministic for a seed, a
// backend and the matrices' names.
func Compress(k bindings.Kernels, mats []matrix.Matrix, st Settings, progress func(Progress)) (*Result, error) {
	return compress(k, mats, st, progress, nil)
}

// CompressReleasing is Compress for a caller that can read the matrices
// again: once training's scaled copy of the weights is made, it sets each
// mats[i].Data to nil and collects the caller's copy (the caller must hold
// no other reference to it), and for the final error measurement it calls
// reload(i, dst) to read member i's weights again into dst (its
// rows*cols values; the storage of the scaled copy, no longer needed
// then), one member at a time. The result is Compress's.
func CompressReleasing(k bindings.Kernels, mats []matrix.Matrix, st Settings, progress func(Progress), reload func(i int, dst []float32) error) (*Result, error) {
	return compress(k, mats, st, progress, reload)
}

func compress(k bindings.Kernels, mats []matrix.Matrix, st Settings, progress func(Progress), reload func(i int, dst []float32) error) (*Result, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if len(mats) == 0 {
		return nil, fmt.Errorf("no matrices to compress")
	}
	cols := mats[0].Cols
	for _, m := range mats {
		if m.Cols != cols {
			return nil, fmt.Errorf("%s: %d columns, but %s has %d: a shared group needs one row width", m.Name, m.Cols, mats[0].Name, cols)
		}
		if m.Rows < 1 || m.Cols < 1 || len(m.Data) != m.Rows*m.Cols {
			return nil, fmt.Errorf("%s: %d values for a %dx%d matrix", m.Name, len(m.Data), m.Rows, m.Cols)
		}
		if err := matrix.CheckColWeight(m.ColWeight, m.Cols); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	shape := st.shape(cols)
	if err := shape.Validate(); err != nil {
		return nil, err
	}
	data, scales, err := subVectors(mats, shape)
	if err != nil {
		return nil, err
	}
	if n := len(data) / shape.Dim; st.KMeansInit && st.K > n {
		return nil, fmt.Errorf("k-means initialisation of %d codewords from only %d sub-vectors", st.K, n)
	}
	t := newTrainer(k, st, shape, data, mats)
	if reload != nil {
		t.reload = reload
		for i := range mats {
			mats[i].Data = nil
		}
		// Collected now, before training allocates its latents and
		// decoded rows: otherwise the heap briefly holds both (the
		// collector runs concurrently with a large allocation).
		runtime.GC()
	}
	if err := t.run(st.Seed, nameStream(mats), progress); err != nil {
		return nil, err
	}
	res := &Result{Shape: shape, Scales: scales, BestEpoch: t.bestEpoch}
	if err := t.finish(res, mats); err != nil {
		return nil, err
	}
	return res, nil
}

// nameStream derives the generator's stream from the members' names, so a
// group's result does not depend on which groups were compressed before it.
func nameStream(mats []matrix.Matrix) uint64 {
	h := fnv.New64a()
	for _, m := range mats {
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// subVectors scales each matrix by its RMS and lays its rows out as E
// zero-padded sub-vectors each: [rows_total*E, Dim].
func subVectors(mats []matrix.Matrix, s metanet.Shape) ([]float32, []float32, error) {
	rowLen := s.E * s.Dim
	total := 0
	for _, m := range mats {
		total += m.Rows
	}
	x := make([]float32, total*rowLen)
	scales := make([]float32, len(mats))
	r0 := 0
	for mi, m := range mats {
		var ss float64
		for i, v := range m.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("%s: non-finite weight %v at row %d, column %d", m.Name, v, i/m.Cols, i%m.Cols)
			}
			ss += float64(v) * float64(v)
		}
		// An all-zero matrix keeps scale 0: it trains unscaled and is
		// rebuilt as exact zeros whatever it decodes to (an error of 0, not
		// an infinite NMSE).
		scale, inv := float32(math.Sqrt(ss/float64(len(m.Data)))), float32(1)
		if scale != 0 {
			inv = 1 / scale
		}
		scales[mi] = scale
		for r := 0; r < m.Rows; r++ {
			dst := x[(r0+r)*rowLen:]
			for c, v := range m.Data[r*m.Cols : (r+1)*m.Cols] {
				dst[c] = v * inv
			}
		}
		r0 += m.Rows
	}
	return x, scales, nil
}

type trainer struct {
	k     bindings.Kernels
	st    Settings
	shape metanet.Shape
	x     []float32 // [rows*E, Dim], scaled and padded
	rows  int
	cols  int
	// Loss weights of each element of a row: memberW[rowMember[r]] for row r,
	// 0 on padding.
	memberW   [][]float32
	rowMember []int32

	best      []float32 // parameters of the best epoch
	bestEpoch int
	bestMSE   float64

	// full is the run's full pass, which finish reuses: two of them would
	// hold the group's latents and decoded rows twice.
	full *fullPass
	// reload, when set, reads member i's weights again for the final error
	// measurement: Compress has dropped them after making x.
	reload func(i int, dst []float32) error
}

// AutoBatch is the batch size used when Settings.BatchVectors is 0:
// METHOD.md's 16384 sub-vectors, but never more than a 64th of the group, so
// that a small group still takes at least 64 optimizer steps per epoch.
// (On stories260K's attention matrices at d=4, K=128, one batch per epoch
// leaves the NMSE near 0.68 after 50 epochs; 64 steps per epoch bring it to 0.16.)
func AutoBatch(subVectors int) int { return max(1, min(16384, subVectors/64)) }

func newTrainer(k bindings.Kernels, st Settings, shape metanet.Shape, x []float32, mats []matrix.Matrix) *trainer {
	rowLen := shape.E * shape.Dim
	t := &trainer{k: k, st: st, shape: shape, x: x, rows: len(x) / rowLen, cols: mats[0].Cols}
	for mi, m := range mats {
		w := make([]float32, rowLen)
		for c := 0; c < m.Cols; c++ {
			w[c] = 1
		}
		if m.ColWeight != nil {
			copy(w, matrix.NormalizedWeights(m.ColWeight))
		}
		t.memberW = append(t.memberW, w)
		for r := 0; r < m.Rows; r++ {
			t.rowMember = append(t.rowMember, int32(mi))
		}
	}
	return t
}

// rowWeights is the loss weight row of row r.
func (t *trainer) rowWeights(r int) []float32 { return t.memberW[t.rowMember[r]] }

func (t *trainer) rowsPerBatch() int {
	bv := t.st.BatchVectors
	if bv == 0 {
		bv = AutoBatch(t.rows * t.shape.E)
	}
	r := int(math.Round(float64(bv) / float64(t.shape.E)))
	return max(1, min(r, t.rows))
}

func (t *trainer) run(seed, stream uint64, progress func(Progress)) error {
	s := t.shape
	rng := rand.New(rand.NewPCG(seed, stream))
	full := newFullPass(t, s)
	t.full = full
	var p []float32
	t.bestMSE = math.Inf(1)
	if t.st.KMeansInit {
		p = metanet.InitSkip(s, rng)
		mse, err := full.kmeansInit(s.ViewsOf(p), rng)
		if err != nil {
			return err
		}
		// Epoch 0, plain vector quantisation, is the first candidate.
		t.bestMSE, t.best = mse, append([]float32(nil), p...)
	} else {
		p = metanet.Init(s, rng)
	}
	if rt, ok := t.resident(); ok {
		run, err := rt.NewTrainRun(t.trainConfig())
		switch {
		case err == nil:
			defer run.Close()
			return t.runResident(run, rng, p, progress)
		case errors.Is(err, bindings.ErrNoMemory):
			// A backend that cannot hold this group in its memory still
			// runs it call by call, with the same result; say so, since
			// it is slower.
			log.Printf("%v; training this group call by call instead", err)
		default:
			return err
		}
	}
	loop := t.newPerCallLoop(p)
	order := make([]int32, t.rows)
	for i := range order {
		order[i] = int32(i)
	}
	start := time.Now()
	step := 0
	for epoch := 0; epoch < t.st.Epochs; epoch++ {
		lr := t.st.LR * math.Pow(t.st.DecayFactor, float64(epoch/t.st.DecayEvery))
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		meanLoss, steps, err := loop.epoch(order, float32(lr), step+1)
		if err != nil {
			return err
		}
		step += steps
		if t.st.KMeansEvery > 0 && (epoch+1)%t.st.KMeansEvery == 0 {
			if err := full.kmeansRefresh(loop.pv); err != nil {
				return err
			}
			// Adam's moments belong to the old codewords.
			off := s.EncoderParams() + s.DecoderParams()
			clear(loop.m[off:])
			clear(loop.v[off:])
		}
		mse, err := full.run(loop.pv)
		if err != nil {
			return err
		}
		if err := t.diverged(epoch+1, meanLoss, mse); err != nil {
			return err
		}
		if mse < t.bestMSE || t.best == nil {
			t.bestMSE, t.bestEpoch = mse, epoch+1
			t.best = append(t.best[:0], p...)
		}
		if progress != nil {
			el := time.Since(start)
			progress(Progress{
				Epoch: epoch + 1, Epochs: t.st.Epochs, Loss: meanLoss, ReconMSE: mse,
				BestEpoch: t.bestEpoch, Elapsed: el,
				Remaining: time.Duration(float64(el) / float64(epoch+1) * float64(t.st.Epochs-epoch-1)),
			})
		}
	}
	return nil
}

// perCallLoop is training driven kernel by kernel from Go: the parameters,
// Adam's moments and one batch's activations in Go memory.
type perCallLoop struct {
	t             *trainer
	p, grad, m, v []float32
	pv, gv        metanet.Views
	ws            *metanet.Workspace
	xb, wb        []float32 // one batch's rows and loss weights
	loss          metanet.Loss
}

// newPerCallLoop trains p in place, from zero moments.
func (t *trainer) newPerCallLoop(p []float32) *perCallLoop {
	s := t.shape
	rpb := t.rowsPerBatch()
	rowLen := s.E * s.Dim
	l := &perCallLoop{
		t: t, p: p, grad: make([]float32, len(p)), m: make([]float32, len(p)), v: make([]float32, len(p)),
		ws: metanet.NewWorkspace(s, rpb), xb: make([]float32, rpb*rowLen), wb: make([]float32, rpb*rowLen),
		loss: metanet.Loss{Lambda: t.st.Lambda, Beta: t.st.Beta},
	}
	l.pv, l.gv = s.ViewsOf(p), s.ViewsOf(l.grad)
	return l
}

// epoch runs the batches of order (consecutive entries, rowsPerBatch rows
// each) with Adam steps firstStep, firstStep+1, ..., and returns the mean of
// the batches' losses and the number of steps taken.
func (l *perCallLoop) epoch(order []int32, lr float32, firstStep int) (float64, int, error) {
	t := l.t
	rpb := t.rowsPerBatch()
	rowLen := t.shape.E * t.shape.Dim
	var lossSum float64
	batches := 0
	for b0 := 0; b0 < t.rows; b0 += rpb {
		nr := min(rpb, t.rows-b0)
		for i, r := range order[b0 : b0+nr] {
			copy(l.xb[i*rowLen:(i+1)*rowLen], t.x[int(r)*rowLen:(int(r)+1)*rowLen])
			copy(l.wb[i*rowLen:(i+1)*rowLen], t.rowWeights(int(r)))
		}
		clear(l.grad)
		bl, err := l.ws.Step(t.k, l.pv, l.gv, l.xb[:nr*rowLen], l.wb[:nr*rowLen], nr, l.loss)
		if err != nil {
			return 0, 0, err
		}
		if err := t.k.Adam(l.p, l.grad, l.m, l.v, lr, adamB1, adamB2, adamEps, firstStep+batches); err != nil {
			return 0, 0, err
		}
		lossSum += bl.Recon + t.st.Lambda*bl.Codebook
		batches++
	}
	return lossSum / float64(batches), batches, nil
}

// diverged reports an epoch whose mean loss or full-pass error is not
// finite. Its parameters have left the floats (a learning rate far too
// high, say); Adam cannot bring them back, so no later epoch could be kept
// either, and training stops with an error rather than store them. The
// rule is the same on every backend and path.
func (t *trainer) diverged(epoch int, loss, mse float64) error {
	if finite(loss) && finite(mse) {
		return nil
	}
	return fmt.Errorf("training diverged at epoch %d of %d (loss %v, reconstruction error %v): lower the learning rate (%g)", epoch, t.st.Epochs, loss, mse, t.st.LR)
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// checkStored reports a kept value that is not finite once rounded to its
// stored precision: a trained value beyond fp16's ±65504 rounds to ±Inf.
func (t *trainer) checkStored(what string, v []float32) error {
	for i, x := range v {
		if !finite(float64(x)) {
			return fmt.Errorf("the kept epoch %d's %s value %d is %v in its stored precision (training diverged): lower the learning rate (%g)", t.bestEpoch, what, i, x, t.st.LR)
		}
	}
	return nil
}

// finish rounds the best parameters to their stored precision, assigns
// every sub-vector with the rounded codebook and measures what reconstruction
// will give.
func (t *trainer) finish(res *Result, mats []matrix.Matrix) error {
	s := t.shape
	v := s.ViewsOf(t.best)
	roundF16(v.Codebook)
	dec := v.Decoder
	n1, d1, n2, d2, n3, d0 := dec.Parts()
	for _, r := range []bindings.RLN{n1, n2, n3} {
		roundF16(r.P)
	}
	if !t.st.DecoderF32 {
		for _, m := range []bindings.MLP{d1, d2, d0} {
			roundF16(m.P)
		}
	}
	if err := t.checkStored("codebook", v.Codebook); err != nil {
		return err
	}
	if err := t.checkStored("decoder", dec.P); err != nil {
		return err
	}
	full := t.full
	if full == nil {
		full = newFullPass(t, s)
	}
	mse, err := full.run(v)
	if err != nil {
		return err
	}
	if t.st.RefineCandidates > 0 {
		if err := full.refine(v, t.st.RefineCandidates, max(1, t.st.RefinePasses)); err != nil {
			return err
		}
		if err := full.decode(v, full.idx); err != nil {
			return err
		}
		mse = full.mse()
	}
	res.ReconMSE = mse
	res.Decoder = append([]float32(nil), dec.P...)
	res.Codebook = append([]float32(nil), v.Codebook...)
	// The full pass is done with: its indices are the result's, its
	// latents and distances can go, and the scaled rows' storage takes
	// the members read again.
	res.Indices = full.idx
	spare := t.x
	full.z, full.dist, t.x = nil, nil, nil
	res.NMSE = make([]float64, len(mats))
	// Each member is rebuilt as Reconstruct rebuilds it (one decode call
	// of its rows, times its scale), into the full pass's row buffer, which
	// is free now: the error is what a reader will get, without a second
	// copy of the group.
	rowLen := s.E * s.Dim
	at := 0
	for i, m := range mats {
		n := m.Rows * s.E
		buf := full.out[:m.Rows*rowLen]
		if err := decodeRows(t.k, s, dec, res.Codebook, res.Indices[at:at+n], m.Rows, buf); err != nil {
			return err
		}
		at += n
		ref := m.Data
		if ref == nil {
			ref = spare[:m.Rows*m.Cols] // rows*E*Dim >= rows*cols
			if err := t.reload(i, ref); err != nil {
				return err
			}
		}
		res.NMSE[i] = scaledNMSE(ref, buf, m.Rows, m.Cols, rowLen, res.Scales[i])
		if !finite(res.NMSE[i]) {
			return fmt.Errorf("%s: reconstruction error %v with the kept epoch %d (training diverged): lower the learning rate (%g)", m.Name, res.NMSE[i], t.bestEpoch, t.st.LR)
		}
	}
	if !finite(mse) {
		return fmt.Errorf("reconstruction error %v with the kept epoch %d (training diverged): lower the learning rate (%g)", mse, t.bestEpoch, t.st.LR)
	}
	return nil
}

// scaledNMSE is matrix.NMSE(ref, w) for the weights w that Reconstruct
// makes of the decoded rows (rowLen apart, padded) and the scale.
func scaledNMSE(ref, rows []float32, nr, cols, rowLen int, scale float32) float64 {
	var num, den float64
	for r := 0; r < nr; r++ {
		src := rows[r*rowLen : r*rowLen+cols]
		for c, x := range ref[r*cols : (r+1)*cols] {
			y := float32(src[c] * scale) // rounded as Reconstruct stores it
			d := float64(x) - float64(y)
			num += d * d
			den += float64(x) * float64(x)
		}
	}
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return num / den
}

func shapesOf(mats []matrix.Matrix) [][2]int {
	sh := make([][2]int, len(mats))
	for i, m := range mats {
		sh[i] = [2]int{m.Rows, m.Cols}
	}
	return sh
}

func roundF16(p []float32) {
	for i, v := range p {
		p[i] = fp16.ToFloat32(fp16.FromFloat32(v))
	}
}

// TimeEpochs trains a meta network on mats for st.Epochs epochs (each with
// its full-pass measurement, as Compress does) and returns the time taken,
// without the final rounding and reconstruction: the figure benchmarks report
// as "one training epoch".
func TimeEpochs(k bindings.Kernels, mats []matrix.Matrix, st Settings) (time.Duration, error) {
	if err := st.Validate(); err != nil {
		return 0, err
	}
	shape := st.shape(mats[0].Cols)
	data, _, err := subVectors(mats, shape)
	if err != nil {
		return 0, err
	}
	t := newTrainer(k, st, shape, data, mats)
	start := time.Now()
	err = t.run(st.Seed, nameStream(mats), nil)
	return time.Since(start), err
}

// EpochTimes trains as TimeEpochs does and returns the wall time of each
// epoch (its batches and full pass); the first also holds the run's setup
// (initialisation and, on a resident backend, the upload), so the later
// ones are what each further epoch costs.
func EpochTimes(k bindings.Kernels, mats []matrix.Matrix, st Settings) ([]time.Duration, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	shape := st.shape(mats[0].Cols)
	data, _, err := subVectors(mats, shape)
	if err != nil {
		return nil, err
	}
	t := newTrainer(k, st, shape, data, mats)
	times := make([]time.Duration, 0, st.Epochs)
	last := time.Now()
	err = t.run(st.Seed, nameStream(mats), func(Progress) {
		now := time.Now()
		times = append(times, now.Sub(last))
		last = now
	})
	return times, err
}
