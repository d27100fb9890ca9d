package metanet

import (
	"fmt"

	"pocketllm-native/bindings"
)

// Workspace holds every activation of one batch, sized for up to MaxRows
// weight rows, so that a training run allocates once.
type Workspace struct {
	s       Shape
	maxRows int

	// encoder
	pre0, pre1, pre2, preD1, preD2, preD0 []float32 // [B, Hidden]
	z0, t1, u1, z1, t2, u2, s2, z         []float32 // [B, Latent]
	m1, r1, m2, r2, m3, r3                []float32 // [rows]
	// assignment and decoder
	idx                  []int32
	dist                 []float32
	y0, a1, v1, y1, a2   []float32 // [B, Latent]
	v2, sd, y3           []float32
	n1m, n1r, n2m, n2r   []float32
	n3m, n3r             []float32
	sums                 []float64 // codebook statistics
	counts               []int64
	xhat                 []float32 // [B, Dim]
	dxhat                []float32
	g0, g1, g2, g3, gtmp []float32 // [B, Latent] gradients
}

// NewWorkspace allocates activations for batches of up to maxRows rows.
func NewWorkspace(s Shape, maxRows int) *Workspace {
	b := maxRows * s.E
	f := func(n int) []float32 { return make([]float32, n) }
	w := &Workspace{s: s, maxRows: maxRows}
	for _, p := range []*[]float32{&w.pre0, &w.pre1, &w.pre2, &w.preD1, &w.preD2, &w.preD0} {
		*p = f(b * s.Hidden)
	}
	for _, p := range []*[]float32{&w.z0, &w.t1, &w.u1, &w.z1, &w.t2, &w.u2, &w.s2, &w.z,
		&w.y0, &w.a1, &w.v1, &w.y1, &w.a2, &w.v2, &w.sd, &w.y3, &w.g0, &w.g1, &w.g2, &w.g3, &w.gtmp} {
		*p = f(b * s.Latent)
	}
	for _, p := range []*[]float32{&w.m1, &w.r1, &w.m2, &w.r2, &w.m3, &w.r3, &w.n1m, &w.n1r, &w.n2m, &w.n2r, &w.n3m, &w.n3r} {
		*p = f(maxRows)
	}
	w.idx = make([]int32, b)
	w.dist = f(b)
	w.sums = make([]float64, s.K*s.Latent)
	w.counts = make([]int64, s.K)
	w.xhat = f(b * s.Dim)
	w.dxhat = f(b * s.Dim)
	return w
}

// Encode runs the encoder over rows weight rows x ([rows*E, Dim]) and returns
// the latents ([rows*E, Latent], valid until the next call).
//
//	z = E0(x);      z = z + E1(Ne1(z));  z = Ne3(z + E2(Ne2(z)))
//	z = x + E0(x);  z = z + E1(Ne1(z));  z = z + E2(Ne2(z))       (Skip)
func (w *Workspace) Encode(k bindings.Kernels, v Views, x []float32, rows int) ([]float32, error) {
	b := rows * w.s.E
	lat := w.s.Latent
	steps := []func() error{
		func() error { return k.MLPForward(v.E0, x, b, w.pre0, w.z0) },
		func() error {
			if w.s.Skip {
				addTo(w.z0[:b*lat], x)
			}
			return nil
		},
		func() error { return k.RLNForward(v.Ne1, w.z0, rows, w.t1, w.m1, w.r1) },
		func() error { return k.MLPForward(v.E1, w.t1, b, w.pre1, w.u1) },
		func() error { add(w.z1[:b*lat], w.z0, w.u1); return nil },
		func() error { return k.RLNForward(v.Ne2, w.z1, rows, w.t2, w.m2, w.r2) },
		func() error { return k.MLPForward(v.E2, w.t2, b, w.pre2, w.u2) },
		func() error { add(w.s2[:b*lat], w.z1, w.u2); return nil },
		func() error {
			if w.s.Skip {
				copy(w.z[:b*lat], w.s2) // no final norm: the encoder starts as the identity
				return nil
			}
			return k.RLNForward(v.Ne3, w.s2, rows, w.z, w.m3, w.r3)
		},
	}
	if err := run(steps); err != nil {
		return nil, err
	}
	return w.z[:b*lat], nil
}

// Loss weights the terms of METHOD.md section 4.
type Loss struct {
	Lambda float64 // codebook term weight
	Beta   float64 // commitment term weight
}

// BatchLoss is what one training step measured.
type BatchLoss struct {
	Recon    float64 // MSE over real elements
	Codebook float64 // MSE(C[idx], z), unweighted
}

