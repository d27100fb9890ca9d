package pllm

import "pocketllm-native/compress/checkpoint/formatbase"

// The container describes tensors with the checkpoint packages' types. They
// are aliases, not copies: a checkpoint.TensorInfo is a pllm.TensorInfo.
// pllm imports formatbase, the package below checkpoint that defines them, so that
// checkpoint may one day open .pllm files without an import cycle.
type (
	// DType is a tensor element type, spelled as safetensors spells it.
	DType = formatbase.DType
	// TensorInfo names a tensor, its dtype and shape.
	TensorInfo = formatbase.TensorInfo
	// SideFile is a non-weight file carried with the model.
	SideFile = formatbase.SideFile
)
