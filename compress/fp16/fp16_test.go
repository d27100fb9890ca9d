package fp16

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfValue is the oracle for a finite or infinite binary16 value, computed
// from the format's definition in float64 with no bit manipulation shared
// with the code under test.
func halfValue(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0x1f:
		return sign * math.Inf(1) // callers exclude NaN
	case 0:
		return sign * math.Ldexp(mant, -24)
	}
	return sign * math.Ldexp(1024+mant, exp-25)
}

func isHalfNaN(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }

func TestToFloat32AllHalves(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := ToFloat32(h)
		if isHalfNaN(h) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("ToFloat32(%#04x) = %v, want NaN", h, f)
			}
			// Sign and payload kept, quiet bit set (as F16C's VCVTPH2PS does).
			if got, want := math.Float32bits(f), uint32(h&0x8000)<<16|0x7fc00000|uint32(h&0x3ff)<<13; got != want {
				t.Fatalf("ToFloat32(%#04x) bits %#08x, want payload kept, quiet %#08x", h, got, want)
			}
			continue
		}
		if want := halfValue(h); float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("ToFloat32(%#04x) = %v, want %v", h, f, want)
		}
	}
}

// TestRoundTripAllHalves checks FromFloat32(ToFloat32(h)) == h for all 65536
// bit patterns; NaNs come back as NaNs with the same sign and payload and the
// quiet bit set.
func TestRoundTripAllHalves(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := FromFloat32(ToFloat32(h))
		want := h
		if isHalfNaN(h) {
			want = h | 0x0200
		}
		if got != want {
			t.Fatalf("FromFloat32(ToFloat32(%#04x)) = %#04x, want %#04x", h, got, want)
		}
	}
}

// TestHalfRoundingMidpoints checks, for every pair of adjacent non-negative
// halves a < b (with 65536, the first value that overflows, standing for
// the infinity after 65504), that the float32 exactly between them rounds
// to the one with an even mantissa, and that the float32 one ulp to either
// side rounds to the nearer one. Midpoints need 12 significant bits, so they
// are exact float32 values; negative values are checked by symmetry.
func TestHalfRoundingMidpoints(t *testing.T) {
	for a := uint16(0); a < 0x7c00; a++ {
		b := a + 1
		va, vb := halfValue(a), 65536.0
		if b != 0x7c00 {
			vb = halfValue(b)
		}
		mid := float32((va + vb) / 2)
		if float64(mid) != (va+vb)/2 {
			t.Fatalf("midpoint of %#04x and %#04x not exact in float32", a, b)
		}
		even := a
		if a&1 == 1 {
			even = b
		}
		below := math.Nextafter32(mid, 0)
		above := math.Nextafter32(mid, float32(math.Inf(1)))
		for _, c := range []struct {
			x    float32
			want uint16
		}{{mid, even}, {below, a}, {above, b}} {
			if got := FromFloat32(c.x); got != c.want {
				t.Fatalf("FromFloat32(%v) = %#04x, want %#04x", c.x, got, c.want)
			}
			if got := FromFloat32(-c.x); got != c.want|0x8000 {
				t.Fatalf("FromFloat32(%v) = %#04x, want %#04x", -c.x, got, c.want|0x8000)
			}
		}
	}
}

// nearestHalf is a search-based oracle: the non-negative half nearest to
// |x|, ties to even, 0x7c00 when |x| is at or beyond 65520.
func nearestHalf(x float32) uint16 {
	ax := math.Abs(float64(x))
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	if ax >= 65520 {
		return sign | 0x7c00
	}
	// First half whose value is >= ax; values grow with the bit pattern.
	i := sort.Search(0x7c00, func(i int) bool { return halfValue(uint16(i)) >= ax })
	if i == 0 || halfValue(uint16(i)) == ax {
		return sign | uint16(i)
	}
	lo, hi := uint16(i-1), uint16(i)
	dlo, dhi := ax-halfValue(lo), halfValue(hi)-ax
	switch {
	case dlo < dhi:
		return sign | lo
	case dhi < dlo:
		return sign | hi
	case lo&1 == 0:
		return sign | lo
	}
	return sign | hi
}

