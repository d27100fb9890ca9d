package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/internal/demomodel"
)

// tinyModel writes a small built-in Llama folder with a byte-level
// llama2.c tokenizer (tokenizer.bin) beside it, so calibration samples text
// from it.
func tinyModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := demomodel.Write(dir, demomodel.Calibrated, 11); err != nil {
		t.Fatal(err)
	}
	if err := demomodel.WriteByteTokenizer(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tunedOptions(in, out string, method string) CompressOptions {
	st := pocketllm.DefaultSettings(0, 0)
	st.Epochs, st.DecayEvery, st.KMeansInit = 3, 2, true
	return CompressOptions{
		In: in, Out: out, Dim: 2, K: 16, Share: plan.ShareWidth, MethodName: method,
		Include: plan.DefaultInclude, Method: st, Kernels: bindings.Go(), Force: true,
		Calibration: Calibration{Samples: 6, SampleTokens: 24, Seed: 3},
		Tuning: Tuning{
			Objective: ObjectiveOutput, OutputSteps: 8, OutputLR: 2e-3, IndexUpdate: true, Sequential: true,
			BlockSteps: 4, E2ESteps: 6, E2ELR: 1e-3, E2EBatch: 2,
		},
	}
}

// A run with every tuning stage: each stage lowers (never raises) its
// objective, the file reconstructs exactly the model whose divergence
// end-to-end tuning reported, and the run is deterministic.
func TestTunedRunReconstructsWhatWasTuned(t *testing.T) {
	in := tinyModel(t)
	for _, method := range []string{MethodPocketLLM, MethodVQ} {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			var files [2][]byte
			var e2e Event
			for run := range files {
				out := filepath.Join(dir, fmt.Sprintf("t%d.pllm", run))
				o := tunedOptions(in, out, method)
				stages := map[string]int{}
				o.Events = func(e Event) {
					if e.Kind == "tuned" {
						stages[e.Stage]++
						if e.Tune.Best > e.Tune.Loss {
							t.Errorf("%s %s: objective rose from %v to %v", e.Stage, e.Group, e.Tune.Loss, e.Tune.Best)
						}
						if e.Stage == "e2e" {
							e2e = e
						}
					}
				}
				if _, err := Compress(o); err != nil {
					t.Fatal(err)
				}
				if stages["output"] == 0 || stages["block"] != 2 || stages["e2e"] != 1 {
					t.Fatalf("tuning stages run: %v", stages)
				}
				var err error
				if files[run], err = os.ReadFile(out); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(files[0], files[1]) {
				t.Fatal("two runs with the same settings wrote different files")
			}
			if !(e2e.Tune.Best < e2e.Tune.Loss) {
				t.Errorf("end-to-end tuning did not lower the divergence: %v -> %v", e2e.Tune.Loss, e2e.Tune.Best)
			}
			// The divergence of the model rebuilt from the file alone is the one reported.
			o := tunedOptions(in, "", method)
			src, err := checkpoint.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			set, _, err := loadCalibration(src, o.Calibration)
			if err != nil {
				t.Fatal(err)
			}
			cfg, tensors, err := LoadModel(filepath.Join(dir, "t0.pllm"), bindings.Go(), nil)
			if err != nil {
				t.Fatal(err)
			}
			m, err := llama.FromTensors(cfg, tensors)
			if err != nil {
				t.Fatal(err)
			}
			seq, err := llama.NewSeq[float32](cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			obj := &klObjective{seq: seq, windows: set.windows, batch: 1}
			if err := obj.prepare(o.Method.Seed, llama.ParamsOf[float32](set.model)); err != nil {
				t.Fatal(err)
			}
			obj.params = llama.ParamsOf[float32](m)
			got, err := obj.divergence(obj.valid, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != e2e.Tune.Best {
				t.Fatalf("the written file's divergence is %v, tuning reported %v", got, e2e.Tune.Best)
			}
		})
	}
}
