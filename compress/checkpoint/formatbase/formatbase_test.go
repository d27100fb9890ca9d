package formatbase

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestByteLen(t *testing.T) {
	for _, c := range []struct {
		info TensorInfo
		want int64
		err  string
	}{
		{TensorInfo{Name: "s", DType: F32}, 4, ""},
		{TensorInfo{Name: "m", DType: BF16, Shape: []int{3, 5}}, 30, ""},
		{TensorInfo{Name: "z", DType: I64, Shape: []int{7, 0, 1 << 60}}, 0, ""},
		{TensorInfo{Name: "u", DType: "Q4", Shape: []int{2}}, 0, `"u": unsupported dtype "Q4"`},
		{TensorInfo{Name: "n", DType: U8, Shape: []int{2, -1}}, 0, "negative dimension"},
		{TensorInfo{Name: "o", DType: F64, Shape: []int{1 << 30, 1 << 30}}, 0, "larger than"},
		{TensorInfo{Name: "w", DType: U8, Shape: []int{math.MaxInt, 2}}, 0, "larger than"},
	} {
		got, err := c.info.ByteLen()
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%+v: ByteLen = %d, %v; want %d", c.info, got, err, c.want)
			}
			if c.info.NumElements()*mustSize(c.info.DType) != int(c.want) {
				t.Errorf("%+v: NumElements inconsistent with ByteLen", c.info)
			}
		} else if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: err = %v, want %q", c.info, err, c.err)
		}
	}
}

func mustSize(d DType) int {
	n, _ := d.Size()
	return n
}

func TestDTypeSize(t *testing.T) {
	for d, want := range map[DType]int{F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8E4M3: 1, C64: 8} {
		if got, ok := d.Size(); !ok || got != want {
			t.Errorf("%s.Size() = %d, %v; want %d", d, got, ok, want)
		}
	}
	for _, d := range []DType{"", "F4", "f32", "Q8_0"} {
		if _, ok := d.Size(); ok {
			t.Errorf("%q.Size() reported known", d)
		}
	}
}

func TestFloatConversions(t *testing.T) {
	vals := []float32{1, -2.5, 0, 65504, 1e-7}
	for _, dt := range []DType{F32, F16, BF16} {
		raw, err := EncodeFloat32(dt, vals)
		if err != nil {
			t.Fatal(err)
		}
		size, _ := dt.Size()
		if len(raw) != size*len(vals) {
			t.Fatalf("%s: %d bytes for %d values", dt, len(raw), len(vals))
		}
		back, err := DecodeFloat32(dt, raw)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := EncodeFloat32(dt, back)
		if string(again) != string(raw) {
			t.Errorf("%s: decode/encode does not reproduce the bytes", dt)
		}
		if back[0] != 1 || back[1] != -2.5 {
			t.Errorf("%s: exact values changed: %v", dt, back[:2])
		}
	}
	if b, _ := EncodeFloat32(F32, []float32{1}); string(b) != "\x00\x00\x80\x3f" {
		t.Errorf("F32 not little-endian: % x", b)
	}
	if _, err := DecodeFloat32(I32, make([]byte, 4)); !errors.Is(err, ErrNotFloat) {
		t.Errorf("DecodeFloat32(I32): %v", err)
	}
	if _, err := EncodeFloat32(F64, []float32{1}); !errors.Is(err, ErrNotFloat) {
		t.Errorf("EncodeFloat32(F64): %v", err)
	}
	if _, err := DecodeFloat32(F16, make([]byte, 3)); err == nil {
		t.Error("DecodeFloat32 accepted a partial element")
	}
}
