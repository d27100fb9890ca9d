package bindings

import (
	"fmt"
	"math"
	"runtime"
)

// TrainConfig is the shape and options of one resident training run: one
// tensor group of Rows weight rows of E sub-vectors of Dim values, trained
// as compress/metanet's network (Skip as metanet.Shape.Skip) with batches of
// RowsPerBatch rows.
type TrainConfig struct {
	Rows, E, Dim, Latent, Hidden, K int
	Skip                            bool
	RowsPerBatch                    int
	Lambda, Beta                    float64 // codebook and commitment term weights
	AdamB1, AdamB2, AdamEps         float32
}

// NumParams is the length of the run's parameter vector, encoder | decoder
// | codebook in metanet.Shape.ViewsOf's layout.
func (c TrainConfig) NumParams() int {
	w := c.E * c.Latent
	enc := MLPParams(c.Dim, c.Hidden, c.Latent) + 2*MLPParams(c.Latent, c.Hidden, c.Latent) + 6*w
	return enc + DecoderParams(c.E, c.Dim, c.Latent, c.Hidden) + c.K*c.Latent
}

// EpochStats is what one resident epoch measured.
type EpochStats struct {
	MeanLoss  float64 // mean over the epoch's batches of recon + Lambda*codebook term
	ReconMSE  float64 // the full pass's loss-weighted reconstruction MSE
	BestEpoch int     // the best epoch so far (0: the uploaded parameters)
}

// TrainRun is one training run kept in a backend's own memory (GPU memory
// for CUDA): Upload once, Epoch as often as wanted, Download once. Its step
// is compress/metanet's Workspace.Step followed by one Adam step; the header
// native/include/pocketllm.h (pllm_train_*) states it exactly. A TrainRun
// must not be used concurrently with its Kernels.
type TrainRun interface {
	// Upload copies in x and wts ([Rows*E*Dim]: the scaled, zero-padded
	// sub-vectors and each element's loss weight, 0 on padding) and the
	// initial parameters (NumParams values), and clears Adam's moments.
	// initialCandidate makes these parameters epoch 0's candidate for the
	// best (measured now by a full pass).
	Upload(x, wts, params []float32, initialCandidate bool) error
	// Epoch runs every batch of order (a permutation of the rows; batches
	// are consecutive entries) with Adam steps from firstStep, then the
	// k-means refresh when asked, then the full pass, and keeps the
	// parameters when their MSE is the best so far.
	Epoch(order []int32, lr float32, firstStep int, kmeansRefresh bool) (EpochStats, error)
	// KMeansRefresh is one Lloyd step of the codebook on the current
	// latents, re-seeding dead codewords, and clears the codebook's Adam
	// moments.
	KMeansRefresh() error
	// Download copies out the best parameters and their full pass's indices
	// ([Rows*E]; either may be nil) and returns their MSE and epoch.
	Download(bestParams []float32, bestIndices []int32) (bestMSE float64, bestEpoch int, err error)
	// Close frees the run. It is safe to call more than once.
	Close() error
}

// ResidentTrainer is implemented by Kernels that can hold a whole training
// run in their own memory (the native libraries); the pure-Go kernels do
// not implement it, and callers then drive training kernel by kernel.
// NewTrainRun's error wraps ErrNoMemory when the group does not fit.
type ResidentTrainer interface {
	NewTrainRun(cfg TrainConfig) (TrainRun, error)
}

// nativeTrainRun is one pllm_train handle on a context of k.
type nativeTrainRun struct {
	k   *nativeKernels
	h   uintptr
	cfg TrainConfig
	np  int
	cl  runtime.Cleanup
}

// NewTrainRun implements ResidentTrainer.
func (k *nativeKernels) NewTrainRun(cfg TrainConfig) (TrainRun, error) {
	const kn = "train create"
	if err := checkDims(kn, size("rows", cfg.Rows), size("E", cfg.E), size("dim", cfg.Dim), size("latent", cfg.Latent),
		size("hidden", cfg.Hidden), size("k", cfg.K), size("rows per batch", cfg.RowsPerBatch)); err != nil {
		return nil, err
	}
	if n, ok := sizeOf(cfg.Rows, cfg.E, max(cfg.Dim, cfg.Latent)); !ok || n > math.MaxInt32*64 {
		return nil, fmt.Errorf("bindings: %s: %d rows of %d sub-vectors is too large to hold at once (%w)", kn, cfg.Rows, cfg.E, ErrNoMemory)
	}
	skip := int64(0)
	if cfg.Skip {
		skip = 1
	}
	iopt := []int64{int64(cfg.Rows), int64(cfg.E), int64(cfg.Dim), int64(cfg.Latent), int64(cfg.Hidden), int64(cfg.K), skip, int64(cfg.RowsPerBatch)}
	dopt := []float64{cfg.Lambda, cfg.Beta, float64(cfg.AdamB1), float64(cfg.AdamB2), float64(cfg.AdamEps)}
	var h uintptr
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.trainCreate(ctx, &iopt[0], int32(len(iopt)), &dopt[0], int32(len(dopt)), &h)
	})
	runtime.KeepAlive(iopt)
	runtime.KeepAlive(dopt)
	if err != nil {
		return nil, err
	}
	r := &nativeTrainRun{k: k, h: h, cfg: cfg, np: int(k.lib.trainParams(h))}
	k.mu.Lock()
	if k.runs == nil {
		k.runs = map[uintptr]struct{}{}
	}
	k.runs[h] = struct{}{}
	k.mu.Unlock()
	if r.np != cfg.NumParams() {
		r.Close()
		return nil, fmt.Errorf("bindings: %s: the library counts %d parameters, this package %d", kn, r.np, cfg.NumParams())
	}
	// A forgotten Close must not keep the group's memory (device memory for
	// CUDA) for the life of the process. The cleanup refers to k, so k's own
	// cleanup (which destroys the context) cannot run before this one.
	r.cl = runtime.AddCleanup(r, func(h uintptr) { k.destroyRun(h) }, h)
	return r, nil
}

