// Package demomodel writes the built-in model of the demo command: a small
// Llama-shaped Hugging Face folder (model.safetensors and config.json) whose
// projections have the kind of structure trained weights have, so that
// compression has something to find. Tests use it too, so the round trips
// and byte accounting run on a checkout without the shared real models.
package demomodel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/atomicfile"
)

// Config is the demo's model: big enough that every tensor kind can pay for
// its shared meta network at 4 bits, small enough to train in about a minute
// on two cores, with an MLP width (344) that is not a multiple of the
// sub-vector length, as in real checkpoints.
var Config = checkpoint.LlamaConfig{
	HiddenSize: 128, IntermediateSize: 344, NumHiddenLayers: 4, NumAttentionHeads: 8, NumKeyValueHeads: 4,
	VocabSize: 256, MaxPositionEmbeddings: 256, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
}

// Small is Config cut to stories260K's size (hidden 64, MLP 172, four
// layers), for tests that compress the whole model: on the Go kernels with a
// short schedule that takes seconds, and every tensor kind, shared across
// the four layers, still reaches 3 bits per weight (with two layers the k
// and v projections cannot pay for their meta network).
var Small = checkpoint.LlamaConfig{
	HiddenSize: 64, IntermediateSize: 172, NumHiddenLayers: 4, NumAttentionHeads: 8, NumKeyValueHeads: 4,
	VocabSize: 64, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
}

// Write writes a Hugging Face folder with cfg's shape to dir, its weights
// drawn from seed: the same cfg and seed give the same files. A folder that
// already holds the model's files has them replaced.
func Write(dir string, cfg checkpoint.LlamaConfig, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	type tensor struct {
		info checkpoint.TensorInfo
		data []float32
	}
	var ts []tensor
	add := func(name string, rows, cols int, f func(r, c int) float32) {
		shape := []int{rows}
		if cols > 0 {
			shape = append(shape, cols)
		} else {
			cols = 1
		}
		d := make([]float32, rows*cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				d[r*cols+c] = f(r, c)
			}
		}
		ts = append(ts, tensor{checkpoint.TensorInfo{Name: name, DType: "F32", Shape: shape}, d})
	}
	// projection is a few strong directions plus noise, rows of varying norm.
	projection := func(name string, rows, cols int) {
		const rank = 4
		u := make([]float64, rows*rank)
		v := make([]float64, cols*rank)
		norm := make([]float64, rows)
		for i := range u {
			u[i] = rng.NormFloat64()
		}
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		for i := range norm {
			norm[i] = 0.5 + rng.Float64()
		}
		std := 1 / math.Sqrt(float64(cols))
		add(name, rows, cols, func(r, c int) float32 {
			var s float64
			for k := 0; k < rank; k++ {
				s += u[r*rank+k] * v[c*rank+k]
			}
			return float32(std * norm[r] * (0.5*s + 0.3*rng.NormFloat64()))
		})
	}
	ones := func(r, _ int) float32 { return 1 }
	add("model.embed_tokens.weight", cfg.VocabSize, cfg.HiddenSize, func(int, int) float32 { return float32(rng.NormFloat64()) })
	kv := cfg.HiddenSize / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", cfg.HiddenSize, 0, ones)
		projection(p+"self_attn.q_proj.weight", cfg.HiddenSize, cfg.HiddenSize)
		projection(p+"self_attn.k_proj.weight", kv, cfg.HiddenSize)
		projection(p+"self_attn.v_proj.weight", kv, cfg.HiddenSize)
		projection(p+"self_attn.o_proj.weight", cfg.HiddenSize, cfg.HiddenSize)
		add(p+"post_attention_layernorm.weight", cfg.HiddenSize, 0, ones)
		projection(p+"mlp.gate_proj.weight", cfg.IntermediateSize, cfg.HiddenSize)
		projection(p+"mlp.up_proj.weight", cfg.IntermediateSize, cfg.HiddenSize)
		projection(p+"mlp.down_proj.weight", cfg.HiddenSize, cfg.IntermediateSize)
	}
	add("model.norm.weight", cfg.HiddenSize, 0, ones)

	infos := make([]checkpoint.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = t.info
	}
	w, err := safetensors.CreateWith(filepath.Join(dir, "model.safetensors"), infos, map[string]string{"format": "pt"},
		checkpoint.WriteOptions{Overwrite: true})
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := w.WriteFloat32(t.info.Name, t.data); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return WriteConfig(dir, cfg)
}

// WriteConfig writes the config.json of a Llama model with cfg's shape
// and F32 weights to the folder dir.
func WriteConfig(dir string, cfg checkpoint.LlamaConfig) error {
	conf := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_act": "silu",
		"hidden_size": cfg.HiddenSize, "intermediate_size": cfg.IntermediateSize,
		"num_hidden_layers": cfg.NumHiddenLayers, "num_attention_heads": cfg.NumAttentionHeads,
		"num_key_value_heads": cfg.NumKeyValueHeads, "vocab_size": cfg.VocabSize,
		"max_position_embeddings": cfg.MaxPositionEmbeddings, "rms_norm_eps": cfg.RMSNormEps,
		"rope_theta": cfg.RopeTheta, "tie_word_embeddings": cfg.TieWordEmbeddings, "torch_dtype": "float32",
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, checkpoint.ConfigFileName), append(b, '\n'), true)
}

// Calibrated is a two-layer model whose vocabulary (260 tokens) is that of
// WriteByteTokenizer, so that compression can sample calibration text from
// it: for tests of the tuned path, which needs calibration.
var Calibrated = checkpoint.LlamaConfig{
	HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
	VocabSize: 260, MaxPositionEmbeddings: 32, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
}

// WriteByteTokenizer writes a byte-level llama2.c tokenizer (tokenizer.bin)
// of 260 pieces into dir: <unk>, <s>, </s>, the 256 byte tokens and "a".
func WriteByteTokenizer(dir string) error {
	var tok bytes.Buffer
	binary.Write(&tok, binary.LittleEndian, int32(8))
	piece := func(p string) {
		binary.Write(&tok, binary.LittleEndian, float32(0))
		binary.Write(&tok, binary.LittleEndian, int32(len(p)))
		tok.WriteString(p)
	}
	for _, p := range []string{"<unk>", "\n<s>\n", "\n</s>\n"} {
		piece(p)
	}
	for b := 0; b < 256; b++ {
		piece(fmt.Sprintf("<0x%02X>", b))
	}
	piece("a")
	return atomicfile.Write(filepath.Join(dir, "tokenizer.bin"), tok.Bytes(), true)
}
