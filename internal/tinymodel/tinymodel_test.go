package tinymodel_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/tinymodel"
)

// Every kind writes a folder that loads as its architecture, with a
// tokenizer that fits its vocabulary, and the same options write the same
// bytes while another seed writes other weights.
func TestWriteEveryKind(t *testing.T) {
	for _, kind := range tinymodel.Kinds {
		for _, fallback := range []bool{false, true} {
			o := tinymodel.Options{Kind: kind, Seed: 3, ByteFallback: fallback}
			dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
			for i, d := range dirs {
				oi := o
				if i == 2 {
					oi.Seed = 4
				}
				if _, err := tinymodel.Write(d, oi); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"config.json", "model.safetensors", "tokenizer.bin"} {
				a, _ := os.ReadFile(filepath.Join(dirs[0], name))
				b, _ := os.ReadFile(filepath.Join(dirs[1], name))
				c, _ := os.ReadFile(filepath.Join(dirs[2], name))
				if len(a) == 0 || !bytes.Equal(a, b) {
					t.Errorf("%s: %s differs between two writes with the same options", kind, name)
				}
				if name == "model.safetensors" && bytes.Equal(a, c) {
					t.Errorf("%s: another seed wrote the same weights", kind)
				}
			}
			m, err := llama.Open(dirs[0])
			if err != nil {
				t.Fatal(err)
			}
			if llama.Arch(m.Config) != kind {
				t.Errorf("%s folder loads as %s", kind, llama.Arch(m.Config))
			}
			if (m.Layers[0].QBias != nil) != (kind == tinymodel.Qwen2) {
				t.Errorf("%s: q bias present is %v", kind, m.Layers[0].QBias != nil)
			}
			if w := m.Layers[1].Window; (w == tinymodel.Window) != (kind == tinymodel.Mistral) || w >= m.ContextLength() && w != 0 {
				t.Errorf("%s: layer window %d (context %d)", kind, w, m.ContextLength())
			}
			tok, err := tokenizer.Load(dirs[0])
			if err != nil {
				t.Fatal(err)
			}
			if tok.VocabSize() != m.VocabSize() {
				t.Errorf("%s: tokenizer has %d tokens, model %d", kind, tok.VocabSize(), m.VocabSize())
			}
			text := "the cat sat on the mat, and it is a hat!"
			ids := tok.Encode(text, true)
			if got := tok.DecodeAll(ids); got != text {
				t.Errorf("%s: %q decodes back as %q", kind, text, got)
			}
			if len(ids) >= len(text) {
				t.Errorf("%s: %d tokens for %d characters: the merges do not apply", kind, len(ids), len(text))
			}
		}
	}
	if _, err := tinymodel.Write(t.TempDir(), tinymodel.Options{Kind: "gemma"}); err == nil {
		t.Error("kind gemma accepted")
	}
}
