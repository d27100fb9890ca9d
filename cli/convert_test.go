package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/internal/sharedtest"
)

// TestConvertStories260K converts stories260K to GGUF and back with the
// command line: the weights come back, and refusals are one line.
func TestConvertStories260K(t *testing.T) {
	model := sharedtest.Path(t, "models", "stories260K", "stories260K.bin")
	tok := sharedtest.Path(t, "models", "stories260K", "tok512.bin")
	dir := t.TempDir()
	g := filepath.Join(dir, "s.gguf")
	if code, out, errs := run("convert", "--in", model, "--out", g, "--tokenizer", tok); code != 0 || !strings.Contains(out, "wrote "+g) {
		t.Fatalf("convert: %d %q %q", code, out, errs)
	}
	if b, _ := os.ReadFile(g); !bytes.HasPrefix(b, []byte("GGUF\x03\x00\x00\x00")) {
		t.Fatalf("%s is not a GGUF version 3 file", g)
	}
	back := filepath.Join(dir, "back.bin")
	if code, _, errs := run("convert", "--in", g, "--out", back); code != 0 {
		t.Fatalf("convert back: %s", errs)
	}
	a, _ := os.ReadFile(model)
	b, _ := os.ReadFile(back)
	// Everything but the RoPE tables at the end, which are recomputed.
	if len(a) != len(b) || !bytes.Equal(a[:len(a)/2], b[:len(b)/2]) {
		t.Error("llama2.c -> GGUF -> llama2.c lost weights")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"convert", "--in", model, "--out", g, "--tokenizer", tok}, "already exists"},
		{[]string{"convert", "--in", model, "--out", filepath.Join(dir, "x.gguf")}, "needs a tokenizer"},
		{[]string{"convert", "--in", g, "--out", filepath.Join(dir, "y"), "--format", "onnx"}, `--format "onnx"`},
		{[]string{"convert", "--in", filepath.Join(dir, "missing.gguf"), "--out", filepath.Join(dir, "z")}, "missing.gguf"},
	} {
		code, _, errs := run(c.args...)
		if code == 0 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want one line with %q", c.args, code, errs, c.want)
		}
	}
	for _, name := range []string{"x.gguf", "y", "z"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("a failed convert left %s", name)
		}
	}
}