func TestFromFloat32RandomAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200000; n++ {
		var x float32
		if n%2 == 0 {
			// Any bit pattern: mostly huge or tiny magnitudes.
			x = math.Float32frombits(r.Uint32())
		} else {
			// Magnitudes in the half range, including its subnormals.
			x = float32(math.Ldexp(r.Float64(), r.IntN(46)-30))
			if r.IntN(2) == 0 {
				x = -x
			}
		}
		if math.IsNaN(float64(x)) {
			continue
		}
		if got, want := FromFloat32(x), nearestHalf(x); got != want {
			t.Fatalf("FromFloat32(%g [%#08x]) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
}

func TestFromFloat32Specials(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.996, 0x7bff},
		{65520, 0x7c00},
		{1e10, 0x7c00},
		{-1e10, 0xfc00},
		{inf, 0x7c00},
		{-inf, 0xfc00},
		{float32(math.Ldexp(1, -24)), 0x0001}, // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000}, // tie between 0 and 2^-24: even is 0
		{float32(math.Ldexp(1.5, -25)), 0x0001},
		{float32(math.Ldexp(3, -25)), 0x0002},      // tie between 1 and 2 units: even is 2
		{float32(math.Ldexp(1, -14)), 0x0400},      // smallest normal
		{float32(math.Ldexp(1023.5, -24)), 0x0400}, // largest subnormal rounds up into normals
		{math.Float32frombits(1), 0x0000},          // float32 subnormal
		{1 + float32(math.Ldexp(1, -11)), 0x3c00},  // tie 1 vs 1+2^-10: even is 1
		{1 + float32(math.Ldexp(3, -11)), 0x3c02},
	} {
		if got := FromFloat32(c.x); got != c.want {
			t.Errorf("FromFloat32(%g) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	// A signalling NaN whose payload lies entirely in the low 13 bits would
	// become an infinity if truncated; the quiet bit keeps it a NaN.
	for _, bits := range []uint32{0x7f800001, 0xff800001, 0x7fc00000, 0x7fbfffff} {
		h := FromFloat32(math.Float32frombits(bits))
		if !isHalfNaN(h) || (h&0x8000 != 0) != (bits&0x80000000 != 0) {
			t.Errorf("FromFloat32(NaN %#08x) = %#04x, want a NaN of the same sign", bits, h)
		}
	}
}

func bf16Value(b uint16) float64 {
	// bfloat16 is binary32 with 7 mantissa bits: 8-bit exponent, bias 127.
	sign := 1.0
	if b&0x8000 != 0 {
		sign = -1
	}
	exp := int(b>>7) & 0xff
	mant := float64(b & 0x7f)
	switch exp {
	case 0xff:
		return sign * math.Inf(1)
	case 0:
		return sign * math.Ldexp(mant, -133)
	}
	return sign * math.Ldexp(128+mant, exp-134)
}

func isBF16NaN(b uint16) bool { return b&0x7f80 == 0x7f80 && b&0x7f != 0 }

func TestBF16AllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		b := uint16(i)
		f := BF16ToFloat32(b)
		if isBF16NaN(b) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("BF16ToFloat32(%#04x) = %v, want NaN", b, f)
			}
			if got := BF16FromFloat32(f); got != b|0x40 {
				t.Fatalf("BF16FromFloat32(BF16ToFloat32(%#04x)) = %#04x, want %#04x", b, got, b|0x40)
			}
			continue
		}
		if want := bf16Value(b); float64(f) != want {
			t.Fatalf("BF16ToFloat32(%#04x) = %v, want %v", b, f, want)
		}
		if got := BF16FromFloat32(f); got != b {
			t.Fatalf("BF16FromFloat32(BF16ToFloat32(%#04x)) = %#04x", b, got)
		}
	}
}

// TestBF16RoundingMidpoints is the bfloat16 analogue of
// TestHalfRoundingMidpoints; beyond the largest finite bfloat16 the next
// step is 2^128, whose midpoint rounds to the infinity.
func TestBF16RoundingMidpoints(t *testing.T) {
	for a := uint16(0); a < 0x7f80; a++ {
		b := a + 1
		va, vb := bf16Value(a), math.Ldexp(1, 128)
		if b != 0x7f80 {
			vb = bf16Value(b)
		}
		midf := (va + vb) / 2
		var mid float32
		if midf >= math.MaxFloat32 {
			// The midpoint above the largest finite value is not a float32;
			// MaxFloat32 lies below it and must round down, and
			// anything that overflows float32 is already an infinity.
			if got := BF16FromFloat32(math.MaxFloat32); got != 0x7f7f {
				t.Fatalf("BF16FromFloat32(MaxFloat32) = %#04x, want 0x7f7f", got)
			}
			continue
		}
		mid = float32(midf)
		if float64(mid) != midf {
			t.Fatalf("midpoint of %#04x and %#04x not exact in float32", a, b)
		}
		even := a
		if a&1 == 1 {
			even = b
		}
		for _, c := range []struct {
			x    float32
			want uint16
		}{{mid, even}, {math.Nextafter32(mid, 0), a}, {math.Nextafter32(mid, float32(math.Inf(1))), b}} {
			if got := BF16FromFloat32(c.x); got != c.want {
				t.Fatalf("BF16FromFloat32(%g) = %#04x, want %#04x", c.x, got, c.want)
			}
			if got := BF16FromFloat32(-c.x); got != c.want|0x8000 {
				t.Fatalf("BF16FromFloat32(%g) = %#04x, want %#04x", -c.x, got, c.want|0x8000)
			}
		}
	}
	for _, bits := range []uint32{0x7f800001, 0xff800001, 0x7fc00000} {
		b := BF16FromFloat32(math.Float32frombits(bits))
		if !isBF16NaN(b) || (b&0x8000 != 0) != (bits&0x80000000 != 0) {
			t.Errorf("BF16FromFloat32(NaN %#08x) = %#04x, want a NaN of the same sign", bits, b)
		}
	}
}

func TestSliceHelpers(t *testing.T) {
	src := []float32{0, 1, -2, 0.5, 65504, float32(math.Inf(-1)), 3.140625}
	buf := make([]byte, 2*len(src))
	EncodeF16(buf, src)
	// 1.0 is 0x3c00, stored little-endian.
	if buf[2] != 0x00 || buf[3] != 0x3c {
		t.Fatalf("EncodeF16 not little-endian: % x", buf[2:4])
	}
	got := make([]float32, len(src))
	DecodeF16(got, buf)
	for i := range src {
		if got[i] != src[i] {
			t.Errorf("F16 value %d: got %v want %v", i, got[i], src[i])
		}
	}
	EncodeBF16(buf, src[:4])
	if buf[2] != 0x80 || buf[3] != 0x3f { // 1.0 is 0x3f80
		t.Fatalf("EncodeBF16 not little-endian: % x", buf[2:4])
	}
	DecodeBF16(got[:4], buf)
	for i := 0; i < 4; i++ {
		if got[i] != src[i] {
			t.Errorf("BF16 value %d: got %v want %v", i, got[i], src[i])
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("EncodeF16 into a short buffer did not panic")
		}
	}()
	EncodeF16(make([]byte, 3), src[:2])
}
