package finetune

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/nearest"
	"pocketllm-native/compress/pocketllm"
)

// UpdateIndices re-picks the codeword indices of a vq group against the
// output error, with the codebook and scales fixed, the way GPTQ rounds
// (and GPTVQ quantises vectors): the columns of each member are taken d at a
// time; every row's sub-vector there gets the codeword nearest under the
// inverse Hessian's diagonal, and its error is carried into the columns not
// yet quantised through the Cholesky factor of H⁻¹, so later choices
// compensate for earlier ones. Nearest-codeword assignment, which vq
// training uses, ignores how inputs correlate; this does not. A member's new
// indices are kept only where they lower its output error, so the objective
// never rises. It reports whether any member changed.
func UpdateIndices(k bindings.Kernels, g Group, obj *OutputError) (bool, error) {
	vg, ok := g.(*vqGroup)
	if !ok {
		return false, fmt.Errorf("finetune: index update by error feedback needs a vq group")
	}
	r := vg.res
	vg.round(vg.work, vg.master)
	kd := r.K * r.Dim
	cb, scales := vg.work[:kd], vg.work[kd:]
	changed := false
	at := 0
	for m, sh := range vg.shapes {
		rows, cols := sh[0], sh[1]
		n := rows * r.E
		u, err := inverseCholesky(obj.h[m], cols)
		if err != nil {
			return false, fmt.Errorf("finetune: member %d: %w", m, err)
		}
		idx, err := assignWithFeedback(k, obj.orig[m], rows, cols, scales[m], cb, r.Dim, r.K, r.E, u)
		if err != nil {
			return false, err
		}
		old := append([]int32(nil), r.Indices[at:at+n]...)
		before, err := memberError(vg, obj, m, at)
		if err != nil {
			return false, err
		}
		copy(r.Indices[at:at+n], idx)
		after, err := memberError(vg, obj, m, at)
		if err != nil {
			return false, err
		}
		if after < before {
			changed = true
		} else {
			copy(r.Indices[at:at+n], old)
		}
		at += n
	}
	return changed, nil
}

// memberError is member m's term of the output error at the group's
// current (rounded) parameters and indices.
func memberError(g *vqGroup, obj *OutputError, m, at int) (float64, error) {
	r := g.res
	rows, cols := g.shapes[m][0], g.shapes[m][1]
	kd := r.K * r.Dim
	cb, scale := g.work[:kd], g.work[kd+m]
	e := make([]float32, rows*cols)
	for row := 0; row < rows; row++ {
		for c := 0; c < cols; c++ {
			j := int(r.Indices[at+row*r.E+c/r.Dim])
			e[row*cols+c] = cb[j*r.Dim+c%r.Dim]*scale - obj.orig[m][row*cols+c]
		}
	}
	return obj.quadratic(e, obj.h[m], rows, cols, nil)
}

// inverseCholesky returns the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU),
// row-major [n*n].
func inverseCholesky(h []float32, n int) ([]float64, error) {
	sym := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			sym.SetSym(i, j, (float64(h[i*n+j])+float64(h[j*n+i]))/2)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(sym) {
		return nil, fmt.Errorf("second-moment matrix is not positive definite after damping")
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, err
	}
	var chInv mat.Cholesky
	if !chInv.Factorize(&inv) {
		return nil, fmt.Errorf("inverse second-moment matrix is not positive definite")
	}
	var ut mat.TriDense
	chInv.UTo(&ut)
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			u[i*n+j] = ut.At(i, j)
		}
	}
	return u, nil
}

