package llama

import (
	"fmt"
	"math"

	"pocketllm-native/compress/checkpoint"
)

// The Llama-family architectures the forward passes run, by config.json's
// model_type. They share Llama's layer (RMSNorm, rotary attention in the
// rotate_half layout with grouped key/value heads, SwiGLU MLP) and differ
// only in:
//
//   - llama (also an absent model_type, as in old files and llama2.c
//     checkpoints): nothing more;
//   - mistral: sliding_window, when set, limits every layer's attention to
//     the current position and the sliding_window-1 before it (a window at
//     least as long as the sequence is full attention);
//   - qwen2: q_proj, k_proj and v_proj have biases
//     (model.layers.N.self_attn.{q,k,v}_proj.bias), added before the
//     rotation; with use_sliding_window, layers max_window_layers and up
//     use the sliding window.
//
// Every other model_type is refused by name, as are configuration fields
// that would make transformers compute something these passes do not
// (rope_scaling, a head_dim other than hidden_size/num_attention_heads,
// hidden_act other than silu, attention_bias or mlp_bias on llama and
// mistral).
const (
	ArchLlama   = "llama"
	ArchMistral = "mistral"
	ArchQwen2   = "qwen2"
)

// Arch is cfg's architecture: its model_type, llama when absent.
func Arch(cfg checkpoint.LlamaConfig) string {
	if cfg.ModelType == "" {
		return ArchLlama
	}
	return cfg.ModelType
}

// HasQKVBias reports whether the architecture has q/k/v projection biases.
func HasQKVBias(cfg checkpoint.LlamaConfig) bool { return Arch(cfg) == ArchQwen2 }

// biasParts are the projections that have a bias when HasQKVBias.
var biasParts = []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}

// LayerBiasName returns the name of a per-layer bias, e.g.
// LayerBiasName(3, "self_attn.q_proj") = "model.layers.3.self_attn.q_proj.bias".
func LayerBiasName(layer int, part string) string {
	return fmt.Sprintf("model.layers.%d.%s.bias", layer, part)
}

// LayerWindows returns each layer's attention window in positions (the
// current one included), 0 for full causal attention.
func LayerWindows(cfg checkpoint.LlamaConfig) []int {
	w := make([]int, cfg.NumHiddenLayers)
	switch Arch(cfg) {
	case ArchMistral:
		for l := range w {
			w[l] = cfg.SlidingWindow
		}
	case ArchQwen2:
		if cfg.UseSlidingWindow {
			for l := cfg.MaxWindowLayers; l < len(w); l++ {
				w[l] = cfg.SlidingWindow
			}
		}
	}
	return w
}

// windowStart is the first position a query at pos attends to.
func windowStart(pos, window int) int {
	if window > 0 && pos-window+1 > 0 {
		return pos - window + 1
	}
	return 0
}

// normalize fills in defaults and checks that the shapes make sense and
// that the architecture is one the passes implement.
func normalize(cfg checkpoint.LlamaConfig) (checkpoint.LlamaConfig, error) {
	if cfg.NumKeyValueHeads == 0 {
		cfg.NumKeyValueHeads = cfg.NumAttentionHeads
	}
	if cfg.RopeTheta == 0 {
		cfg.RopeTheta = DefaultRopeTheta
	}
	if cfg.RMSNormEps == 0 {
		cfg.RMSNormEps = DefaultRMSNormEps
	}
	arch := Arch(cfg)
	switch {
	case arch != ArchLlama && arch != ArchMistral && arch != ArchQwen2:
		return cfg, fmt.Errorf("config: model_type %q is not supported (supported: llama, mistral, qwen2)", cfg.ModelType)
	case cfg.HiddenSize <= 0, cfg.IntermediateSize <= 0, cfg.NumHiddenLayers <= 0,
		cfg.NumAttentionHeads <= 0, cfg.NumKeyValueHeads <= 0, cfg.VocabSize <= 0:
		return cfg, fmt.Errorf("config: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads and vocab_size must be positive (got %d, %d, %d, %d, %d, %d)",
			cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.VocabSize)
	case cfg.HiddenSize%cfg.NumAttentionHeads != 0:
		return cfg, fmt.Errorf("config: hidden_size %d is not a multiple of num_attention_heads %d", cfg.HiddenSize, cfg.NumAttentionHeads)
	case (cfg.HiddenSize/cfg.NumAttentionHeads)%2 != 0:
		return cfg, fmt.Errorf("config: head size %d is odd; rotary embeddings need pairs", cfg.HiddenSize/cfg.NumAttentionHeads)
	case cfg.NumAttentionHeads%cfg.NumKeyValueHeads != 0:
		return cfg, fmt.Errorf("config: num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.NumAttentionHeads, cfg.NumKeyValueHeads)
	case cfg.RMSNormEps < 0 || cfg.RopeTheta < 0 || math.IsNaN(cfg.RMSNormEps) || math.IsNaN(cfg.RopeTheta):
		return cfg, fmt.Errorf("config: rms_norm_eps %g and rope_theta %g must be positive", cfg.RMSNormEps, cfg.RopeTheta)
	case cfg.MaxPositionEmbeddings < 0:
		return cfg, fmt.Errorf("config: max_position_embeddings %d is negative", cfg.MaxPositionEmbeddings)
	case cfg.HeadDim != 0 && cfg.HeadDim != cfg.HiddenSize/cfg.NumAttentionHeads:
		return cfg, fmt.Errorf("config: head_dim %d differs from hidden_size/num_attention_heads %d, which is not supported", cfg.HeadDim, cfg.HiddenSize/cfg.NumAttentionHeads)
	case cfg.HiddenAct != "" && cfg.HiddenAct != "silu":
		return cfg, fmt.Errorf("config: hidden_act %q is not supported (only silu)", cfg.HiddenAct)
	case cfg.AttentionBias || cfg.MLPBias:
		return cfg, fmt.Errorf("config: %s with attention_bias or mlp_bias is not supported", arch)
	case !cfg.RopeScaling.IsNull():
		return cfg, fmt.Errorf("config: rope_scaling %s is not supported (only plain rotary embeddings)", cfg.RopeScaling)
	case cfg.SlidingWindow < 0:
		return cfg, fmt.Errorf("config: sliding_window %d is negative", cfg.SlidingWindow)
	case arch == ArchQwen2 && cfg.UseSlidingWindow && cfg.SlidingWindow == 0:
		return cfg, fmt.Errorf("config: use_sliding_window is true but sliding_window is not set")
	case cfg.MaxWindowLayers < 0:
		return cfg, fmt.Errorf("config: max_window_layers %d is negative", cfg.MaxWindowLayers)
	}
	return cfg, nil
}
