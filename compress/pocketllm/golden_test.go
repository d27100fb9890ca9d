package pocketllm

import (
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/backendtest"
	"pocketllm-native/testvectors"
)

func TestMain(m *testing.M) { backendtest.Main(m) }

// Tolerances of one whole epoch against the float64 oracle, whose
// parameters stay float64 from step to step. The assignments of every
// batch and of the full pass are exact (the goldens keep each latent's
// nearest codeword a minimum margin ahead).
const (
	// EpochParamNMSE bounds the parameters after the epoch's Adam steps:
	// each step adds the step golden's error (about 1e-14 on go and cpu),
	// and each later step's gradient is taken at the float32-rounded
	// parameters of the one before.
	EpochParamNMSE = 1e-10
	// EpochLossRel bounds the mean batch loss and the full pass's MSE:
	// float64 sums of float32 errors (go and cpu: about 5e-8).
	EpochLossRel = 1e-6
)

// goldenTrainer is a trainer over a train_epoch golden's group: one
// member whose rows share the golden's loss weights.
func goldenTrainer(k bindings.Kernels, c testvectors.Case) *trainer {
	st := Settings{
		Dim: c.Int("dim"), Latent: c.Int("latent"), Hidden: c.Int("hidden"), K: c.Int("k"),
		BatchVectors: c.Int("rows_per_batch") * c.Int("e"), KMeansInit: c.Has("skip"),
		Lambda: float64(float32(c.Scalars["lambda"])), Beta: float64(float32(c.Scalars["beta"])),
	}
	rows := c.Int("rows")
	return &trainer{
		k: k, st: st, shape: st.shape(c.Int("cols")), x: c.F32["x"], rows: rows, cols: c.Int("cols"),
		memberW: [][]float32{c.F32["row_w"]}, rowMember: make([]int32, rows),
	}
}

// One whole epoch (every batch, then the full pass) against the oracle's,
// on every backend: the per-call loop always, the backend's resident run
// (ResidentTrainer) where it has one.
func TestEpochMatchesGolden(t *testing.T) {
	cases, err := testvectors.Load(testvectors.KTrainEpoch)
	if err != nil {
		t.Fatal(err)
	}
	backendtest.Each(t, func(t *testing.T, k bindings.Kernels) {
		for _, c := range cases {
			lr, first := float32(c.Scalars["lr"]), c.Int("step")
			check := func(t *testing.T, p []float32, idx []int32, meanLoss, mse float64) {
				backendtest.CheckNMSE(t, "parameters after the epoch", p, c.Want["p"], EpochParamNMSE)
				backendtest.CheckRel(t, "mean batch loss", meanLoss, c.Want["mean_loss"][0], EpochLossRel)
				backendtest.CheckRel(t, "full-pass MSE", mse, c.Want["mse"][0], EpochLossRel)
				backendtest.CheckIndices(t, "full-pass indices", idx, c.WantInt["idx"])
			}
			t.Run(c.Name+"/per_call", func(t *testing.T) {
				tr := goldenTrainer(k, c)
				if tr.shape.E != c.Int("e") || tr.rowsPerBatch() != c.Int("rows_per_batch") {
					t.Fatalf("trainer shape %+v, %d rows per batch: not the golden's", tr.shape, tr.rowsPerBatch())
				}
				loop := tr.newPerCallLoop(slices.Clone(c.F32["p"]))
				meanLoss, _, err := loop.epoch(c.I32["order"], lr, first)
				if err != nil {
					t.Fatal(err)
				}
				full := newFullPass(tr, tr.shape)
				mse, err := full.run(loop.pv)
				if err != nil {
					t.Fatal(err)
				}
				check(t, loop.p, full.idx, meanLoss, mse)
			})
			rt, ok := k.(bindings.ResidentTrainer)
			if !ok {
				continue
			}
			t.Run(c.Name+"/resident", func(t *testing.T) {
				tr := goldenTrainer(k, c)
				run, err := rt.NewTrainRun(tr.trainConfig())
				if err != nil {
					t.Fatal(err)
				}
				defer run.Close()
				wts := make([]float32, 0, len(tr.x))
				for r := 0; r < tr.rows; r++ {
					wts = append(wts, tr.rowWeights(r)...)
				}
				if err := run.Upload(tr.x, wts, c.F32["p"], false); err != nil {
					t.Fatal(err)
				}
				es, err := run.Epoch(c.I32["order"], lr, first, false)
				if err != nil {
					t.Fatal(err)
				}
				p, idx := make([]float32, len(c.F32["p"])), make([]int32, len(c.WantInt["idx"]))
				// With no initial candidate, the first epoch's parameters are the best.
				if _, epoch, err := run.Download(p, idx); err != nil || epoch != 1 {
					t.Fatalf("download: best epoch %d, %v", epoch, err)
				}
				check(t, p, idx, es.MeanLoss, es.ReconMSE)
			})
		}
	})
}
