package demomodel

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"pocketllm-native/compress/checkpoint"
)

func TestWriteIsALlamaFolderAndDeterministic(t *testing.T) {
	cfg := checkpoint.LlamaConfig{
		HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
		VocabSize: 32, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
	}
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for i, d := range []string{a, b, c} {
		if err := Write(d, cfg, 1+uint64(i/2)); err != nil {
			t.Fatal(err)
		}
	}
	src, err := checkpoint.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := cfg
	want.ModelType, want.HiddenAct = "llama", "silu"
	if src.Config == nil || *src.Config != want {
		t.Errorf("config.json reads back as %+v, want %+v", src.Config, want)
	}
	// Embedding, final norm, and per layer two norms and seven projections.
	if want := 2 + cfg.NumHiddenLayers*9; len(src.Tensors) != want {
		t.Fatalf("%d tensors, want %d", len(src.Tensors), want)
	}
	for name, shape := range map[string][2]int{
		"model.embed_tokens.weight":              {32, 16},
		"model.layers.1.self_attn.k_proj.weight": {8, 16},
		"model.layers.0.mlp.down_proj.weight":    {16, 24},
	} {
		ti, ok := src.Info(name)
		if !ok || len(ti.Shape) != 2 || ti.Shape[0] != shape[0] || ti.Shape[1] != shape[1] {
			t.Errorf("%s: %+v, want shape %v", name, ti, shape)
		}
	}
	read := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(d, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(a), read(b)) {
		t.Error("the same seed wrote different weights")
	}
	if bytes.Equal(read(a), read(c)) {
		t.Error("another seed wrote the same weights")
	}
}
