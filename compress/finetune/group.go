// Package finetune tunes the continuous parameters of compressed groups
// (decoders, codebooks, reshaped-layer-norm parameters, scales) with their
// codeword indices fixed, against any differentiable objective of the
// reconstructed weights: the output error of each layer on calibration
// inputs (OutputError), or the whole model's divergence from the original
// (see package pipeline). The parameters are kept in fp32 and every forward
// pass uses them rounded to the precision they are stored in, so the
// objective measured is the objective of the file that will be written.
package finetune

import (
	"fmt"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/metanet"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/vq"
)

// Group is one compressed group whose continuous parameters can be tuned.
type Group interface {
	// Shapes are the members' [rows, cols], in member order.
	Shapes() [][2]int
	// Params are the tunable values (fp32 master copies), changed in place
	// by the tuner.
	Params() []float32
	// Reconstruct rebuilds every member's dense weights ([rows*cols]) from
	// Params rounded to the stored precision.
	Reconstruct(k bindings.Kernels) ([][]float32, error)
	// Backward accumulates into grad (shaped like Params) the gradient of a
	// loss whose gradient with respect to member i's weights is dW[i].
	Backward(k bindings.Kernels, dW [][]float32, grad []float32) error
	// Commit rounds Params to the stored precision and writes them into the
	// result the group was made from.
	Commit()
}

// PocketLLM wraps a pocketllm result: decoder, codebook and scales are
// tunable. decoderF32 says the decoder MLPs are stored in fp32.
func PocketLLM(res *pocketllm.Result, shapes [][2]int, decoderF32 bool) (Group, error) {
	s := res.Shape
	if len(res.Decoder) != s.DecoderParams() || len(res.Codebook) != s.K*s.Latent || len(res.Scales) != len(shapes) {
		return nil, fmt.Errorf("finetune: pocketllm result does not match its shape %+v", s)
	}
	n := 0
	for _, sh := range shapes {
		n += sh[0] * s.E
	}
	if n != len(res.Indices) {
		return nil, fmt.Errorf("finetune: %d indices for members holding %d sub-vectors", len(res.Indices), n)
	}
	g := &pocketGroup{res: res, shapes: shapes, decoderF32: decoderF32}
	g.master = append(append(append([]float32(nil), res.Decoder...), res.Codebook...), res.Scales...)
	g.work = make([]float32, len(g.master))
	g.ws = metanet.NewWorkspace(s, min(maxRowsPerPass, maxMemberRows(shapes)))
	return g, nil
}

// maxRowsPerPass bounds the rows decoded at once when tuning.
const maxRowsPerPass = 4096

func maxMemberRows(shapes [][2]int) int {
	m := 1
	for _, sh := range shapes {
		m = max(m, sh[0])
	}
	return m
}

type pocketGroup struct {
	res          *pocketllm.Result
	shapes       [][2]int
	decoderF32   bool
	master, work []float32 // decoder | codebook | scales
	ws           *metanet.Workspace
	exact        bool // skip the rounding (gradient checks)
}

func (g *pocketGroup) Shapes() [][2]int  { return g.shapes }
func (g *pocketGroup) Params() []float32 { return g.master }

func (g *pocketGroup) views(p []float32) (metanet.Views, []float32) {
	s := g.res.Shape
	dp, cp := s.DecoderParams(), s.K*s.Latent
	v := metanet.Views{
		Decoder:  bindings.Decoder{E: s.E, Dim: s.Dim, Latent: s.Latent, Hidden: s.Hidden, P: p[:dp:dp]},
		Codebook: p[dp : dp+cp : dp+cp],
	}
	return v, p[dp+cp:]
}

// round copies p into dst at the stored precision (pocketllm.Result's
// rounding: fp16 codebook and norms, fp16 or fp32 decoder MLPs, fp32
// scales).
func (g *pocketGroup) round(dst, p []float32) {
	copy(dst, p)
	if g.exact {
		return
	}
	v, _ := g.views(dst)
	roundF16(v.Codebook)
	n1, d1, n2, d2, n3, d0 := v.Decoder.Parts()
	for _, r := range []bindings.RLN{n1, n2, n3} {
		roundF16(r.P)
	}
	if !g.decoderF32 {
		for _, m := range []bindings.MLP{d1, d2, d0} {
			roundF16(m.P)
		}
	}
}

func (g *pocketGroup) result(p []float32) *pocketllm.Result {
	v, scales := g.views(p)
	r := *g.res
	r.Decoder, r.Codebook, r.Scales = v.Decoder.P, v.Codebook, scales
	return &r
}

func (g *pocketGroup) Reconstruct(k bindings.Kernels) ([][]float32, error) {
	g.round(g.work, g.master)
	return pocketllm.Reconstruct(k, g.result(g.work), g.shapes)
}

