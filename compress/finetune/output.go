package finetune

import (
	"fmt"
	"math"

	"pocketllm-native/bindings"
)

// Damping is added to the diagonal of every second-moment matrix, as a
// fraction of its mean diagonal, so the output error is well posed even for
// inputs the calibration text never excites (GPTQ uses the same 1%).
const Damping = 0.01

// OutputError is the error of each layer's output on calibration inputs,
// relative to the output itself:
//
//	sum over members m of tr((Ŵm - Wm) Hm (Ŵm - Wm)ᵀ)  /  sum over m of tr(Wm Hm Wmᵀ)
//
// where Hm = E[x xᵀ] over the inputs x member m reads (plus Damping). With
// one group it is a group's Objective; it is deterministic, so the tuner
// keeps the best step by it.
type OutputError struct {
	k     bindings.Kernels // runs the products E·H
	orig  [][]float32      // per member, [rows*cols]
	h     [][]float32      // per member, [cols*cols], damped
	shape [][2]int
	denom float64
}

// NewOutputError builds the objective of one group: orig[m] are member m's
// original weights of shape shapes[m], second[m] its input's second moment
// ([cols*cols], row-major, symmetric; nil weighs every input alike).
func NewOutputError(k bindings.Kernels, orig [][]float32, shapes [][2]int, second [][]float64) (*OutputError, error) {
	o := &OutputError{k: k, orig: orig, shape: shapes}
	for m, sh := range shapes {
		cols := sh[1]
		if len(orig[m]) != sh[0]*cols {
			return nil, fmt.Errorf("finetune: member %d has %d weights for shape %v", m, len(orig[m]), sh)
		}
		o.h = append(o.h, Damped(second[m], cols))
		if o.h[m] == nil {
			return nil, fmt.Errorf("finetune: member %d: second moment of %d values for %d inputs", m, len(second[m]), cols)
		}
		q, err := o.quadratic(orig[m], o.h[m], sh[0], cols, nil)
		if err != nil {
			return nil, err
		}
		o.denom += q
	}
	if !(o.denom > 0) {
		return nil, fmt.Errorf("finetune: the group's output is zero on the calibration inputs")
	}
	return o, nil
}

// Damped returns h ([n*n]) in float32 with Damping times its mean diagonal
// added to the diagonal; nil h gives the identity. It returns nil when h has
// the wrong size or is not finite.
func Damped(h []float64, n int) []float32 {
	out := make([]float32, n*n)
	if h == nil {
		for i := 0; i < n; i++ {
			out[i*n+i] = 1
		}
		return out
	}
	if len(h) != n*n {
		return nil
	}
	var tr float64
	for i := 0; i < n; i++ {
		tr += h[i*n+i]
	}
	d := Damping * tr / float64(n)
	if d == 0 {
		d = 1
	}
	for i, v := range h {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		out[i] = float32(v)
	}
	for i := 0; i < n; i++ {
		out[i*n+i] += float32(d)
	}
	return out
}

// Loss implements Objective for a single group (w[0]).
func (o *OutputError) Loss(_ int, w, dW [][][]float32) (float64, error) {
	if len(w) != 1 {
		return 0, fmt.Errorf("finetune: output error of one group given %d", len(w))
	}
	return o.Value(w[0], dW[0])
}

// Value is the objective at the members' weights w; when dW is not nil it
// also sets dW to the gradient.
func (o *OutputError) Value(w, dW [][]float32) (float64, error) {
	var num float64
	for m, sh := range o.shape {
		rows, cols := sh[0], sh[1]
		e := make([]float32, rows*cols)
		for i, v := range w[m] {
			e[i] = v - o.orig[m][i]
		}
		var g []float32
		if dW != nil {
			g = dW[m]
		}
		q, err := o.quadratic(e, o.h[m], rows, cols, g)
		if err != nil {
			return 0, err
		}
		num += q
		if g != nil {
			s := float32(2 / o.denom)
			for i := range g {
				g[i] *= s
			}
		}
	}
	return num / o.denom, nil
}

// quadratic is sum over rows r of e_r H e_rᵀ, with e H on the backend's
// matrix product (stored in eh when it is not nil); the sums are taken in
// order, so the result is the backend's alone. perRow, when not nil,
// receives each row's term.
func (o *OutputError) quadratic(e, h []float32, rows, cols int, eh []float32, perRow ...[]float64) (float64, error) {
	if eh == nil {
		eh = make([]float32, rows*cols)
	}
	if err := o.k.Gemm(false, false, rows, cols, cols, 1, e, h, 0, eh); err != nil {
		return 0, err
	}
	var s float64
	for r := 0; r < rows; r++ {
		var rs float64
		for i := r * cols; i < (r+1)*cols; i++ {
			rs += float64(e[i]) * float64(eh[i])
		}
		if len(perRow) > 0 {
			perRow[0][r] = rs
		}
		s += rs
	}
	return s, nil
}
