// Package tinymodel writes tiny random Llama-family models as Hugging Face
// folders (config.json, model.safetensors and a llama2.c tokenizer.bin),
// one of each supported architecture: llama, mistral (a sliding window
// shorter than the context) and qwen2 (q/k/v biases, tied embeddings).
// The same kind, seed and options always give the same bytes, so tests
// here and comparisons with other implementations (llama.cpp through a
// GGUF export) can rebuild them anywhere without ../shared.
//
// The weights are random, scaled so activations stay of order one and
// every part of the layer (biases and window included) moves the logits;
// they model no language.
package tinymodel

import (
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

// The kinds, spelled as config.json's model_type.
const (
	Llama   = "llama"
	Mistral = "mistral"
	Qwen2   = "qwen2"
)

// Kinds lists every kind Write accepts.
var Kinds = []string{Llama, Mistral, Qwen2}

// Options chooses the model Write writes.
type Options struct {
	Kind string // Llama, Mistral or Qwen2
	Seed uint64 // draws the weights
	// ByteFallback gives the tokenizer the 256 byte tokens <0x00>..<0xFF>
	// at ids 3..258 (the vocabulary grows by 256); without them a
	// character with no token encodes as <unk>.
	ByteFallback bool
	// Window is the mistral model's sliding_window; 0 means Window (the
	// constant). A comparison with an implementation that ignores
	// sliding_window can set it to the context length (64), which is
	// full attention.
	Window int
}

// Window is the mistral model's default sliding window: shorter than its context
// (MaxPositionEmbeddings), so that the window takes effect on any text of
// more than Window tokens.
const Window = 8

// Config is the configuration Write gives the kind: hidden size 32, two
// layers, four query heads sharing two key/value heads (head size 8), an
// MLP of 48, a context of 64. The kinds differ where their real
// counterparts do: llama has an untied head; mistral an untied head, the
// sliding window and rope_theta 1e6; qwen2 tied embeddings, rope_theta 1e6
// and rms_norm_eps 1e-6 (use_sliding_window false, as in released Qwen2
// models).
func Config(o Options) (checkpoint.LlamaConfig, error) {
	cfg := checkpoint.LlamaConfig{
		ModelType: o.Kind, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: len(Pieces(o.ByteFallback)),
		MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu",
	}
	switch o.Kind {
	case Llama:
	case Mistral:
		cfg.SlidingWindow, cfg.RopeTheta = Window, 1e6
		if o.Window > 0 {
			cfg.SlidingWindow = o.Window
		}
	case Qwen2:
		cfg.TieWordEmbeddings, cfg.RopeTheta, cfg.RMSNormEps = true, 1e6, 1e-6
		cfg.SlidingWindow, cfg.MaxWindowLayers = cfg.MaxPositionEmbeddings, cfg.NumHiddenLayers
	default:
		return cfg, fmt.Errorf("tinymodel: kind %q is not one of %v", o.Kind, Kinds)
	}
	return cfg, nil
}

// chars are the tokenizer's single characters after <unk>, <s>, </s>.
const chars = " abcdefghijklmnopqrstuvwxyz.,!?'"

// merges are its multi-character pieces, most frequent (highest score)
// first, so that common English merges into fewer tokens.
var merges = []string{"th", "he", " t", " a", "in", "er", "an", "the", " the", "nd", "on", "re",
	"ou", " s", " w", "at", "en", " o", "ed", "is", "it", " h", "ing", " and", "es", " i", "or", "ll", "as", " b", "st", "ar"}

// Pieces is the tokenizer's vocabulary, by id: <unk>, <s> and </s> as
// llama2.c's exporter writes them ("\n<s>\n", "\n</s>\n"), the byte tokens
// when byteFallback, then the characters and merges.
func Pieces(byteFallback bool) []string {
	p := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	if byteFallback {
		for b := 0; b < 256; b++ {
			p = append(p, fmt.Sprintf("<0x%02X>", b))
		}
	}
	for _, c := range chars {
		p = append(p, string(c))
	}
	return append(p, merges...)
}

// Tokenizer returns the llama2.c tokenizer file of Pieces: characters
// score 0, merges -1, -2, ... in order, the special and byte tokens 0.
func Tokenizer(byteFallback bool) []byte {
	pieces := Pieces(byteFallback)
	maxLen := 0
	for _, p := range pieces {
		maxLen = max(maxLen, len(p))
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(maxLen))
	firstMerge := len(pieces) - len(merges)
	for id, p := range pieces {
		score := float32(0)
		if id >= firstMerge {
			score = -float32(id - firstMerge + 1)
		}
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(score))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	return out
}

// Tensor is one weight of a model Write writes.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Tensors draws the weights of cfg from seed, in the order Write stores
// them: Hugging Face names, F32, each matrix [out, in].
func Tensors(cfg checkpoint.LlamaConfig, seed uint64) []Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x71e7))
	var ts []Tensor
	add := func(name string, std, mean float64, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(mean + std*rng.NormFloat64())
		}
		ts = append(ts, Tensor{name, shape, d})
	}
	h, f := cfg.HiddenSize, cfg.IntermediateSize
	q := h // head size times query heads
	kv := h / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
	matrix := func(name string, rows, cols int) { add(name, 1/math.Sqrt(float64(cols)), 0, rows, cols) }
	add("model.embed_tokens.weight", 1, 0, cfg.VocabSize, h)
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 0.1, 1, h)
		// Larger than a trained model's, so that attention is far from
		// uniform and the sliding window changes the output.
		add(p+"self_attn.q_proj.weight", 2/math.Sqrt(float64(h)), 0, q, h)
		add(p+"self_attn.k_proj.weight", 2/math.Sqrt(float64(h)), 0, kv, h)
		matrix(p+"self_attn.v_proj.weight", kv, h)
		if cfg.ModelType == Qwen2 {
			add(p+"self_attn.q_proj.bias", 0.5, 0, q)
			add(p+"self_attn.k_proj.bias", 0.5, 0, kv)
			add(p+"self_attn.v_proj.bias", 0.5, 0, kv)
		}
		matrix(p+"self_attn.o_proj.weight", h, q)
		add(p+"post_attention_layernorm.weight", 0.1, 1, h)
		matrix(p+"mlp.gate_proj.weight", f, h)
		matrix(p+"mlp.up_proj.weight", f, h)
		matrix(p+"mlp.down_proj.weight", h, f)
	}
	add("model.norm.weight", 0.1, 1, h)
	if !cfg.TieWordEmbeddings {
		matrix("lm_head.weight", cfg.VocabSize, h)
	}
	return ts
}