func (g *pocketGroup) Backward(k bindings.Kernels, dW [][]float32, grad []float32) error {
	s := g.res.Shape
	v, scales := g.views(g.work)
	gv, gscales := g.views(grad)
	rowLen := s.E * s.Dim
	at := 0
	for m, sh := range g.shapes {
		rows, cols := sh[0], sh[1]
		scale := scales[m]
		var gs float64
		for r0 := 0; r0 < rows; r0 += maxRowsPerPass {
			n := min(maxRowsPerPass, rows-r0)
			idx := g.res.Indices[at+r0*s.E : at+(r0+n)*s.E]
			err := g.ws.DecodeGrad(k, v, gv, idx, n, func(xhat, dxhat []float32) error {
				for r := 0; r < n; r++ {
					d := dW[m][(r0+r)*cols : (r0+r+1)*cols]
					x := xhat[r*rowLen : (r+1)*rowLen]
					dx := dxhat[r*rowLen : (r+1)*rowLen]
					for c, dv := range d {
						gs += float64(dv) * float64(x[c])
						dx[c] = dv * scale
					}
					clear(dx[cols:])
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		gscales[m] += float32(gs)
		at += rows * s.E
	}
	return nil
}

func (g *pocketGroup) Commit() {
	g.round(g.work, g.master)
	r := g.result(append([]float32(nil), g.work...))
	g.res.Decoder, g.res.Codebook, g.res.Scales = r.Decoder, r.Codebook, r.Scales
}

// VQ wraps a vq result: the codebook and the scales are tunable.
func VQ(res *vq.Result, shapes [][2]int) (Group, error) {
	if len(res.Codebook) != res.K*res.Dim || len(res.Scales) != len(shapes) {
		return nil, fmt.Errorf("finetune: vq result does not match its settings")
	}
	n := 0
	for _, sh := range shapes {
		if sh[1] != res.Cols {
			return nil, fmt.Errorf("finetune: member of %d columns in a vq group of %d", sh[1], res.Cols)
		}
		n += sh[0] * res.E
	}
	if n != len(res.Indices) {
		return nil, fmt.Errorf("finetune: %d indices for members holding %d sub-vectors", len(res.Indices), n)
	}
	g := &vqGroup{res: res, shapes: shapes}
	g.master = append(append([]float32(nil), res.Codebook...), res.Scales...)
	g.work = make([]float32, len(g.master))
	return g, nil
}

type vqGroup struct {
	res          *vq.Result
	shapes       [][2]int
	master, work []float32 // codebook | scales
	exact        bool      // skip the rounding (gradient checks)
}

func (g *vqGroup) Shapes() [][2]int  { return g.shapes }
func (g *vqGroup) Params() []float32 { return g.master }

func (g *vqGroup) round(dst, p []float32) {
	copy(dst, p)
	if !g.exact {
		roundF16(dst[:g.res.K*g.res.Dim])
	}
}

func (g *vqGroup) result(p []float32) *vq.Result {
	r := *g.res
	kd := r.K * r.Dim
	r.Codebook, r.Scales = p[:kd:kd], p[kd:]
	return &r
}

func (g *vqGroup) Reconstruct(k bindings.Kernels) ([][]float32, error) {
	g.round(g.work, g.master)
	return vq.Reconstruct(g.result(g.work), g.shapes)
}

func (g *vqGroup) Backward(k bindings.Kernels, dW [][]float32, grad []float32) error {
	r := g.res
	kd := r.K * r.Dim
	cb, scales := g.work[:kd], g.work[kd:]
	gcb, gscales := grad[:kd], grad[kd:]
	at := 0
	for m, sh := range g.shapes {
		rows, cols := sh[0], sh[1]
		scale := scales[m]
		var gs float64
		for row := 0; row < rows; row++ {
			d := dW[m][row*cols : (row+1)*cols]
			for e := 0; e < r.E; e++ {
				j := int(r.Indices[at+row*r.E+e])
				c0 := e * r.Dim
				for t := 0; t < r.Dim && c0+t < cols; t++ {
					dv := d[c0+t]
					gs += float64(dv) * float64(cb[j*r.Dim+t])
					gcb[j*r.Dim+t] += dv * scale
				}
			}
		}
		gscales[m] += float32(gs)
		at += rows * r.E
	}
	return nil
}

func (g *vqGroup) Commit() {
	g.round(g.work, g.master)
	r := g.result(append([]float32(nil), g.work...))
	g.res.Codebook, g.res.Scales = r.Codebook, r.Scales
}

func roundF16(p []float32) {
	for i, v := range p {
		p[i] = fp16.ToFloat32(fp16.FromFloat32(v))
	}
}
