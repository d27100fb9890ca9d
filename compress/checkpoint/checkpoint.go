// Package checkpoint opens a model checkpoint, whatever its format, as one
// Source of Hugging Face-named tensors read one at a time.
//
// Open accepts a .safetensors file, a Hugging Face model folder (a single
// model.safetensors, or shards listed in model.safetensors.index.json), or
// a llama2.c legacy checkpoint (see package llama2c).
//
// Tensor names are Hugging Face Llama names whatever the source:
// model.embed_tokens.weight, model.layers.N.input_layernorm.weight,
// model.layers.N.self_attn.{q,k,v,o}_proj.weight,
// model.layers.N.post_attention_layernorm.weight,
// model.layers.N.mlp.{gate,up,down}_proj.weight, model.norm.weight and
// lm_head.weight (absent when tied); llama2c sources add the legacy RoPE
// tables llama2c.freq_cis_real and llama2c.freq_cis_imag.
//
// The shared types are defined in package ckpt and aliased here, so
// checkpoint.TensorInfo and the format packages' ckpt.TensorInfo are the
// same type.
package checkpoint

import "pocketllm-native/compress/checkpoint/ckpt"

// DType is an element type, spelled as in safetensors ("F32", "BF16", ...).
type DType = ckpt.DType

// The element types with a whole number of bytes per element.
const (
	BOOL   = ckpt.BOOL
	U8     = ckpt.U8
	I8     = ckpt.I8
	F8E5M2 = ckpt.F8E5M2
	F8E4M3 = ckpt.F8E4M3
	F8E8M0 = ckpt.F8E8M0
	I16    = ckpt.I16
	U16    = ckpt.U16
	F16    = ckpt.F16
	BF16   = ckpt.BF16
	I32    = ckpt.I32
	U32    = ckpt.U32
	F32    = ckpt.F32
	C64    = ckpt.C64
	F64    = ckpt.F64
	I64    = ckpt.I64
	U64    = ckpt.U64
)

// TensorInfo describes one tensor: name, element type and shape.
type TensorInfo = ckpt.TensorInfo

// LlamaConfig mirrors the Hugging Face config.json fields of a Llama model.
type LlamaConfig = ckpt.LlamaConfig

// SideFile is a non-weight file carried with the model.
type SideFile = ckpt.SideFile

// WriteOptions controls how writers treat an existing destination.
type WriteOptions = ckpt.WriteOptions

// DecodeFloat32 converts little-endian F32, F16 or BF16 bytes to float32.
func DecodeFloat32(dt DType, raw []byte) ([]float32, error) { return ckpt.DecodeFloat32(dt, raw) }

// EncodeFloat32 converts float32 values to little-endian F32, F16 or BF16
// bytes, rounding to nearest even.
func EncodeFloat32(dt DType, src []float32) ([]byte, error) { return ckpt.EncodeFloat32(dt, src) }

// ErrNotFloat is wrapped by errors for dtypes without a float32 conversion.
var ErrNotFloat = ckpt.ErrNotFloat