// Step runs the forward and backward pass of one batch and accumulates the
// gradient of
//
//	MSE(x_hat, x) over real elements + Lambda*MSE(C[idx], sg(z)) + Beta*MSE(z, sg(C[idx]))
//
// into grad (a vector shaped like the parameters, not cleared here). x is
// [rows*E, Dim] with zeros in padded positions; wts has x's shape and weighs
// each element's squared error (the reconstruction term is
// sum wts*(x_hat-x)^2 / sum wts): 1 for every real weight and 0 for padding
// gives the plain masked MSE, per-column importances give the
// calibration-aware loss. The straight-through estimator hands the gradient
// at C[idx] to z unchanged.
func (w *Workspace) Step(k bindings.Kernels, v, grad Views, x, wts []float32, rows int, loss Loss) (BatchLoss, error) {
	s := w.s
	b := rows * s.E
	lat := s.Latent
	z, err := w.Encode(k, v, x, rows)
	if err != nil {
		return BatchLoss{}, err
	}
	if err := k.Assign(z, b, lat, v.Codebook, s.K, w.idx, w.dist); err != nil {
		return BatchLoss{}, err
	}
	gather(w.y0[:b*lat], v.Codebook, w.idx[:b], lat)
	recon, err := w.decodeLoss(k, v, grad, x, wts, rows)
	if err != nil {
		return BatchLoss{}, err
	}
	var cb float64
	for _, q := range w.dist[:b] {
		cb += float64(q)
	}
	out := BatchLoss{Recon: recon, Codebook: cb / float64(b*lat)}

	// w.g0 holds dL/dy0, which the straight-through estimator hands to z; the
	// commitment term adds its pull of z towards its codeword.
	if loss.Beta != 0 {
		c := float32(2 * loss.Beta / float64(b*lat))
		for i := 0; i < b; i++ {
			cw := v.Codebook[int(w.idx[i])*lat:]
			for t := 0; t < lat; t++ {
				w.g0[i*lat+t] += c * (z[i*lat+t] - cw[t])
			}
		}
	}

	// Codebook term: d/dC_j of Lambda*mean((C[idx]-z)^2) = coef*(count_j*C_j - sum_j z).
	if loss.Lambda != 0 {
		if err := k.CodebookStats(z, b, lat, w.idx, s.K, w.sums, w.counts); err != nil {
			return BatchLoss{}, err
		}
		coef := 2 * loss.Lambda / float64(b*lat)
		for j, c := range w.counts {
			if c == 0 {
				continue
			}
			for t := 0; t < lat; t++ {
				o := j*lat + t
				grad.Codebook[o] += float32(coef * (float64(c)*float64(v.Codebook[o]) - w.sums[o]))
			}
		}
	}
	return out, w.encoderBackward(k, v, grad, x, rows, w.g0)
}

// decodeLoss runs the decoder from the codewords in w.y0, measures the
// weighted reconstruction MSE against x, accumulates the decoder's gradient
// into grad and leaves dL/dy0 in w.g0.
func (w *Workspace) decodeLoss(k bindings.Kernels, v, grad Views, x, wts []float32, rows int) (float64, error) {
	if err := w.decodeForward(k, v, rows); err != nil {
		return 0, err
	}
	n := rows * w.s.E * w.s.Dim
	var se, sw float64
	for _, wt := range wts[:n] {
		sw += float64(wt)
	}
	inv := float32(2 / sw)
	for i, wt := range wts[:n] {
		e := w.xhat[i] - x[i]
		se += float64(wt) * float64(e) * float64(e)
		w.dxhat[i] = inv * wt * e
	}
	return se / sw, w.decodeBackward(k, v, grad, rows)
}

// decodeForward runs the decoder from the codewords in w.y0 into w.xhat,
// keeping the activations decodeBackward needs.
func (w *Workspace) decodeForward(k bindings.Kernels, v Views, rows int) error {
	s := w.s
	b := rows * s.E
	lat := s.Latent
	n1, d1, n2, d2, n3, d0 := v.Decoder.Parts()
	return run([]func() error{
		func() error { return k.RLNForward(n1, w.y0, rows, w.a1, w.n1m, w.n1r) },
		func() error { return k.MLPForward(d1, w.a1, b, w.preD1, w.v1) },
		func() error { add(w.y1[:b*lat], w.y0, w.v1); return nil },
		func() error { return k.RLNForward(n2, w.y1, rows, w.a2, w.n2m, w.n2r) },
		func() error { return k.MLPForward(d2, w.a2, b, w.preD2, w.v2) },
		func() error { add(w.sd[:b*lat], w.y1, w.v2); return nil },
		func() error { return k.RLNForward(n3, w.sd, rows, w.y3, w.n3m, w.n3r) },
		func() error { return k.MLPForward(d0, w.y3, b, w.preD0, w.xhat) },
		func() error {
			if s.Skip {
				addTo(w.xhat[:b*s.Dim], w.y0)
			}
			return nil
		},
	})
}

