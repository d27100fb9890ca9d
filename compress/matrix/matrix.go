// Package matrix holds what every compression method (pocketllm, vq, rtn)
// and the pipeline share about a weight matrix: the matrix itself, its
// optional per-column loss weights, and the error measure the reports use.
// It sits below the methods so that none of them imports another.
package matrix

import (
	"fmt"
	"math"
)

// Matrix is one weight matrix, [Rows, Cols] row-major.
type Matrix struct {
	Name       string
	Rows, Cols int
	Data       []float32
	// ColWeight, when set, weighs each input column's squared error in the
	// training loss (e.g. the mean square of that input's activation on
	// calibration text); nil weighs every weight alike.
	ColWeight []float32
}

// NormalizedWeights scales importances to mean 1, so a weighted loss has
// the scale of the plain MSE and one learning rate serves both.
func NormalizedWeights(w []float32) []float32 {
	var s float64
	for _, v := range w {
		s += float64(v)
	}
	out := make([]float32, len(w))
	for i, v := range w {
		out[i] = float32(float64(v) * float64(len(w)) / s)
	}
	return out
}

// CheckColWeight reports column weights w for a matrix of cols columns
// that are neither nil nor cols finite non-negative values with a positive
// sum (what NormalizedWeights needs). The message names no matrix; callers
// add that.
func CheckColWeight(w []float32, cols int) error {
	if w == nil {
		return nil
	}
	if len(w) != cols {
		return fmt.Errorf("%d column weights for %d columns", len(w), cols)
	}
	var sum float64
	for c, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("column weight %v at column %d: need a finite value >= 0", v, c)
		}
		sum += float64(v)
	}
	if sum == 0 {
		return fmt.Errorf("column weights are all zero")
	}
	return nil
}

// NMSE is ||ref - got||^2 / ||ref||^2 (0 when both are zero).
func NMSE(ref, got []float32) float64 {
	var num, den float64
	for i, r := range ref {
		d := float64(r) - float64(got[i])
		num += d * d
		den += float64(r) * float64(r)
	}
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return num / den
}
