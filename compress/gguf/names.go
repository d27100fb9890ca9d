package gguf

import (
	"fmt"
	"strconv"
	"strings"

	"pocketllm-native/compress/llama2c"
)

// Architectures (general.architecture) this package maps. Hugging Face's
// mistral is llama in GGUF, as llama.cpp's own converter writes it.
const (
	ArchLlama = "llama"
	ArchQwen2 = "qwen2"
)

// UnmappedPrefix starts the tool's name for a GGUF tensor that has no
// Hugging Face name (say rope_freqs.weight): it is carried under its GGUF
// name behind this prefix and written back under that name.
const UnmappedPrefix = "gguf."

// globalNames maps the tensors outside the layers, Hugging Face to GGUF.
var globalNames = map[string]string{
	"model.embed_tokens.weight": "token_embd.weight",
	"model.norm.weight":         "output_norm.weight",
	"lm_head.weight":            "output.weight",
}

// layerNames maps the tensors of layer N, after "model.layers.N." and
// "blk.N." respectively.
var layerNames = map[string]string{
	"input_layernorm.weight":          "attn_norm.weight",
	"self_attn.q_proj.weight":         "attn_q.weight",
	"self_attn.q_proj.bias":           "attn_q.bias",
	"self_attn.k_proj.weight":         "attn_k.weight",
	"self_attn.k_proj.bias":           "attn_k.bias",
	"self_attn.v_proj.weight":         "attn_v.weight",
	"self_attn.v_proj.bias":           "attn_v.bias",
	"self_attn.o_proj.weight":         "attn_output.weight",
	"post_attention_layernorm.weight": "ffn_norm.weight",
	"mlp.gate_proj.weight":            "ffn_gate.weight",
	"mlp.up_proj.weight":              "ffn_up.weight",
	"mlp.down_proj.weight":            "ffn_down.weight",
}

var ggufGlobal, ggufLayer = invert(globalNames), invert(layerNames)

func invert(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// splitLayer splits "<prefix>N.<rest>" into N and rest.
func splitLayer(name, prefix string) (int, string, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, "", false
	}
	num, tail, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return 0, "", false
	}
	return n, tail, true
}

// HFName returns the tool's name for a GGUF tensor: its Hugging Face name,
// or UnmappedPrefix and the GGUF name.
func HFName(name string) string {
	if hf, ok := ggufGlobal[name]; ok {
		return hf
	}
	if n, rest, ok := splitLayer(name, "blk."); ok {
		if hf, ok := ggufLayer[rest]; ok {
			return fmt.Sprintf("model.layers.%d.%s", n, hf)
		}
	}
	return UnmappedPrefix + name
}

// GGUFName returns the GGUF name of one of the tool's tensors, and false
// for a tensor a GGUF file has no place for (llama2.c's RoPE tables, or a
// Hugging Face tensor llama.cpp does not load).
func GGUFName(name string) (string, bool) {
	if g, ok := globalNames[name]; ok {
		return g, true
	}
	if n, rest, ok := splitLayer(name, "model.layers."); ok {
		if g, ok := layerNames[rest]; ok {
			return fmt.Sprintf("blk.%d.%s", n, g), true
		}
	}
	if g, ok := strings.CutPrefix(name, UnmappedPrefix); ok && g != "" {
		return g, true
	}
	return "", false
}

// rotaryHeads returns, for a Hugging Face tensor of a llama model, the
// head count its rows are permuted in (q by the attention heads, k by the
// key/value heads), or 0 when it is not permuted. llama.cpp's llama
// architecture wants Q and K rows in the interleaved rotary layout of the
// original Llama release; convert_hf_to_gguf.py permutes them from Hugging
// Face's half-split layout (LlamaModel.permute), biases included. Qwen2
// uses the half-split layout in llama.cpp too, so nothing is permuted.
func rotaryHeads(arch, hfName string, heads, kvHeads int) int {
	if arch != ArchLlama {
		return 0
	}
	_, rest, ok := splitLayer(hfName, "model.layers.")
	if !ok {
		return 0
	}
	switch rest {
	case "self_attn.q_proj.weight", "self_attn.q_proj.bias":
		return heads
	case "self_attn.k_proj.weight", "self_attn.k_proj.bias":
		return kvHeads
	}
	return 0
}

// Permuter turns Q and K rows between the layouts (see rotaryHeads).
type Permuter struct {
	Arch           string
	Heads, KVHeads int
}

// permute rewrites raw, the bytes of tensor hfName of the given row-major
// shape and element size, from GGUF's layout to Hugging Face's (toHF) or
// back. Tensors that are not permuted are returned as they are.
func (p Permuter) permute(hfName string, raw []byte, shape []int, elemSize int, toHF bool) ([]byte, error) {
	heads := rotaryHeads(p.Arch, hfName, p.Heads, p.KVHeads)
	if heads == 0 || len(shape) == 0 {
		return raw, nil
	}
	rows := shape[0]
	rowBytes := elemSize
	for _, d := range shape[1:] {
		rowBytes *= d
	}
	if rows%heads != 0 || (rows/heads)%2 != 0 || rows*rowBytes != len(raw) {
		return nil, fmt.Errorf("tensor %q: %d rows do not split into %d heads of an even size", hfName, rows, heads)
	}
	out := make([]byte, len(raw))
	llama2c.PermuteRows(out, raw, heads, rowBytes, !toHF)
	return out, nil
}

// Permutes says whether the rows of the Hugging Face tensor hfName are
// reordered between the two layouts.
func (p Permuter) Permutes(hfName string) bool {
	return rotaryHeads(p.Arch, hfName, p.Heads, p.KVHeads) != 0
}

// ToHF rewrites a tensor read from a GGUF file into Hugging Face's layout.
func (p Permuter) ToHF(hfName string, raw []byte, shape []int, elemSize int) ([]byte, error) {
	return p.permute(hfName, raw, shape, elemSize, true)
}

// ToGGUF rewrites a tensor in Hugging Face's layout into GGUF's.
func (p Permuter) ToGGUF(hfName string, raw []byte, shape []int, elemSize int) ([]byte, error) {
	return p.permute(hfName, raw, shape, elemSize, false)
}
