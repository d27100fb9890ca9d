// Package synthmodel writes deterministic synthetic Llama-shaped models as
// Hugging Face folders (model.safetensors and config.json), as large as a
// real model, for measuring how much memory compress and decompress take.
// Every tensor is generated as it is written, through a small buffer, so
// writing a 4 GB model takes a few megabytes: the generator itself never
// holds the model, not even one tensor.
//
// The weights are noise with a per-row scale (rows of varying norm, as in
// trained projections); they exercise sizes and code paths, not the
// method's accuracy. Run it with
//
//	go run ./internal/synthmodel/cmd/synthmodel --size large --out DIR
package synthmodel

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/demomodel"
)

// Large is a 7B model's layer shapes (hidden 4096, MLP 11008, 32 heads,
// vocabulary 32000, untied output) cut to four layers: 4.3 GB at F32, its
// largest compressed tensor 11008x4096 (180 MB at F32) and its largest
// kept tensors, the embedding and the output layer, 524 MB each.
var Large = checkpoint.LlamaConfig{
	ModelType: "llama", HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 4,
	NumAttentionHeads: 32, NumKeyValueHeads: 32, VocabSize: 32000, MaxPositionEmbeddings: 2048,
	RMSNormEps: 1e-5, RopeTheta: 10000,
}

// Medium is for the memory test: 0.75 GB at F32, made so that both ways of
// letting memory grow with the model would exceed the bound of three times
// the largest group (2816x1024, 11.5 MB) plus 300 MB: its compressed
// matrices together (eight layers, 0.41 GB) and its kept embedding
// (80000x1024, 0.33 GB, tied) are each larger than that bound allows.
var Medium = checkpoint.LlamaConfig{
	ModelType: "llama", HiddenSize: 1024, IntermediateSize: 2816, NumHiddenLayers: 8,
	NumAttentionHeads: 8, NumKeyValueHeads: 8, VocabSize: 80000, MaxPositionEmbeddings: 256,
	RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
}

// Tensors lists the model's tensors in the order they are written, all F32.
func Tensors(cfg checkpoint.LlamaConfig) []checkpoint.TensorInfo {
	h, m := cfg.HiddenSize, cfg.IntermediateSize
	kv := h / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
	var out []checkpoint.TensorInfo
	add := func(name string, shape ...int) {
		out = append(out, checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: shape})
	}
	add("model.embed_tokens.weight", cfg.VocabSize, h)
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", h)
		add(p+"self_attn.q_proj.weight", h, h)
		add(p+"self_attn.k_proj.weight", kv, h)
		add(p+"self_attn.v_proj.weight", kv, h)
		add(p+"self_attn.o_proj.weight", h, h)
		add(p+"post_attention_layernorm.weight", h)
		add(p+"mlp.gate_proj.weight", m, h)
		add(p+"mlp.up_proj.weight", m, h)
		add(p+"mlp.down_proj.weight", h, m)
	}
	add("model.norm.weight", h)
	if !cfg.TieWordEmbeddings {
		add("lm_head.weight", cfg.VocabSize, h)
	}
	return out
}

// Write writes the model with cfg's shape, its weights drawn from seed, to
// the folder dir (created if missing; files of the same name are replaced).
// The same cfg and seed give the same bytes.
func Write(dir string, cfg checkpoint.LlamaConfig, seed uint64) error {
	if cfg.HiddenSize <= 0 || cfg.IntermediateSize <= 0 || cfg.NumHiddenLayers <= 0 || cfg.VocabSize <= 0 ||
		cfg.NumAttentionHeads <= 0 || cfg.NumKeyValueHeads <= 0 || cfg.HiddenSize%cfg.NumAttentionHeads != 0 {
		return fmt.Errorf("synthmodel: %s: inconsistent shape %+v", dir, cfg)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	infos := Tensors(cfg)
	w, err := safetensors.CreateWith(filepath.Join(dir, checkpoint.SingleFileName), infos,
		map[string]string{"format": "pt"}, checkpoint.WriteOptions{Overwrite: true})
	if err != nil {
		return err
	}
	defer w.Abort() // a no-op after Close
	for _, t := range infos {
		if err := w.WriteFrom(t.Name, newTensorReader(t, seed)); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return demomodel.WriteConfig(dir, cfg)
}

// tensorReader produces one tensor's F32 bytes. Its random stream depends
// on the seed and the tensor's name only, so tensors do not depend on the
// order they are written in.
type tensorReader struct {
	rng      *rand.Rand
	cols     int
	elements int64
	done     int64 // elements produced
	vector   bool  // a norm's weights: around 1
	std      float64
	rowScale float64
	buf      []byte
	pending  []byte
}

func newTensorReader(t checkpoint.TensorInfo, seed uint64) *tensorReader {
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	r := &tensorReader{rng: rand.New(rand.NewPCG(seed, h.Sum64())), elements: int64(t.NumElements()), buf: make([]byte, 64<<10)}
	r.cols = t.Shape[len(t.Shape)-1]
	r.vector = len(t.Shape) == 1
	// Uniform on [-a, a] has standard deviation a/sqrt(3); projections get
	// 1/sqrt(fan-in), as initialisations and trained weights roughly do.
	r.std = math.Sqrt(3) / math.Sqrt(float64(r.cols))
	return r
}

func (r *tensorReader) Read(p []byte) (int, error) {
	if len(r.pending) == 0 {
		if r.done == r.elements {
			return 0, io.EOF
		}
		r.fill()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// fill generates the next bufferful of elements.
func (r *tensorReader) fill() {
	n := min(int64(len(r.buf)/4), r.elements-r.done)
	for i := int64(0); i < n; i++ {
		e := r.done + i
		var v float64
		if r.vector {
			v = 1 + 0.1*(2*r.rng.Float64()-1)
		} else {
			if e%int64(r.cols) == 0 {
				r.rowScale = 0.5 + r.rng.Float64()
			}
			v = r.std * r.rowScale * (2*r.rng.Float64() - 1)
		}
		binary.LittleEndian.PutUint32(r.buf[4*i:], math.Float32bits(float32(v)))
	}
	r.done += n
	r.pending = r.buf[:4*n]
}
