package pipeline

import (
	"encoding/json"
	"fmt"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/pllm"
)

// LoadModel reconstructs every tensor of a .pllm file in memory as float32,
// with the model's config: what evaluation needs to run the compressed model
// without writing a checkpoint. fallback, when not nil, is the config to use
// if the file stores none (a lone .safetensors file was compressed), e.g. the
// original model's.
func LoadModel(path string, k bindings.Kernels, fallback *checkpoint.LlamaConfig) (checkpoint.LlamaConfig, map[string][]float32, error) {
	var cfg checkpoint.LlamaConfig
	r, err := pllm.Open(path)
	if err != nil {
		return cfg, nil, err
	}
	defer r.Close()
	if err := json.Unmarshal(r.Meta().ModelConfig, &cfg); err != nil || cfg.HiddenSize == 0 {
		if fallback == nil {
			return cfg, nil, fmt.Errorf("%s: no Llama model config stored (compress the model's folder, not its lone .safetensors file)", path)
		}
		cfg = *fallback
	}
	tensors := map[string][]float32{}
	for i := range r.Groups() {
		members, data, err := reconstructGroup(r, path, i, k)
		if err != nil {
			return cfg, nil, err
		}
		for j, m := range members {
			tensors[m.Name] = data[j]
		}
	}
	for _, t := range r.RawTensors() {
		raw, err := r.ReadRaw(t.Name)
		if err != nil {
			return cfg, nil, err
		}
		v, err := checkpoint.DecodeFloat32(t.DType, raw)
		if err != nil {
			continue // not a float tensor; a Llama forward pass has no use for it
		}
		tensors[t.Name] = v
	}
	return cfg, tensors, nil
}
