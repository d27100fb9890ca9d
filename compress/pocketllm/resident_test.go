package pocketllm

import (
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
)

// cpuKernels opens the native CPU backend, which must offer resident
// training; it skips when the library is absent, unless
// POCKETLLM_REQUIRE_BACKENDS names cpu.
func cpuKernels(tb testing.TB) bindings.Kernels {
	tb.Helper()
	k, _, err := bindings.Select(bindings.BackendCPU)
	if err != nil {
		if strings.Contains(os.Getenv("POCKETLLM_REQUIRE_BACKENDS"), "cpu") {
			tb.Fatalf("the native CPU backend is required: %v", err)
		}
		tb.Skipf("native CPU backend not available: %v", err)
	}
	tb.Cleanup(func() { bindings.Close(k) })
	if _, ok := k.(bindings.ResidentTrainer); !ok {
		tb.Fatal("the cpu backend does not implement bindings.ResidentTrainer")
	}
	return k
}

func residentCases() []struct {
	name string
	mats []matrix.Matrix
	st   Settings
} {
	weighted := lowRank("w", 40, 30, 2)
	weighted.ColWeight = make([]float32, 30)
	for c := range weighted.ColWeight {
		weighted.ColWeight[c] = float32(1 + c%5)
	}
	a := lowRank("a", 48, 30, 1) // 30 % 4 != 0: padded rows
	refresh := quick(4, 256)     // more codewords than the data fills: dead ones are re-seeded
	refresh.Epochs, refresh.Beta, refresh.KMeansEvery = 6, 0.25, 2
	skip := quick(4, 32)
	skip.Epochs, skip.KMeansInit, skip.KMeansEvery, skip.Beta = 6, true, 3, 0.1
	narrow := quick(4, 64)
	narrow.Epochs, narrow.Latent, narrow.Lambda, narrow.BatchVectors = 5, 3, 0, 50
	return []struct {
		name string
		mats []matrix.Matrix
		st   Settings
	}{
		{"padded_weighted_refresh_beta", []matrix.Matrix{a, weighted}, refresh},
		{"kmeans_init_skip", []matrix.Matrix{a, weighted}, skip},
		{"latent3_lambda0_uneven_batches", []matrix.Matrix{lowRank("n", 37, 16, 3)}, narrow},
	}
}

// The resident run must give what the kernel-by-kernel loop gives: on the
// cpu backend the same kernels run on the same buffers and every float64 sum
// is taken in the same order, so the results are compared for equality.
func TestResidentMatchesPerCall(t *testing.T) {
	k := cpuKernels(t)
	for _, c := range residentCases() {
		t.Run(c.name, func(t *testing.T) {
			// The resident path falls back to the per-call loop only when
			// the run cannot be created; make sure it can.
			shape := c.st.shape(c.mats[0].Cols)
			data, _, err := subVectors(c.mats, shape)
			if err != nil {
				t.Fatal(err)
			}
			tr := newTrainer(k, c.st, shape, data, c.mats)
			rt, ok := tr.resident()
			if !ok {
				t.Fatal("the trainer does not choose the resident path")
			}
			run, err := rt.NewTrainRun(tr.trainConfig())
			if err != nil {
				t.Fatal(err)
			}
			run.Close()

			var resEp, callEp []Progress
			res, err := Compress(k, c.mats, c.st, func(p Progress) { resEp = append(resEp, p) })
			if err != nil {
				t.Fatal(err)
			}
			pc := c.st
			pc.PerCall = true
			ref, err := Compress(k, c.mats, pc, func(p Progress) { callEp = append(callEp, p) })
			if err != nil {
				t.Fatal(err)
			}
			for i := range callEp {
				r, p := resEp[i], callEp[i]
				if r.Loss != p.Loss || r.ReconMSE != p.ReconMSE || r.BestEpoch != p.BestEpoch {
					t.Errorf("epoch %d: resident loss %.17g, MSE %.17g, best %d; per call %.17g, %.17g, %d",
						i+1, r.Loss, r.ReconMSE, r.BestEpoch, p.Loss, p.ReconMSE, p.BestEpoch)
				}
			}
			if res.BestEpoch != ref.BestEpoch {
				t.Errorf("best epoch %d resident, %d per call", res.BestEpoch, ref.BestEpoch)
			}
			if rel := math.Abs(res.ReconMSE-ref.ReconMSE) / ref.ReconMSE; !(rel <= 0) {
				t.Errorf("reconstruction MSE %.17g resident, %.17g per call (relative difference %.3g)", res.ReconMSE, ref.ReconMSE, rel)
			}
			if !slices.Equal(res.Indices, ref.Indices) || !slices.Equal(res.Decoder, ref.Decoder) || !slices.Equal(res.Codebook, ref.Codebook) {
				t.Error("resident and per-call training kept different parameters or indices")
			}
			if c.st.KMeansInit && resEp[0].BestEpoch > 1 {
				t.Errorf("best epoch %d after the first epoch", resEp[0].BestEpoch)
			}
		})
	}
}