// decodeBackward takes dL/dx_hat in w.dxhat (consumed), accumulates the
// decoder's gradient into grad and leaves dL/dy0 in w.g0.
func (w *Workspace) decodeBackward(k bindings.Kernels, v, grad Views, rows int) error {
	s := w.s
	b := rows * s.E
	lat := s.Latent
	n1, d1, n2, d2, n3, d0 := v.Decoder.Parts()
	gn1, gd1, gn2, gd2, gn3, gd0 := grad.Decoder.Parts()
	// g3 is the gradient at y3, then g2 at sd, g1 at y1, g0 at y0.
	return run([]func() error{
		func() error { return k.MLPBackward(d0, gd0, w.y3, w.preD0, w.dxhat, b, w.g3) },
		func() error { return k.RLNBackward(n3, gn3, w.sd, w.g3, rows, w.n3m, w.n3r, w.g2) },
		func() error { return k.MLPBackward(d2, gd2, w.a2, w.preD2, w.g2, b, w.gtmp) },
		func() error { return k.RLNBackward(n2, gn2, w.y1, w.gtmp, rows, w.n2m, w.n2r, w.g1) },
		func() error { addTo(w.g1[:b*lat], w.g2); return nil },
		func() error { return k.MLPBackward(d1, gd1, w.a1, w.preD1, w.g1, b, w.gtmp) },
		func() error { return k.RLNBackward(n1, gn1, w.y0, w.gtmp, rows, w.n1m, w.n1r, w.g0) },
		func() error {
			addTo(w.g0[:b*lat], w.g1)
			if s.Skip {
				addTo(w.g0[:b*lat], w.dxhat) // the identity path from y0 to x_hat
			}
			return nil
		},
	})
}

// DecodeGrad is the decoder's part of fine-tuning with the indices fixed:
// it decodes rows weight rows from their codeword indices idx ([rows*E])
// into xhat ([rows*E, Dim], padding included), then calls dLoss, which must
// fill dxhat (same shape) with the gradient of the caller's loss at xhat,
// and accumulates the gradient of that loss with respect to the decoder and
// the codebook into grad (Decoder and Codebook views; the encoder views are
// not touched). The straight-through path is not involved: with fixed
// indices each codeword's gradient is the sum over its uses.
func (w *Workspace) DecodeGrad(k bindings.Kernels, v, grad Views, idx []int32, rows int, dLoss func(xhat, dxhat []float32) error) error {
	s := w.s
	b := rows * s.E
	lat := s.Latent
	if rows > w.maxRows || len(idx) < b {
		return fmt.Errorf("metanet: %d rows (%d indices) for a workspace of %d rows", rows, len(idx), w.maxRows)
	}
	gather(w.y0[:b*lat], v.Codebook, idx[:b], lat)
	if err := w.decodeForward(k, v, rows); err != nil {
		return err
	}
	if err := dLoss(w.xhat[:b*s.Dim], w.dxhat[:b*s.Dim]); err != nil {
		return err
	}
	if err := w.decodeBackward(k, v, grad, rows); err != nil {
		return err
	}
	for i, j := range idx[:b] {
		g := grad.Codebook[int(j)*lat : (int(j)+1)*lat]
		for t, x := range w.g0[i*lat : (i+1)*lat] {
			g[t] += x
		}
	}
	return nil
}

// encoderBackward accumulates the encoder's gradient into grad given dL/dz
// (dz, consumed) for the batch last passed to Encode.
func (w *Workspace) encoderBackward(k bindings.Kernels, v, grad Views, x []float32, rows int, dz []float32) error {
	b := rows * w.s.E
	lat := w.s.Latent
	// g2 is the gradient at s2, g1 at z1, g3 at z0.
	steps := []func() error{
		func() error {
			if w.s.Skip {
				copy(w.g2[:b*lat], dz)
				return nil
			}
			return k.RLNBackward(v.Ne3, grad.Ne3, w.s2, dz, rows, w.m3, w.r3, w.g2)
		},
		func() error { return k.MLPBackward(v.E2, grad.E2, w.t2, w.pre2, w.g2, b, w.gtmp) },
		func() error { return k.RLNBackward(v.Ne2, grad.Ne2, w.z1, w.gtmp, rows, w.m2, w.r2, w.g1) },
		func() error { addTo(w.g1[:b*lat], w.g2); return nil },
		func() error { return k.MLPBackward(v.E1, grad.E1, w.t1, w.pre1, w.g1, b, w.gtmp) },
		func() error { return k.RLNBackward(v.Ne1, grad.Ne1, w.z0, w.gtmp, rows, w.m1, w.r1, w.g3) },
		func() error { addTo(w.g3[:b*lat], w.g1); return nil },
		func() error { return k.MLPBackward(v.E0, grad.E0, x, w.pre0, w.g3, b, nil) },
	}
	return run(steps) // the identity path around E0 ends at the input: nothing to propagate
}

// Indices are the codeword indices the last Step or Encode+Assign chose.
func (w *Workspace) Indices(rows int) []int32 { return w.idx[:rows*w.s.E] }

func run(steps []func() error) error {
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func gather(dst, codebook []float32, idx []int32, lat int) {
	for i, j := range idx {
		copy(dst[i*lat:(i+1)*lat], codebook[int(j)*lat:(int(j)+1)*lat])
	}
}

func add(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func addTo(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}
