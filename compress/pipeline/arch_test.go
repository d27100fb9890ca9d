package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/llama"
	"pocketllm-native/internal/tinymodel"
)

// Compressing a tiny qwen2 and mistral folder runs calibration and every
// tuning stage through their own forward passes (biases, sliding window
// shorter than the calibration samples), and decompression gives back the
// kept tensors, the qwen2 biases among them, bit for bit.
func TestCompressLlamaFamily(t *testing.T) {
	for _, kind := range []string{tinymodel.Qwen2, tinymodel.Mistral} {
		t.Run(kind, func(t *testing.T) {
			in := t.TempDir()
			cfg, err := tinymodel.Write(in, tinymodel.Options{Kind: kind, Seed: 4, ByteFallback: kind == tinymodel.Mistral})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "m.pllm")
			o := tunedOptions(in, out, MethodPocketLLM)
			if kind == tinymodel.Mistral && o.Calibration.SampleTokens <= tinymodel.Window {
				t.Fatalf("calibration samples of %d tokens do not exercise the window of %d", o.Calibration.SampleTokens, tinymodel.Window)
			}
			stages := map[string]int{}
			o.Events = func(e Event) {
				if e.Kind == "tuned" {
					stages[e.Stage]++
				}
			}
			if _, err := Compress(o); err != nil {
				t.Fatal(err)
			}
			if stages["output"] == 0 || stages["block"] != cfg.NumHiddenLayers || stages["e2e"] != 1 {
				t.Fatalf("tuning stages run: %v", stages)
			}
			back := filepath.Join(dir, "back")
			if err := Decompress(DecompressOptions{In: out, Out: back, Format: FormatSafetensors, Kernels: bindings.Go()}); err != nil {
				t.Fatal(err)
			}
			orig, err := checkpoint.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer orig.Close()
			got, err := checkpoint.Open(back)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Config == nil || got.Config.ModelType != kind || *got.Config != *orig.Config {
				t.Fatalf("decompressed config %+v, want %+v", got.Config, orig.Config)
			}
			biases := 0
			for _, info := range orig.Tensors {
				if !strings.HasSuffix(info.Name, ".bias") && !strings.HasSuffix(info.Name, "norm.weight") {
					continue
				}
				a, err := orig.Raw(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				b, err := got.Raw(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(info.Name, ".bias") {
					biases++
					if !bytes.Equal(a, b) {
						t.Errorf("%s: decompressed bias differs from the original", info.Name)
					}
				}
			}
			if want := 3 * cfg.NumHiddenLayers * btoi(llama.HasQKVBias(cfg)); biases != want {
				t.Errorf("%d biases in the model, want %d", biases, want)
			}
			// The decompressed folder runs with its architecture.
			m, err := llama.Open(back)
			if err != nil {
				t.Fatal(err)
			}
			if llama.HasQKVBias(m.Config) && m.Layers[0].QBias == nil || kind == tinymodel.Mistral && m.Layers[0].Window != tinymodel.Window {
				t.Errorf("decompressed %s model lost its biases or window", kind)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A model type the forward pass does not implement is refused by name
// when compression needs to run it (calibration).
func TestCompressRefusesOtherArchitectures(t *testing.T) {
	in := t.TempDir()
	if _, err := tinymodel.Write(in, tinymodel.Options{Kind: tinymodel.Llama, Seed: 1, ByteFallback: true}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(in, checkpoint.ConfigFileName)
	rewriteFile(t, conf, func(s string) string {
		return strings.Replace(s, `"model_type": "llama"`, `"model_type": "gemma"`, 1)
	})
	_, err := Compress(tunedOptions(in, filepath.Join(t.TempDir(), "m.pllm"), MethodPocketLLM))
	if err == nil || !strings.Contains(err.Error(), `model_type "gemma"`) {
		t.Fatalf("compressing a gemma config: %v", err)
	}
}

// rewriteFile replaces a file's text with edit's result.
func rewriteFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := edit(string(data))
	if changed == string(data) {
		t.Fatalf("%s: the edit changed nothing", path)
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
}