func TestResidentSwitch(t *testing.T) {
	k := cpuKernels(t)
	mats := []matrix.Matrix{lowRank("a", 8, 8, 1)}
	st := quick(4, 8)
	tr := newTrainer(k, st, st.shape(8), make([]float32, 64), mats)
	if _, ok := tr.resident(); !ok {
		t.Fatal("resident path not chosen by default on the cpu backend")
	}
	t.Setenv(EnvResident, "0")
	if _, ok := tr.resident(); ok {
		t.Fatalf("%s=0 does not force the per-call path", EnvResident)
	}
	t.Setenv(EnvResident, "")
	tr.st.PerCall = true
	if _, ok := tr.resident(); ok {
		t.Fatal("Settings.PerCall does not force the per-call path")
	}
	if _, ok := bindings.Go().(bindings.ResidentTrainer); ok {
		t.Fatal("the go backend claims resident training")
	}
}

// BenchmarkResidentEpoch compares one epoch (batches and full pass) of the
// resident run with the kernel-by-kernel loop on the cpu backend.
//
//	go test ./compress/pocketllm -run '^$' -bench ResidentEpoch -benchtime 3x
func BenchmarkResidentEpoch(b *testing.B) {
	k := cpuKernels(b)
	m := lowRank("bench", 512, 1024, 5)
	for _, perCall := range []bool{false, true} {
		name := "resident"
		if perCall {
			name = "per_call"
		}
		st := DefaultSettings(8, 1024)
		st.Epochs, st.PerCall = 1, perCall
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				d, err := TimeEpochs(k, []matrix.Matrix{m}, st)
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/epoch")
		})
	}
}

// refusingTrainer is the pure-Go kernels with a resident trainer that
// always fails with err, as a GPU without room for the group would.
type refusingTrainer struct {
	bindings.Kernels
	err error
}

func (r refusingTrainer) NewTrainRun(bindings.TrainConfig) (bindings.TrainRun, error) {
	return nil, r.err
}

// A resident run that cannot be created is never dropped silently: out of
// memory falls back to the call-by-call loop (same bytes as the plain Go
// kernels) with a logged line, and any other failure is the error.
func TestResidentCreationFailure(t *testing.T) {
	mats := []matrix.Matrix{lowRank("m", 24, 16, 5)}
	st := quick(4, 16)
	st.Epochs = 2
	want, err := Compress(bindings.Go(), mats, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log.SetOutput(&logged)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })

	oom := refusingTrainer{bindings.Go(), fmt.Errorf("bindings: cuda train create: cannot allocate 1 bytes on the GPU (%w)", bindings.ErrNoMemory)}
	got, err := Compress(oom, mats, st, nil)
	if err != nil {
		t.Fatalf("out of memory must fall back, got %v", err)
	}
	if !slices.Equal(got.Indices, want.Indices) || !slices.Equal(got.Codebook, want.Codebook) {
		t.Error("the fallback's result differs from the call-by-call loop's")
	}
	if !strings.Contains(logged.String(), "cannot allocate") || !strings.Contains(logged.String(), "call by call") {
		t.Errorf("fallback not logged; log: %q", logged.String())
	}

	broken := refusingTrainer{bindings.Go(), errors.New("bindings: cuda train create: device lost (PLLM_ERR_DEVICE)")}
	if _, err := Compress(broken, mats, st, nil); err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Errorf("a failure other than memory must be the error, got %v", err)
	}
}
