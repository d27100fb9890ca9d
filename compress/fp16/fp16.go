// Package fp16 converts between float32 and the two 16-bit floating-point
// formats found in LLM checkpoints: IEEE 754 binary16 ("half", F16) and
// bfloat16 (BF16).
//
// Conversions to 16 bits round to nearest, ties to even, as IEEE 754's
// default rounding and every GPU's conversion instruction do, so that values
// written here equal those PyTorch or NumPy would write. Infinities are kept,
// overflow becomes an infinity, and NaNs stay NaNs: the sign and the leading
// payload bits are kept and the quiet bit is set, as hardware conversions do,
// because truncating a payload could otherwise turn a NaN into an infinity.
//
// The binary16 conversions are github.com/x448/float16's: measured side by
// side on weight-like values, the hand-written ones they replaced were no
// faster (BENCHMARKS.md, "Half precision"), and this package's tests hold the
// library to a float64 oracle on every half and every rounding midpoint.
// bfloat16 the library does not have, so those conversions are written here.
package fp16

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// FromFloat32 returns the IEEE binary16 value nearest to f, ties to even.
// Values whose magnitude rounds beyond the largest half (65504) become
// infinities, values too small become (signed) zero, and the half subnormals
// are produced exactly.
func FromFloat32(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// roundLow rounds the truncated value q given the discarded bits rem and the
// value of half a unit of q.
func roundLow(q, rem, half uint32) uint32 {
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// ToFloat32 returns the float32 equal to the IEEE binary16 value h. Every
// half is exactly representable; a NaN keeps its sign and payload and comes
// back quiet.
func ToFloat32(h uint16) float32 { return float16.Frombits(h).Float32() }

// BF16FromFloat32 returns the bfloat16 value nearest to f, ties to even.
// Overflow becomes an infinity; NaNs stay NaNs with the quiet bit set.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	return uint16(roundLow(b>>16, b&0xffff, 0x8000))
}

// BF16ToFloat32 returns the float32 equal to the bfloat16 value b (exact:
// bfloat16 is the upper half of a float32).
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// EncodeF16 writes len(src) halves to dst as little-endian bytes.
// It panics if len(dst) < 2*len(src).
func EncodeF16(dst []byte, src []float32) {
	checkLen("EncodeF16", len(dst), len(src))
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], FromFloat32(v))
	}
}

// DecodeF16 reads len(dst) little-endian halves from src.
// It panics if len(src) < 2*len(dst).
func DecodeF16(dst []float32, src []byte) {
	checkLen("DecodeF16", len(src), len(dst))
	for i := range dst {
		dst[i] = ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// EncodeBF16 writes len(src) bfloat16 values to dst as little-endian bytes.
// It panics if len(dst) < 2*len(src).
func EncodeBF16(dst []byte, src []float32) {
	checkLen("EncodeBF16", len(dst), len(src))
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], BF16FromFloat32(v))
	}
}

// DecodeBF16 reads len(dst) little-endian bfloat16 values from src.
// It panics if len(src) < 2*len(dst).
func DecodeBF16(dst []float32, src []byte) {
	checkLen("DecodeBF16", len(src), len(dst))
	for i := range dst {
		dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func checkLen(fn string, nbytes, nvalues int) {
	if nbytes < 2*nvalues {
		panic(fmt.Sprintf("fp16.%s: %d bytes cannot hold %d 16-bit values", fn, nbytes, nvalues))
	}
}
