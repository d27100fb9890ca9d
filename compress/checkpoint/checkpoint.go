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
// tables llama2c.freq_cis_real and llama2c.freq_cis_imag; GGUF sources add
// q/k/v biases (model.layers.N.self_attn.{q,k,v}_proj.bias, for qwen2) and
// keep any tensor without a Hugging Face name under its GGUF name behind
// "gguf.".
//
// The shared types are defined in package formatbase and aliased here, so
// checkpoint.TensorInfo and the format packages' formatbase.TensorInfo are the
// same type.
package checkpoint

import "pocketllm-native/compress/checkpoint/formatbase"

// DType is an element type, spelled as in safetensors ("F32", "BF16", ...).
type DType = formatbase.DType

// The element types with a whole number of bytes per element.
const (
	BOOL   = formatbase.BOOL
	U8     = formatbase.U8
	I8     = formatbase.I8
	F8E5M2 = formatbase.F8E5M2
	F8E4M3 = formatbase.F8E4M3
	F8E8M0 = formatbase.F8E8M0
	I16    = formatbase.I16
	U16    = formatbase.U16
	F16    = formatbase.F16
	BF16   = formatbase.BF16
	I32    = formatbase.I32
	U32    = formatbase.U32
	F32    = formatbase.F32
	C64    = formatbase.C64
	F64    = formatbase.F64
	I64    = formatbase.I64
	U64    = formatbase.U64
)

// TensorInfo describes one tensor: name, element type and shape.
type TensorInfo = formatbase.TensorInfo

// LlamaConfig mirrors the Hugging Face config.json fields of a Llama model.
type LlamaConfig = formatbase.LlamaConfig

// SideFile is a non-weight file carried with the model.
type SideFile = formatbase.SideFile

// WriteOptions controls how writers treat an existing destination.
type WriteOptions = formatbase.WriteOptions

// DecodeFloat32 converts little-endian F32, F16 or BF16 bytes to float32.
func DecodeFloat32(dt DType, raw []byte) ([]float32, error) { return formatbase.DecodeFloat32(dt, raw) }

// DecodeFloat32Into is DecodeFloat32 into dst, which must hold exactly the
// elements of raw, so a tensor can be decoded piece by piece.
func DecodeFloat32Into(dst []float32, dt DType, raw []byte) error {
	return formatbase.DecodeFloat32Into(dst, dt, raw)
}

// FloatSize is the element size of F32, F16 and BF16; any other dtype is
// an error wrapping ErrNotFloat.
func FloatSize(dt DType) (int, error) { return formatbase.FloatSize(dt) }

// EncodeFloat32 converts float32 values to little-endian F32, F16 or BF16
// bytes, rounding to nearest even.
func EncodeFloat32(dt DType, src []float32) ([]byte, error) { return formatbase.EncodeFloat32(dt, src) }

// ErrNotFloat is wrapped by errors for dtypes without a float32 conversion.
var ErrNotFloat = formatbase.ErrNotFloat
