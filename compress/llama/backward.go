package llama

import (
	"fmt"
	"math"
)

// LayerBackward carries dOut [T, hidden], the gradient of a loss with
// respect to the output of the forward pass that made c, back through the
// layer w (the weights that pass used). It adds the gradients of every
// weight into grad (zero it first, or let it sum over several sequences;
// a nil weight in grad is not computed, e.g. for a frozen one) and returns
// the gradient with respect to the layer's input.
func (s *Seq[F]) LayerBackward(w *LayerParams[F], c *LayerCache[F], dOut []F, grad *LayerParams[F]) ([]F, error) {
	if err := s.checkLayer(w, false); err != nil {
		return nil, err
	}
	if err := s.checkLayer(grad, true); err != nil {
		return nil, fmt.Errorf("%w (gradient)", err)
	}
	if len(dOut) != len(c.Out) {
		return nil, fmt.Errorf("llama: layer output gradient has %d values, want %d", len(dOut), len(c.Out))
	}
	T, hidden, inter, qDim, kvDim := c.T, s.hidden, s.inter, s.qDim, s.kvDim
	mm := s.mm
	// addGrad adds dy^T x to g [rows, cols], the gradient of a weight whose
	// output gradient is dy [T, rows] and input x [T, cols].
	addGrad := func(g, dy, x []F, rows, cols int) error {
		if g == nil {
			return nil
		}
		return mm.Gemm(true, false, rows, cols, T, 1, dy, x, 1, g)
	}

	// MLP: Out = mid + act Down^T, act = silu(gate) * up.
	dAct := make([]F, T*inter)
	if err := mm.Gemm(false, false, T, inter, hidden, 1, dOut, w.Down, 0, dAct); err != nil {
		return nil, err
	}
	if err := addGrad(grad.Down, dOut, c.act, hidden, inter); err != nil {
		return nil, err
	}
	dGate, dUp := dAct, make([]F, T*inter) // dGate overwrites dAct in place
	for i, g := range c.gate {
		sg := sigmoid(g)
		dUp[i] = dAct[i] * (g * sg)
		dGate[i] = dAct[i] * c.up[i] * (sg * (1 + g*(1-sg)))
	}
	if err := addGrad(grad.Gate, dGate, c.xn2, inter, hidden); err != nil {
		return nil, err
	}
	if err := addGrad(grad.Up, dUp, c.xn2, inter, hidden); err != nil {
		return nil, err
	}
	dXn := make([]F, T*hidden)
	if err := mm.Gemm(false, false, T, hidden, inter, 1, dGate, w.Gate, 0, dXn); err != nil {
		return nil, err
	}
	if err := mm.Gemm(false, false, T, hidden, inter, 1, dUp, w.Up, 1, dXn); err != nil {
		return nil, err
	}
	dMid := append([]F(nil), dOut...) // the residual path
	s.rmsNormBackward(dMid, grad.MLPNorm, dXn, c.mid, c.r2, w.MLPNorm)

	// Attention: mid = In + att O^T.
	dAtt := make([]F, T*qDim)
	if err := mm.Gemm(false, false, T, qDim, hidden, 1, dMid, w.O, 0, dAtt); err != nil {
		return nil, err
	}
	if err := addGrad(grad.O, dMid, c.att, hidden, qDim); err != nil {
		return nil, err
	}
	dq, dk, dv := s.attentionBackward(c, dAtt)
	s.rope(dq, c.rot, true)
	s.rope(dk, c.rot, true)
	for _, p := range []struct {
		dy, w, g []F
		out      int
	}{{dq, w.Q, grad.Q, qDim}, {dk, w.K, grad.K, kvDim}, {dv, w.V, grad.V, kvDim}} {
		if err := addGrad(p.g, p.dy, c.xn1, p.out, hidden); err != nil {
			return nil, err
		}
	}
	if err := mm.Gemm(false, false, T, hidden, qDim, 1, dq, w.Q, 0, dXn); err != nil {
		return nil, err
	}
	if err := mm.Gemm(false, false, T, hidden, kvDim, 1, dk, w.K, 1, dXn); err != nil {
		return nil, err
	}
	if err := mm.Gemm(false, false, T, hidden, kvDim, 1, dv, w.V, 1, dXn); err != nil {
		return nil, err
	}
	dX := dMid // the residual path again
	s.rmsNormBackward(dX, grad.AttnNorm, dXn, c.In, c.r1, w.AttnNorm)
	return dX, nil
}