// assignWithFeedback quantises the scaled rows of w ([rows, cols]) block by
// block of dim columns, carrying each block's error forward (see
// UpdateIndices). Each block's nearest-codeword search runs on the
// backend's Assign, on coordinates scaled by 1/U[c][c] (the weighted
// distance as a plain one), with padding scaled by zero.
func assignWithFeedback(k bindings.Kernels, w []float32, rows, cols int, scale float32, cb []float32, dim, kk, e int, u []float64) ([]int32, error) {
	x := make([]float64, rows*cols)
	inv := 1 / float64(scale)
	for i, v := range w {
		x[i] = float64(v) * inv
	}
	idx := make([]int32, rows*e)
	zs := make([]float32, rows*dim)
	cs := make([]float32, kk*dim)
	bi := make([]int32, rows)
	for b := 0; b < e; b++ {
		c0 := b * dim
		wt := make([]float64, dim)
		for t := 0; t < dim && c0+t < cols; t++ {
			wt[t] = 1 / u[(c0+t)*cols+c0+t]
		}
		for j := 0; j < kk; j++ {
			for t := 0; t < dim; t++ {
				cs[j*dim+t] = float32(float64(cb[j*dim+t]) * wt[t])
			}
		}
		for r := 0; r < rows; r++ {
			for t := 0; t < dim; t++ {
				v := 0.0
				if c0+t < cols {
					v = x[r*cols+c0+t]
				}
				zs[r*dim+t] = float32(v * wt[t])
			}
		}
		if err := k.Assign(zs, rows, dim, cs, kk, bi, nil); err != nil {
			return nil, err
		}
		for r := 0; r < rows; r++ {
			j := int(bi[r])
			idx[r*e+b] = bi[r]
			xr := x[r*cols : (r+1)*cols]
			for t := 0; t < dim && c0+t < cols; t++ {
				c := c0 + t
				err := (xr[c] - float64(cb[j*dim+t])) / u[c*cols+c]
				ur := u[c*cols : (c+1)*cols]
				for c2 := c + 1; c2 < cols; c2++ {
					xr[c2] -= err * ur[c2]
				}
			}
		}
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("finetune: error feedback diverged")
		}
	}
	return idx, nil
}

// SearchIndices re-picks the codeword indices of a pocketllm group against
// the output error, with the decoder and codebook fixed. A decoded
// sub-vector depends on its whole row (the reshaped layer norms), so there
// is no closed-form error feedback as for vq; instead each sub-vector
// position in turn tries, in every row at once, each of the codewords
// nearest (in latent space) to the one it holds, and a row keeps a
// candidate only where the row's output error eᵀ H e falls. Rows are
// independent, so the objective never rises. It reports whether any index
// changed.
func SearchIndices(k bindings.Kernels, g Group, obj *OutputError, candidates, passes int) (bool, error) {
	pg, ok := g.(*pocketGroup)
	if !ok {
		return false, fmt.Errorf("finetune: index search needs a pocketllm group")
	}
	s := pg.res.Shape
	pg.round(pg.work, pg.master)
	v, scales := pg.views(pg.work)
	cand := nearest.Find(v.Codebook, v.Codebook, s.Latent, min(candidates, s.K-1), true)
	t := len(cand) / s.K
	changed := false
	at := 0
	for m, sh := range pg.shapes {
		rows, cols := sh[0], sh[1]
		idx := pg.res.Indices[at : at+rows*s.E]
		one := *pg.res
		one.Decoder, one.Codebook, one.Scales = v.Decoder.P, v.Codebook, scales[m:m+1]
		rowErrors := func(ix []int32, out []float64) error {
			one.Indices = ix
			w, err := pocketllm.Reconstruct(k, &one, [][2]int{{rows, cols}})
			if err != nil {
				return err
			}
			e := w[0]
			for i, x := range obj.orig[m] {
				e[i] -= x
			}
			_, err = obj.quadratic(e, obj.h[m], rows, cols, nil, out)
			return err
		}
		best := make([]float64, rows)
		if err := rowErrors(idx, best); err != nil {
			return false, err
		}
		trial := make([]int32, len(idx))
		errs := make([]float64, rows)
		for pass := 0; pass < max(1, passes); pass++ {
			for p := 0; p < s.E; p++ {
				for c := 0; c < t; c++ {
					copy(trial, idx)
					for r := 0; r < rows; r++ {
						trial[r*s.E+p] = cand[int(idx[r*s.E+p])*t+c]
					}
					if err := rowErrors(trial, errs); err != nil {
						return false, err
					}
					for r := 0; r < rows; r++ {
						if errs[r] < best[r] {
							best[r] = errs[r]
							idx[r*s.E+p] = trial[r*s.E+p]
							changed = true
						}
					}
				}
			}
		}
		at += rows * s.E
	}
	return changed, nil
}
