package bindings_test

import (
	"math"
	"strings"
	"testing"

	"pocketllm-native/bindings"
)

// nativeBackend returns the named native kernels, skipping t where they
// cannot run (failing it where they are required).
func nativeBackend(t *testing.T, name string) bindings.Kernels {
	t.Helper()
	k, _, err := bindings.Select(name)
	if err != nil {
		if required()[name] {
			t.Fatalf("backend %s is required: %v", name, err)
		}
		t.Skipf("backend %s not usable here: %v", name, err)
	}
	return k
}

// The lifecycle and refusals of a resident training run on each native
// backend; what an epoch computes is tested against the per-call loop in
// compress/pocketllm and native/tests/test_train.c.
func TestTrainRunLifecycle(t *testing.T) {
	for _, name := range []string{bindings.BackendCPU, bindings.BackendCUDA} {
		t.Run(name, func(t *testing.T) {
			k := nativeBackend(t, name)
			rt, ok := k.(bindings.ResidentTrainer)
			if !ok {
				t.Fatalf("backend %s does not implement ResidentTrainer", name)
			}
			cfg := bindings.TrainConfig{Rows: 6, E: 2, Dim: 3, Latent: 3, Hidden: 4, K: 5, RowsPerBatch: 4,
				Lambda: 0.4, AdamB1: 0.9, AdamB2: 0.999, AdamEps: 1e-8}
			bad := cfg
			bad.RowsPerBatch = 7
			if _, err := rt.NewTrainRun(bad); err == nil || !strings.Contains(err.Error(), "rows_per_batch") {
				t.Errorf("rows per batch beyond the rows: %v", err)
			}
			run, err := rt.NewTrainRun(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := cfg.Rows * cfg.E * cfg.Dim
			x, w, p := make([]float32, n), make([]float32, n), make([]float32, cfg.NumParams())
			for i := range x {
				x[i], w[i] = float32(i%7)-3, 1
			}
			for i := range p {
				p[i] = float32(i%5) * 0.1
			}
			if err := run.Upload(x[:n-1], w, p, false); err == nil {
				t.Error("a short x was accepted")
			}
			if _, _, err := run.Download(nil, nil); err == nil || !strings.Contains(err.Error(), "no epoch") {
				t.Errorf("download before any epoch: %v", err)
			}
			must(t, "upload", run.Upload(x, w, p, false))
			order := []int32{5, 0, 3, 1, 4, 2}
			es, err := run.Epoch(order, 0.01, 1, true)
			if err != nil {
				t.Fatal(err)
			}
			if es.BestEpoch != 1 || !(es.ReconMSE >= 0) || !(es.MeanLoss >= 0) {
				t.Errorf("first epoch: %+v", es)
			}
			order[2] = 6
			if _, err := run.Epoch(order, 0.01, 3, false); err == nil || !strings.Contains(err.Error(), "PLLM_ERR_INDEX_RANGE") {
				t.Errorf("a row number out of range: %v", err)
			}
			best := make([]float32, cfg.NumParams())
			idx := make([]int32, cfg.Rows*cfg.E)
			mse, epoch, err := run.Download(best, idx)
			if err != nil || epoch != 1 || mse != es.ReconMSE {
				t.Errorf("download: MSE %v epoch %d (%v), want %v and 1", mse, epoch, err, es.ReconMSE)
			}
			for _, j := range idx {
				if j < 0 || int(j) >= cfg.K {
					t.Fatalf("index %d outside [0, %d)", j, cfg.K)
				}
			}
			// Closing the kernels frees the run; the run then refuses, and
			// closing it is harmless.
			bindings.Close(k)
			if _, err := run.Epoch([]int32{0, 1, 2, 3, 4, 5}, 0.01, 3, false); err == nil {
				t.Error("an epoch ran after the kernels were closed")
			}
			must(t, "close", run.Close())
			must(t, "second close", run.Close())
			if err := run.KMeansRefresh(); err == nil {
				t.Error("a closed run ran a k-means refresh")
			}
		})
	}
}

// An epoch whose full-pass MSE is not finite (parameters diverged under a
// huge learning rate) is never kept as the best: the initial candidate
// stays the best, and without one there is nothing to download.
func TestTrainRunNeverKeepsDivergedEpoch(t *testing.T) {
	for _, name := range []string{bindings.BackendCPU, bindings.BackendCUDA} {
		t.Run(name, func(t *testing.T) {
			k := nativeBackend(t, name)
			defer bindings.Close(k)
			cfg := bindings.TrainConfig{Rows: 6, E: 2, Dim: 3, Latent: 3, Hidden: 4, K: 5, RowsPerBatch: 3,
				Lambda: 0.4, AdamB1: 0.9, AdamB2: 0.999, AdamEps: 1e-8}
			run, err := k.(bindings.ResidentTrainer).NewTrainRun(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer run.Close()
			n := cfg.Rows * cfg.E * cfg.Dim
			x, w, p := make([]float32, n), make([]float32, n), make([]float32, cfg.NumParams())
			for i := range x {
				x[i], w[i] = float32(i%7)-3, 1
			}
			for i := range p {
				p[i] = float32(i%5)*0.1 - 0.2
			}
			order := []int32{5, 0, 3, 1, 4, 2}
			for _, candidate := range []bool{true, false} {
				must(t, "upload", run.Upload(x, w, p, candidate))
				es, err := run.Epoch(order, 1e30, 1, false)
				if err != nil {
					t.Fatal(err)
				}
				if !math.IsNaN(es.ReconMSE) && !math.IsInf(es.ReconMSE, 0) {
					t.Fatalf("learning rate 1e30 gave a finite MSE %v; the test needs a diverged epoch", es.ReconMSE)
				}
				mse, epoch, err := run.Download(nil, nil)
				switch {
				case candidate && (err != nil || epoch != 0 || math.IsNaN(mse) || es.BestEpoch != 0):
					t.Errorf("with an initial candidate: best epoch %d (epoch reports %d), MSE %v, %v; want epoch 0", epoch, es.BestEpoch, mse, err)
				case !candidate && (err == nil || !strings.Contains(err.Error(), "finite")):
					t.Errorf("without a candidate: download gave epoch %d, MSE %v, %v; want an error", epoch, mse, err)
				}
			}
		})
	}
}