// rmsNormBackward carries dy back through dst = rmsNorm(x, w) row by row
// (r holding each row's inverse RMS): it adds the input's gradient into dx
// and the weight's into dw (unless dw is nil). With y_i = w_i x_i r and
// r = (mean(x^2) + eps)^(-1/2):
//
//	dx_i = r w_i dy_i - x_i r^3/n sum_j w_j dy_j x_j,  dw_i = sum_t dy_i x_i r.
func (s *Seq[F]) rmsNormBackward(dx, dw, dy, x, r, w []F) {
	n := s.hidden
	for t, rt := range r {
		xr, dyr, dxr := x[t*n:(t+1)*n], dy[t*n:(t+1)*n], dx[t*n:(t+1)*n]
		var sum float64
		for i, d := range dyr {
			sum += float64(w[i] * d * xr[i])
		}
		if dw != nil {
			for i, d := range dyr {
				dw[i] += d * (xr[i] * rt)
			}
		}
		k := F(sum * float64(rt) * float64(rt) * float64(rt) / float64(n))
		for i, d := range dyr {
			dxr[i] += rt*w[i]*d - xr[i]*k
		}
	}
}

// attentionBackward carries dAtt [T, qDim] back through the attention of
// c to the rotated queries and keys and the values. With P = softmax(S),
// S = scale q k^T (causal) and att = P v:
//
//	dP = dAtt v^T, dS = P (dP - rowsum(P dP)), dq = scale dS k,
//	dk = scale dS^T q, dv = P^T dAtt,
//
// dk and dv summing over the query heads that share a key/value head.
// Under a sliding window, only the keys inside each query's window take
// part (the rest have P = 0 and were masked).
// Rows of dq (one task per head and block of queries), then rows of dk and
// dv (one task per key/value head and block of keys) are written by one
// task each, summed in a fixed order: the same bytes for any split.
func (s *Seq[F]) attentionBackward(c *LayerCache[F], dAtt []F) (dq, dk, dv []F) {
	T, hd, qDim, kvDim := c.T, s.headDim, s.qDim, s.kvDim
	group := s.heads / s.kv
	scale := F(1 / math.Sqrt(float64(hd)))
	dq, dk, dv = make([]F, T*qDim), make([]F, T*kvDim), make([]F, T*kvDim)
	dS := make([]F, s.heads*T*T)
	blocks := (T + attentionRows - 1) / attentionRows
	work := s.heads * T * T * hd
	parallelTasks(s.heads*blocks, work, func(task int) {
		h, i0 := task/blocks, (task%blocks)*attentionRows
		kvOff := (h / group) * hd
		for i := i0; i < min(i0+attentionRows, T); i++ {
			do := dAtt[i*qDim+h*hd : i*qDim+(h+1)*hd]
			lo := windowStart(i, c.window)
			p := c.probs[(h*T+i)*T+lo : (h*T+i)*T+i+1]
			ds := dS[(h*T+i)*T+lo : (h*T+i)*T+i+1]
			kv := lo * kvDim // ds[j] is position lo+j
			var pdp float64
			for j := range ds {
				ds[j] = dotF(do, c.v[kv+j*kvDim+kvOff:kv+j*kvDim+kvOff+hd])
				pdp += float64(p[j] * ds[j])
			}
			q := dq[i*qDim+h*hd : i*qDim+(h+1)*hd]
			for j := range ds {
				ds[j] = p[j] * (ds[j] - F(pdp))
				k := c.k[kv+j*kvDim+kvOff:][:len(q)]
				for d := range q {
					q[d] += ds[j] * k[d]
				}
			}
			for d := range q {
				q[d] *= scale
			}
		}
	})
	parallelTasks(s.kv*blocks, work, func(task int) {
		g, j0 := task/blocks, (task%blocks)*attentionRows
		j1 := min(j0+attentionRows, T)
		kvOff := g * hd
		for h := g * group; h < (g+1)*group; h++ {
			for i := j0; i < T; i++ {
				if windowStart(i, c.window) >= j1 {
					break // this and every later query's window starts past the block
				}
				q := c.q[i*qDim+h*hd : i*qDim+(h+1)*hd]
				do := dAtt[i*qDim+h*hd:][:len(q)]
				row := (h*T + i) * T
				// Keys before the query's window got no attention.
				for j := max(j0, windowStart(i, c.window)); j < min(j1, i+1); j++ {
					sv, pv := dS[row+j], c.probs[row+j]
					k := dk[j*kvDim+kvOff:][:len(q)]
					v := dv[j*kvDim+kvOff:][:len(q)]
					for d := range q {
						k[d] += sv * q[d]
						v[d] += pv * do[d]
					}
				}
			}
		}
		for j := j0; j < j1; j++ {
			k := dk[j*kvDim+kvOff : j*kvDim+kvOff+hd]
			for d := range k {
				k[d] *= scale
			}
		}
	})
	return dq, dk, dv
}

