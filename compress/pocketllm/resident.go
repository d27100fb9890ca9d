package pocketllm

import (
	"math"
	"math/rand/v2"
	"os"
	"time"

	"pocketllm-native/bindings"
)

// EnvResident is the environment variable that, set to 0, makes training
// call the kernels one by one even on a backend that can keep the run
// resident (as Settings.PerCall does).
const EnvResident = "POCKETLLM_RESIDENT"

// Adam's constants, shared by both training loops.
const (
	adamB1  float32 = 0.9
	adamB2  float32 = 0.999
	adamEps float32 = 1e-8
)

// resident returns the backend's resident trainer when it has one and the
// settings allow it.
func (t *trainer) resident() (bindings.ResidentTrainer, bool) {
	if t.st.PerCall || os.Getenv(EnvResident) == "0" {
		return nil, false
	}
	rt, ok := t.k.(bindings.ResidentTrainer)
	return rt, ok
}

func (t *trainer) trainConfig() bindings.TrainConfig {
	s := t.shape
	return bindings.TrainConfig{
		Rows: t.rows, E: s.E, Dim: s.Dim, Latent: s.Latent, Hidden: s.Hidden, K: s.K, Skip: s.Skip,
		RowsPerBatch: t.rowsPerBatch(), Lambda: t.st.Lambda, Beta: t.st.Beta,
		AdamB1: adamB1, AdamB2: adamB2, AdamEps: adamEps,
	}
}

// runResident is the rest of run on a resident training run: the same
// generator draws (one shuffle per epoch), learning-rate schedule, Adam step
// numbers, k-means refresh cadence, progress reports and best-epoch choice
// as the loop in run, with each epoch's batches and full pass executed by
// the backend in its own memory. p holds the initial parameters (after the
// k-means initialisation when Settings.KMeansInit, which is then epoch 0's
// candidate, as in run).
func (t *trainer) runResident(run bindings.TrainRun, rng *rand.Rand, p []float32, progress func(Progress)) error {
	rowLen := t.shape.E * t.shape.Dim
	wts := make([]float32, len(t.x))
	for r := 0; r < t.rows; r++ {
		copy(wts[r*rowLen:(r+1)*rowLen], t.rowWeights(r))
	}
	if err := run.Upload(t.x, wts, p, t.st.KMeansInit); err != nil {
		return err
	}
	rpb := t.rowsPerBatch()
	batches := (t.rows + rpb - 1) / rpb
	order := make([]int32, t.rows)
	for i := range order {
		order[i] = int32(i)
	}
	start := time.Now()
	step := 0
	for epoch := 0; epoch < t.st.Epochs; epoch++ {
		lr := t.st.LR * math.Pow(t.st.DecayFactor, float64(epoch/t.st.DecayEvery))
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		refresh := t.st.KMeansEvery > 0 && (epoch+1)%t.st.KMeansEvery == 0
		es, err := run.Epoch(order, float32(lr), step+1, refresh)
		if err != nil {
			return err
		}
		if err := t.diverged(epoch+1, es.MeanLoss, es.ReconMSE); err != nil {
			return err
		}
		step += batches
		t.bestEpoch = es.BestEpoch
		if progress != nil {
			el := time.Since(start)
			progress(Progress{
				Epoch: epoch + 1, Epochs: t.st.Epochs, Loss: es.MeanLoss, ReconMSE: es.ReconMSE,
				BestEpoch: t.bestEpoch, Elapsed: el,
				Remaining: time.Duration(float64(el) / float64(epoch+1) * float64(t.st.Epochs-epoch-1)),
			})
		}
	}
	best := make([]float32, len(p))
	mse, epoch, err := run.Download(best, nil)
	if err != nil {
		return err
	}
	t.best, t.bestMSE, t.bestEpoch = best, mse, epoch
	return nil
}
