package synthmodel

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"pocketllm-native/compress/checkpoint"
)

var tiny = checkpoint.LlamaConfig{
	ModelType: "llama", HiddenSize: 32, IntermediateSize: 88, NumHiddenLayers: 2,
	NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 50, MaxPositionEmbeddings: 16,
	RMSNormEps: 1e-5, RopeTheta: 10000,
}

// TestWriteIsDeterministicAndOpens writes a tiny model twice: the same
// bytes, a folder checkpoint.Open reads with every tensor in place, and a
// different seed gives different weights.
func TestWriteIsDeterministicAndOpens(t *testing.T) {
	dir := t.TempDir()
	read := func(name string, seed uint64) []byte {
		p := filepath.Join(dir, name)
		if err := Write(p, tiny, seed); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(p, checkpoint.SingleFileName))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := read("a", 1), read("b", 1), read("c", 2)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different files")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same file")
	}
	src, err := checkpoint.Open(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := Tensors(tiny)
	if len(src.Tensors) != len(want) || src.Config == nil || src.Config.IntermediateSize != 88 {
		t.Fatalf("%d tensors (want %d), config %+v", len(src.Tensors), len(want), src.Config)
	}
	kv, err := src.Float32("model.layers.1.self_attn.k_proj.weight")
	if err != nil || len(kv) != 16*32 {
		t.Fatalf("k_proj: %d values, %v", len(kv), err)
	}
	norm, err := src.Float32("model.norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range norm {
		if v < 0.9 || v > 1.1 {
			t.Fatalf("norm weight %d is %v, want about 1", i, v)
		}
	}
	if _, ok := src.Info("lm_head.weight"); !ok {
		t.Error("untied model without lm_head.weight")
	}
}
