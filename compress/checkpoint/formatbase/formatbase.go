// Package formatbase is the base every checkpoint format package
// (safetensors, llama2c) builds on: tensor descriptions, the Llama
// configuration, side files, dtype conversion to and from float32, and
// crash-safe output files. Package checkpoint is the one that opens a
// checkpoint whatever its format.
//
// Package checkpoint re-exports these types under the same names and is
// what callers use. They live here, below both checkpoint and the format
// packages (safetensors, llama2c), so that those packages can use them while
// checkpoint.Open uses the format packages, without an import cycle.
package formatbase

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"pocketllm-native/compress/fp16"
)

// DType is an element type, spelled as in safetensors headers.
type DType string

// The element types with a whole number of bytes per element. The
// safetensors sub-byte types (F4, F6_E2M3, F6_E3M2) are not supported.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	F8E8M0 DType = "F8_E8M0"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	C64    DType = "C64"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E5M2: 1, F8E4M3: 1, F8E8M0: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	C64: 8, F64: 8, I64: 8, U64: 8,
}

// Size returns the number of bytes per element, and false for a dtype this
// package does not know.
func (d DType) Size() (int, bool) {
	n, ok := dtypeSizes[d]
	return n, ok
}

// TensorInfo describes one tensor: its name (a Hugging Face Llama name, see
// package checkpoint), element type and shape (row-major, outermost first;
// an empty shape is a scalar).
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
}

// NumElements returns the product of the shape (1 for a scalar). It assumes
// a valid shape; ByteLen checks.
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// MaxTensorBytes bounds the byte length of one tensor. It keeps every offset
// and size arithmetic in int64 far from overflow.
const MaxTensorBytes = 1 << 56

// ByteLen returns the number of bytes the tensor's data occupies, or an
// error (naming the tensor) for an unknown dtype, a negative dimension or a
// size beyond MaxTensorBytes.
func (t TensorInfo) ByteLen() (int64, error) {
	size, ok := t.DType.Size()
	if !ok {
		return 0, fmt.Errorf("tensor %q: unsupported dtype %q", t.Name, t.DType)
	}
	n := int64(size)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > MaxTensorBytes/int64(d) {
			return 0, fmt.Errorf("tensor %q: shape %v of %s is larger than %d bytes", t.Name, t.Shape, t.DType, int64(MaxTensorBytes))
		}
		n *= int64(d)
	}
	return n, nil
}

// LlamaConfig mirrors the Hugging Face config.json fields of a
// Llama-family model (model_type llama, mistral or qwen2; package llama
// says what each means and refuses the rest). A field absent from
// config.json is zero; in particular a zero NumKeyValueHeads means "same as
// NumAttentionHeads" in Hugging Face's convention, which callers apply, and
// an absent or null sliding_window is 0, full attention.
//
// The fields after TieWordEmbeddings are read so that a configuration the
// forward pass would compute differently from transformers is refused
// rather than run: they are omitted from JSON when zero, so a Llama
// configuration written back is the same as before they existed.
type LlamaConfig struct {
	ModelType             string  `json:"model_type"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"`
	VocabSize             int     `json:"vocab_size"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`

	// SlidingWindow (mistral, qwen2): each position attends to itself and
	// the SlidingWindow-1 positions before it. For qwen2 it applies only
	// with UseSlidingWindow, and only to layers from MaxWindowLayers on.
	SlidingWindow    int  `json:"sliding_window,omitempty"`
	UseSlidingWindow bool `json:"use_sliding_window,omitempty"`
	MaxWindowLayers  int  `json:"max_window_layers,omitempty"`
	// HeadDim, when set, must equal hidden_size / num_attention_heads.
	HeadDim int `json:"head_dim,omitempty"`
	// HiddenAct, when set, must be "silu".
	HiddenAct string `json:"hidden_act,omitempty"`
	// AttentionBias and MLPBias (llama, mistral) add biases the forward
	// pass does not implement; qwen2's q/k/v biases are implied by its type.
	AttentionBias bool `json:"attention_bias,omitempty"`
	MLPBias       bool `json:"mlp_bias,omitempty"`
	// RopeScaling must be absent or null: scaled rotary embeddings are not
	// implemented.
	RopeScaling RawJSON `json:"rope_scaling,omitempty"`
}

// RawJSON keeps a JSON value's text as it was (null included), so a
// configuration field can be checked without modelling it, and
// LlamaConfig stays comparable with ==.
type RawJSON string

// UnmarshalJSON keeps data.
func (r *RawJSON) UnmarshalJSON(data []byte) error {
	*r = RawJSON(data)
	return nil
}

// MarshalJSON writes the kept text back; an empty one is null.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return []byte("null"), nil
	}
	return []byte(r), nil
}

// IsNull reports whether the value is absent or JSON null.
func (r RawJSON) IsNull() bool { return r == "" || r == "null" }

// SideFile is a non-weight file carried with the model (config.json,
// tokenizer files, ...), by its base name.
type SideFile struct {
	Name string
	Data []byte
}

// DecodeFloat32 converts little-endian tensor bytes of dtype dt to float32.
// Only F32, F16 and BF16 convert; other dtypes are an error, as is a byte
// length that is not a whole number of elements.
func DecodeFloat32(dt DType, raw []byte) ([]float32, error) {
	size, err := floatSize(dt)
	if err != nil {
		return nil, err
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s elements", len(raw), dt)
	}
	out := make([]float32, len(raw)/size)
	return out, DecodeFloat32Into(out, dt, raw)
}

// DecodeFloat32Into is DecodeFloat32 into dst, which must hold exactly the
// elements of raw: a tensor can be decoded piece by piece into one slice.
func DecodeFloat32Into(dst []float32, dt DType, raw []byte) error {
	size, err := floatSize(dt)
	if err != nil {
		return err
	}
	if len(raw) != size*len(dst) {
		return fmt.Errorf("%d bytes of %s for %d elements", len(raw), dt, len(dst))
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		fp16.DecodeF16(dst, raw)
	case BF16:
		fp16.DecodeBF16(dst, raw)
	}
	return nil
}

// EncodeFloat32 converts float32 values to little-endian bytes of dtype dt
// (F32, F16 or BF16; 16-bit results are rounded to nearest even).
func EncodeFloat32(dt DType, src []float32) ([]byte, error) {
	size, err := floatSize(dt)
	if err != nil {
		return nil, err
	}
	out := make([]byte, size*len(src))
	switch dt {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		fp16.EncodeF16(out, src)
	case BF16:
		fp16.EncodeBF16(out, src)
	}
	return out, nil
}

// ErrNotFloat is returned (wrapped) when a dtype has no float32 conversion.
var ErrNotFloat = errors.New("only F32, F16 and BF16 convert to and from float32")

// FloatSize is the element size of a dtype that converts to and from
// float32 (F32, F16, BF16); any other is an error wrapping ErrNotFloat.
func FloatSize(dt DType) (int, error) { return floatSize(dt) }

func floatSize(dt DType) (int, error) {
	switch dt {
	case F32:
		return 4, nil
	case F16, BF16:
		return 2, nil
	}
	return 0, fmt.Errorf("dtype %s: %w", dt, ErrNotFloat)
}