// architectures is config.json's architectures entry of each kind.
var architectures = map[string]string{Llama: "LlamaForCausalLM", Mistral: "MistralForCausalLM", Qwen2: "Qwen2ForCausalLM"}

// ConfigJSON is the config.json Write writes for cfg, with the keys
// transformers writes for the kind.
func ConfigJSON(cfg checkpoint.LlamaConfig) ([]byte, error) {
	arch, ok := architectures[cfg.ModelType]
	if !ok {
		return nil, fmt.Errorf("tinymodel: kind %q is not one of %v", cfg.ModelType, Kinds)
	}
	c := map[string]any{
		"architectures": []string{arch}, "model_type": cfg.ModelType, "hidden_act": "silu",
		"hidden_size": cfg.HiddenSize, "intermediate_size": cfg.IntermediateSize,
		"num_hidden_layers": cfg.NumHiddenLayers, "num_attention_heads": cfg.NumAttentionHeads,
		"num_key_value_heads": cfg.NumKeyValueHeads, "vocab_size": cfg.VocabSize,
		"max_position_embeddings": cfg.MaxPositionEmbeddings, "rms_norm_eps": cfg.RMSNormEps,
		"rope_theta": cfg.RopeTheta, "tie_word_embeddings": cfg.TieWordEmbeddings,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
	}
	switch cfg.ModelType {
	case Llama:
		c["attention_bias"], c["mlp_bias"], c["rope_scaling"] = false, false, nil
	case Mistral:
		c["sliding_window"] = cfg.SlidingWindow
	case Qwen2:
		c["sliding_window"], c["use_sliding_window"], c["max_window_layers"] = cfg.SlidingWindow, cfg.UseSlidingWindow, cfg.MaxWindowLayers
	}
	b, err := json.MarshalIndent(c, "", "  ")
	return append(b, '\n'), err
}

// Write writes the model o describes to the folder dir (created if
// needed; the model's files in it are replaced) and returns its config.
func Write(dir string, o Options) (checkpoint.LlamaConfig, error) {
	cfg, err := Config(o)
	if err != nil {
		return cfg, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cfg, err
	}
	ts := Tensors(cfg, o.Seed)
	infos := make([]checkpoint.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = checkpoint.TensorInfo{Name: t.Name, DType: checkpoint.F32, Shape: t.Shape}
	}
	w, err := safetensors.CreateWith(filepath.Join(dir, checkpoint.SingleFileName), infos, map[string]string{"format": "pt"},
		checkpoint.WriteOptions{Overwrite: true})
	if err != nil {
		return cfg, err
	}
	for _, t := range ts {
		if err := w.WriteFloat32(t.Name, t.Data); err != nil {
			w.Abort()
			return cfg, err
		}
	}
	if err := w.Close(); err != nil {
		return cfg, err
	}
	conf, err := ConfigJSON(cfg)
	if err != nil {
		return cfg, err
	}
	if err := atomicfile.Write(filepath.Join(dir, checkpoint.ConfigFileName), conf, true); err != nil {
		return cfg, err
	}
	return cfg, atomicfile.Write(filepath.Join(dir, "tokenizer.bin"), Tokenizer(o.ByteFallback), true)
}
