package matrix

import (
	"math"
	"strings"
	"testing"
)

func TestNMSE(t *testing.T) {
	for _, c := range []struct {
		ref, got []float32
		want     float64
	}{
		{[]float32{3, 4}, []float32{3, 4}, 0},
		{[]float32{3, 4}, []float32{0, 0}, 1},
		{[]float32{3, 4}, []float32{3, 5}, 1.0 / 25},
		{[]float32{0, 0}, []float32{0, 0}, 0},
		{[]float32{0, 0}, []float32{0, 1}, math.Inf(1)},
	} {
		if got := NMSE(c.ref, c.got); got != c.want {
			t.Errorf("NMSE(%v, %v) = %v, want %v", c.ref, c.got, got, c.want)
		}
	}
}

func TestNormalizedWeightsHaveMeanOne(t *testing.T) {
	w := NormalizedWeights([]float32{1, 3, 0, 4})
	want := []float32{0.5, 1.5, 0, 2}
	for i := range want {
		if w[i] != want[i] {
			t.Fatalf("NormalizedWeights = %v, want %v", w, want)
		}
	}
}

func TestCheckColWeight(t *testing.T) {
	if err := CheckColWeight(nil, 3); err != nil {
		t.Errorf("nil weights: %v", err)
	}
	if err := CheckColWeight([]float32{0, 1, 2}, 3); err != nil {
		t.Errorf("valid weights: %v", err)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		w    []float32
		want string
	}{
		{[]float32{1, 1}, "2 column weights for 3 columns"},
		{[]float32{1, nan, 1}, "column weight NaN at column 1"},
		{[]float32{1, 1, inf}, "column weight +Inf at column 2"},
		{[]float32{1, -1, 1}, "column weight -1 at column 1"},
		{[]float32{0, 0, 0}, "all zero"},
	} {
		err := CheckColWeight(c.w, 3)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckColWeight(%v): %v, want an error containing %q", c.w, err, c.want)
		}
	}
}