// Backward carries dLogits [T, vocab], the gradient of a loss with respect
// to the logits of the forward pass that made c, back through the model p
// (the weights that pass used). It adds the gradients of every weight into
// grad (shaped like p, e.g. p.ZeroLike(); a nil weight in grad is not
// computed): the layers, the final norm, the head (into grad.Embed when
// tied) and the embedding rows of the tokens.
func (s *Seq[F]) Backward(p *Params[F], c *Cache[F], dLogits []F, grad *Params[F]) error {
	if err := s.checkParams(p, false); err != nil {
		return err
	}
	if err := s.checkParams(grad, true); err != nil {
		return fmt.Errorf("%w (gradient)", err)
	}
	if p.LMHead == nil && grad.LMHead != nil {
		return fmt.Errorf("llama: the model's head is tied to the embeddings, so the gradient's LMHead must be nil (the head's gradient goes to Embed)")
	}
	if len(dLogits) != len(c.Logits) {
		return fmt.Errorf("llama: logits gradient has %d values, want %d", len(dLogits), len(c.Logits))
	}
	T, hidden, vocab := len(c.Tokens), s.hidden, s.cfg.VocabSize
	dXn := make([]F, T*hidden)
	if err := s.mm.Gemm(false, false, T, hidden, vocab, 1, dLogits, p.head(), 0, dXn); err != nil {
		return err
	}
	gHead := grad.LMHead
	if p.LMHead == nil {
		gHead = grad.Embed
	}
	if gHead != nil {
		if err := s.mm.Gemm(true, false, vocab, hidden, T, 1, dLogits, c.xnF, 1, gHead); err != nil {
			return err
		}
	}
	dX := make([]F, T*hidden)
	s.rmsNormBackward(dX, grad.Norm, dXn, c.final, c.rF, p.Norm)
	for l := len(p.Layers) - 1; l >= 0; l-- {
		var err error
		if dX, err = s.LayerBackward(&p.Layers[l], c.Layers[l], dX, &grad.Layers[l]); err != nil {
			return fmt.Errorf("%w (layer %d)", err, l)
		}
	}
	if grad.Embed == nil {
		return nil
	}
	for t, tok := range c.Tokens {
		g := grad.Embed[tok*hidden : (tok+1)*hidden]
		for i, d := range dX[t*hidden : (t+1)*hidden] {
			g[i] += d
		}
	}
	return nil
}
