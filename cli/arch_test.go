package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/tinymodel"
)

// eval and generate run every Llama-family kind; eval reports the tokens
// a tokenizer without byte fallback could not represent.
func TestEvalAndGenerateLlamaFamily(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	// Capitals and digits have no token in tinymodel's vocabulary.
	if err := os.WriteFile(text, []byte("the cat sat on the mat.\nTom has 3 hats, and it is 9 am!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kind := range tinymodel.Kinds {
		model := filepath.Join(dir, kind)
		if _, err := tinymodel.Write(model, tinymodel.Options{Kind: kind, Seed: 2}); err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, l := range []string{"the cat sat on the mat.", "Tom has 3 hats, and it is 9 am!"} {
			for _, id := range tok.Encode(l, true)[1:] {
				if id == tok.Unknown() {
					want++
				}
			}
		}
		if want != 3 { // T, 3 and 9
			t.Fatalf("%s: the text has %d unknown tokens, want 3", kind, want)
		}
		code, stdout, stderr := run("eval", "--model", model, "--compressed", model, "--tokenizer", model, "--text", text, "--json")
		if code != 0 {
			t.Fatalf("%s: eval: %s", kind, stderr)
		}
		var res struct {
			UnknownTokens int     `json:"unknown_tokens"`
			KLMean        float64 `json:"kl_mean"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%s: eval --json: %v", kind, err)
		}
		if res.UnknownTokens != want || res.KLMean != 0 {
			t.Errorf("%s: eval reports %d unknown tokens and KL %g, want %d and 0", kind, res.UnknownTokens, res.KLMean, want)
		}
		// The folder's own tokenizer serves without --tokenizer.
		code, stdout, stderr = run("eval", "--model", model, "--compressed", model, "--text", text)
		if code != 0 || !strings.Contains(stdout, "3 unknown (<unk>)") {
			t.Errorf("%s: eval text output %q (%s), want the unknown count", kind, stdout, stderr)
		}
		code, stdout, stderr = run("generate", "--model", model, "--prompt", "the", "--steps", "20")
		if code != 0 || !strings.HasPrefix(stdout, "the") {
			t.Errorf("%s: generate: exit %d, %q %q", kind, code, stdout, stderr)
		}
		// A lone safetensors file carries no tokenizer: one line naming it.
		weights := filepath.Join(model, "model.safetensors")
		code, _, stderr = run("generate", "--model", weights, "--steps", "2")
		if code == 0 || !strings.Contains(stderr, weights+" carries no tokenizer: give --tokenizer") {
			t.Errorf("%s: generate without any tokenizer: exit %d, %q", kind, code, stderr)
		}
	}
}

// A model type the forward pass does not implement is refused, naming it,
// by every command that runs the model.
func TestCommandsRefuseOtherArchitectures(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if _, err := tinymodel.Write(model, tinymodel.Options{Kind: tinymodel.Llama, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(model, checkpoint.ConfigFileName)
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(data), `"model_type": "llama"`, `"model_type": "phi3"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "text.txt")
	os.WriteFile(text, []byte("the cat\n"), 0o644)
	for _, args := range [][]string{
		{"eval", "--model", model, "--compressed", model, "--tokenizer", model, "--text", text},
		{"generate", "--model", model, "--tokenizer", model, "--steps", "3"},
		{"compress", "--in", model, "--out", filepath.Join(dir, "m.pllm"), "--backend", "go", "--epochs", "1", "--share", "width", "--bits", "8"},
		{"sweep", "--model", model, "--tokenizer", model, "--text", text, "--out-dir", filepath.Join(dir, "sweep"), "--backend", "go"},
	} {
		code, _, stderr := run(args...)
		if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `model_type "phi3" is not supported`) {
			t.Errorf("%s: exit %d, stderr %q; want one line refusing model_type phi3", args[0], code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "m.pllm")); err == nil {
		t.Error("compress wrote a file for a refused model")
	}
}