// destroyRun frees handle h if it is still live on k.
func (k *nativeKernels) destroyRun(h uintptr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.runs[h]; ok && k.ctx != 0 {
		k.lib.trainDestroy(h)
		delete(k.runs, h)
	}
}

// live reports an error for a closed run (or closed kernels).
func (r *nativeTrainRun) live(kn string) error {
	if r.h == 0 {
		return fmt.Errorf("bindings: %s %s: training run used after Close", r.k.name, kn)
	}
	return nil
}

func (r *nativeTrainRun) Upload(x, wts, params []float32, initialCandidate bool) error {
	const kn = "train upload"
	if err := r.live(kn); err != nil {
		return err
	}
	n := elems(r.cfg.Rows, r.cfg.E, r.cfg.Dim)
	if len(x) != n || len(wts) != n || len(params) != r.np {
		return fmt.Errorf("bindings: %s: %d, %d and %d values for x, weights and parameters, need %d, %d and %d", kn, len(x), len(wts), len(params), n, n, r.np)
	}
	ic := int32(0)
	if initialCandidate {
		ic = 1
	}
	err := r.k.call(kn, func(uintptr) int32 { return r.k.lib.trainUpload(r.h, &x[0], &wts[0], &params[0], ic) })
	runtime.KeepAlive(x)
	runtime.KeepAlive(wts)
	runtime.KeepAlive(params)
	return err
}

func (r *nativeTrainRun) Epoch(order []int32, lr float32, firstStep int, kmeansRefresh bool) (EpochStats, error) {
	const kn = "train epoch"
	if err := r.live(kn); err != nil {
		return EpochStats{}, err
	}
	if len(order) != r.cfg.Rows {
		return EpochStats{}, fmt.Errorf("bindings: %s: order of %d rows, the run has %d", kn, len(order), r.cfg.Rows)
	}
	if firstStep < 1 {
		return EpochStats{}, fmt.Errorf("bindings: %s: first step %d, must count from 1", kn, firstStep)
	}
	ref := int32(0)
	if kmeansRefresh {
		ref = 1
	}
	var loss, mse float64
	var best int64
	err := r.k.call(kn, func(uintptr) int32 {
		return r.k.lib.trainEpoch(r.h, &order[0], lr, int64(firstStep), ref, &loss, &mse, &best)
	})
	runtime.KeepAlive(order)
	return EpochStats{MeanLoss: loss, ReconMSE: mse, BestEpoch: int(best)}, err
}

func (r *nativeTrainRun) KMeansRefresh() error {
	const kn = "train k-means refresh"
	if err := r.live(kn); err != nil {
		return err
	}
	return r.k.call(kn, func(uintptr) int32 { return r.k.lib.trainKMeans(r.h) })
}

func (r *nativeTrainRun) Download(bestParams []float32, bestIndices []int32) (float64, int, error) {
	const kn = "train download"
	if err := r.live(kn); err != nil {
		return 0, 0, err
	}
	if err := checkBufs(kn, optional(f32("best parameters", bestParams, r.np)), optional(i32("best indices", bestIndices, r.cfg.Rows, r.cfg.E))); err != nil {
		return 0, 0, err
	}
	var mse float64
	var epoch int64
	err := r.k.call(kn, func(uintptr) int32 {
		return r.k.lib.trainDownload(r.h, ptr(bestParams, r.np), ptr(bestIndices, r.cfg.Rows*r.cfg.E), &mse, &epoch)
	})
	runtime.KeepAlive(bestParams)
	runtime.KeepAlive(bestIndices)
	return mse, int(epoch), err
}

func (r *nativeTrainRun) Close() error {
	if r.h != 0 {
		r.cl.Stop()
		r.k.destroyRun(r.h)
		r.h = 0
	}
	return nil
}
