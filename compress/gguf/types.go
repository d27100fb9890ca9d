// Package gguf reads and writes GGUF files, the format llama.cpp and Ollama
// load, and maps them to and from the Hugging Face Llama-family tensors the
// rest of the tool works with.
//
// A GGUF file (versions 2 and 3, little-endian) is: the magic "GGUF", a
// uint32 version, a uint64 tensor count, a uint64 key/value count, the
// key/value pairs (the metadata), one descriptor per tensor (name, the
// dimensions innermost first, the ggml type, the offset in the data
// section), padding to the alignment (general.alignment, default 32), and
// the data section, each tensor at an offset that is a multiple of the
// alignment.
//
// Reading is bounded by the file's size: no count, length or offset is
// trusted before it is checked against the bytes that are left, so a
// corrupt or hostile file costs no more memory than its own size and is
// refused with a one-line error naming the file and the problem.
package gguf

import (
	"fmt"
	"math"
)

// Magic opens every GGUF file.
const Magic = "GGUF"

// Version is the version this package writes; 2 and 3 are read (they differ
// only in that 3 may be big-endian, which is refused).
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// ValueType is the type of a metadata value.
type ValueType uint32

// The metadata value types of the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// fixedSize is the encoded size of a scalar of type t; 0 for strings,
// arrays and unknown types.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize is the fewest bytes a value of type t occupies, which bounds
// how many elements an array can claim.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8 // the length
	case TypeArray:
		return 12 // element type and count
	}
	return t.fixedSize()
}

// Value is one metadata value, held so that it writes back bit for bit:
// integers, booleans and floats as their bits in Bits (a float32 as its 32
// bits), strings as their bytes (not necessarily UTF-8), arrays as their
// element type and items.
type Value struct {
	Type  ValueType
	Bits  uint64
	Str   string
	Elem  ValueType // arrays: the element type
	Items []Value   // arrays: the elements
}

// KV is one metadata key and its value.
type KV struct {
	Key   string
	Value Value
}

// Constructors for the values the writers use.

func Uint32(v uint32) Value   { return Value{Type: TypeUint32, Bits: uint64(v)} }
func Int32(v int32) Value     { return Value{Type: TypeInt32, Bits: uint64(uint32(v))} }
func Float32(v float32) Value { return Value{Type: TypeFloat32, Bits: uint64(math.Float32bits(v))} }
func Bool(v bool) Value {
	if v {
		return Value{Type: TypeBool, Bits: 1}
	}
	return Value{Type: TypeBool}
}
func String(s string) Value { return Value{Type: TypeString, Str: s} }

// Array returns an array of the given element type.
func Array(elem ValueType, items []Value) Value {
	return Value{Type: TypeArray, Elem: elem, Items: items}
}

// Uint returns an unsigned or non-negative signed integer value.
func (v Value) Uint() (uint64, bool) {
	switch v.Type {
	case TypeUint8, TypeUint16, TypeUint32, TypeUint64:
		return v.Bits, true
	case TypeInt8:
		return v.Bits, int8(v.Bits) >= 0
	case TypeInt16:
		return v.Bits, int16(v.Bits) >= 0
	case TypeInt32:
		return v.Bits, int32(v.Bits) >= 0
	case TypeInt64:
		return v.Bits, int64(v.Bits) >= 0
	}
	return 0, false
}

// Int returns an integer value as an int64 (a uint64 above MaxInt64 is
// refused).
func (v Value) Int() (int64, bool) {
	switch v.Type {
	case TypeInt8:
		return int64(int8(v.Bits)), true
	case TypeInt16:
		return int64(int16(v.Bits)), true
	case TypeInt32:
		return int64(int32(v.Bits)), true
	case TypeInt64:
		return int64(v.Bits), true
	case TypeUint8, TypeUint16, TypeUint32:
		return int64(v.Bits), true
	case TypeUint64:
		return int64(v.Bits), v.Bits <= math.MaxInt64
	}
	return 0, false
}

// Float returns a float32 or float64 value.
func (v Value) Float() (float64, bool) {
	switch v.Type {
	case TypeFloat32:
		return float64(math.Float32frombits(uint32(v.Bits))), true
	case TypeFloat64:
		return math.Float64frombits(v.Bits), true
	}
	return 0, false
}

// Strings returns the items of an array of strings.
func (v Value) Strings() ([]string, bool) {
	if v.Type != TypeArray || v.Elem != TypeString {
		return nil, false
	}
	out := make([]string, len(v.Items))
	for i, it := range v.Items {
		out[i] = it.Str
	}
	return out, true
}

// Float32s returns the items of an array of float32.
func (v Value) Float32s() ([]float32, bool) {
	if v.Type != TypeArray || v.Elem != TypeFloat32 {
		return nil, false
	}
	out := make([]float32, len(v.Items))
	for i, it := range v.Items {
		out[i] = math.Float32frombits(uint32(it.Bits))
	}
	return out, true
}

// Ints returns the items of an array of integers.
func (v Value) Ints() ([]int64, bool) {
	if v.Type != TypeArray {
		return nil, false
	}
	out := make([]int64, len(v.Items))
	for i, it := range v.Items {
		n, ok := it.Int()
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// Metadata is an ordered list of key/value pairs, as in the file.
type Metadata []KV

// Get returns the value of key.
func (m Metadata) Get(key string) (Value, bool) {
	for _, kv := range m {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return Value{}, false
}

// Set replaces the value of key, or appends the pair when key is absent.
func (m *Metadata) Set(key string, v Value) {
	for i := range *m {
		if (*m)[i].Key == key {
			(*m)[i].Value = v
			return
		}
	}
	*m = append(*m, KV{Key: key, Value: v})
}

// GGMLType is a tensor element type, numbered as ggml numbers them.
type GGMLType uint32

// The ggml types this package reads or writes. Other quantized types are
// named in errors (see typeNames) but not read.
const (
	GGMLF32  GGMLType = 0
	GGMLF16  GGMLType = 1
	GGMLQ8_0 GGMLType = 8
	GGMLI8   GGMLType = 24
	GGMLI16  GGMLType = 25
	GGMLI32  GGMLType = 26
	GGMLI64  GGMLType = 27
	GGMLF64  GGMLType = 28
	GGMLBF16 GGMLType = 30
)

// typeNames names every ggml type number in use, so that a refused type
// is named as llama.cpp names it.
var typeNames = map[GGMLType]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
	24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
	34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

func (t GGMLType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("ggml type %d", uint32(t))
}

// Q8_0 blocks: 32 weights as a float16 scale and 32 int8 quants.
const (
	q8Block     = 32
	q8BlockSize = 2 + q8Block
)

// layout returns the block length (elements) and block size (bytes) of a
// type this package reads.
func (t GGMLType) layout() (block, size int, ok bool) {
	switch t {
	case GGMLF32, GGMLI32:
		return 1, 4, true
	case GGMLF16, GGMLBF16, GGMLI16:
		return 1, 2, true
	case GGMLI8:
		return 1, 1, true
	case GGMLI64, GGMLF64:
		return 1, 8, true
	case GGMLQ8_0:
		return q8Block, q8BlockSize, true
	}
	return 0, 0, false
}
