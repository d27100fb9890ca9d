package fp16

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// The half-precision conversions are hand-written although
// github.com/x448/float16 offers the same ones; this file is the
// measurement that decides it (see the package comment). bfloat16 the
// library does not have.

// weightLike returns n values distributed like LLM weights (normal, sigma
// 0.02), with a few subnormal and out-of-range ones among them.
func weightLike(n int) []float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.02)
		switch i % 97 {
		case 0:
			v[i] *= 1e-3 // a half subnormal
		case 1:
			v[i] *= 1e7 // beyond the largest half
		}
	}
	return v
}

// TestAgreesWithX448 checks that the library converts as ours does, so the
// benchmark below compares equal work: every half widened (NaNs aside: the
// library sets the quiet bit, ours keeps the payload as is), and a sample
// of float32 bit patterns narrowed.
func TestAgreesWithX448(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		if isHalfNaN(uint16(h)) {
			continue
		}
		if a, b := ToFloat32(uint16(h)), float16.Frombits(uint16(h)).Float32(); math.Float32bits(a) != math.Float32bits(b) {
			t.Fatalf("half %#04x: ours %v, x448 %v", h, a, b)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1<<20; i++ {
		f := math.Float32frombits(rng.Uint32())
		if a, b := FromFloat32(f), float16.Fromfloat32(f).Bits(); a != b {
			t.Fatalf("float32 %#08x: ours %#04x, x448 %#04x", math.Float32bits(f), a, b)
		}
	}
}

var sink uint16
var sinkF float32

func BenchmarkNarrow(b *testing.B) {
	v := weightLike(1 << 16)
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			for _, f := range v {
				sink ^= FromFloat32(f)
			}
		}
	})
	b.Run("x448", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			for _, f := range v {
				sink ^= float16.Fromfloat32(f).Bits()
			}
		}
	})
}

func BenchmarkWiden(b *testing.B) {
	v := weightLike(1 << 16)
	h := make([]uint16, len(v))
	for i, f := range v {
		h[i] = FromFloat32(f)
	}
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(2 * len(h)))
		for b.Loop() {
			for _, x := range h {
				sinkF += ToFloat32(x)
			}
		}
	})
	b.Run("x448", func(b *testing.B) {
		b.SetBytes(int64(2 * len(h)))
		for b.Loop() {
			for _, x := range h {
				sinkF += float16.Frombits(x).Float32()
			}
		}
	})
}
