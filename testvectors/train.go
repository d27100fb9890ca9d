package testvectors

import (
	"fmt"
	"math"
)

// The training step and epoch of METHOD.md section 4 as the oracle states
// them, in float64 from start to end (parameters and Adam's moments too),
// composed from the oracle's own blocks: the goldens that tie together
// every statement of the step (compress/metanet with compress/pocketllm's
// loop, native/common/train.inc on the CPU and CUDA libraries).
//
// One step on a batch of rows weight rows (x [rows*E, Dim], zero on
// padding; wts the same shape, each element's loss weight, 0 on padding):
//
//	z = encoder(x); idx = nearest codeword of each latent; y0 = C[idx]
//	x_hat = decoder(y0)
//	L = sum wts*(x_hat-x)^2 / sum wts + Lambda*MSE(C[idx], sg(z)) + Beta*MSE(z, sg(C[idx]))
//
// with the straight-through estimator handing dL/dy0 to z, then one Adam
// step over every parameter (encoder | decoder | codebook). An epoch runs
// the batches of consecutive entries of a row order, then the full pass:
// every row encoded, assigned and decoded with the epoch's final
// parameters, and the loss-weighted MSE of that reconstruction.

// trainLayout is a meta network's parameter vector: encoder | decoder |
// codebook [k, latent].
type trainLayout struct {
	enc encoderLayout
	dec decoderLayout
	k   int
	cb  int // offset of the codebook
	np  int
}

func newTrainLayout(e, dim, latent, hidden, k int, skip bool) trainLayout {
	l := trainLayout{enc: newEncoderLayout(e, dim, latent, hidden), dec: newDecoderLayout(e, dim, latent, hidden), k: k}
	l.enc.skip, l.dec.skip = skip, skip
	l.cb = l.enc.np + l.dec.np
	l.np = l.cb + k*latent
	return l
}

// TrainParams is the length of a training parameter vector.
func TrainParams(e, dim, latent, hidden, k int) int {
	return newTrainLayout(e, dim, latent, hidden, k, false).np
}

// stepResult is what one oracle step measured and computed.
type stepResult struct {
	recon, codebook float64 // the reconstruction term and MSE(C[idx], z)
	idx             []int32
	grad            []float64
	// margin is the smallest gap between a latent's nearest and second
	// nearest codeword, relative to the squared norms involved: how far
	// the assignment is from a tie that float32 rounding could flip.
	margin float64
}

// assign64 is the nearest codeword (ties to the lowest index) of each of
// the n latents, with the squared distances and the smallest relative margin.
func assign64(z, c []float64, n, lat, k int) (idx []int32, dist []float64, margin float64) {
	idx = make([]int32, n)
	dist = make([]float64, n)
	margin = math.Inf(1)
	for i := 0; i < n; i++ {
		best, d1, d2 := -1, math.Inf(1), math.Inf(1)
		zn := 0.0
		for t := 0; t < lat; t++ {
			zn += z[i*lat+t] * z[i*lat+t]
		}
		cmax := 0.0
		for j := 0; j < k; j++ {
			d, cn := 0.0, 0.0
			for t := 0; t < lat; t++ {
				u := z[i*lat+t] - c[j*lat+t]
				d += u * u
				cn += c[j*lat+t] * c[j*lat+t]
			}
			cmax = max(cmax, cn)
			switch {
			case d < d1:
				best, d1, d2 = j, d, d1
			case d < d2:
				d2 = d
			}
		}
		idx[i], dist[i] = int32(best), d1
		if k > 1 {
			margin = min(margin, (d2-d1)/(zn+cmax))
		}
	}
	return idx, dist, margin
}

// trainStep64 is the forward and backward pass of one batch.
func trainStep64(l trainLayout, p, x, wts []float64, rows int, lambda, beta float64) stepResult {
	lat := l.enc.latent
	b := rows * l.enc.e
	pe, pd, c := p[:l.enc.np], p[l.enc.np:l.cb], p[l.cb:]
	z, et := encoderForward64(l.enc, pe, x, rows)
	idx, dist, margin := assign64(z, c, b, lat, l.k)
	y0 := make([]float64, b*lat)
	for i, j := range idx {
		copy(y0[i*lat:(i+1)*lat], c[int(j)*lat:(int(j)+1)*lat])
	}
	out, dt := decoderForward64(l.dec, pd, y0, rows)
	sw, se := 0.0, 0.0
	for _, w := range wts {
		sw += w
	}
	dout := make([]float64, len(out))
	for i, w := range wts {
		e := out[i] - x[i]
		se += w * e * e
		dout[i] = 2 * w * e / sw
	}
	r := stepResult{recon: se / sw, idx: idx, margin: margin, grad: make([]float64, l.np)}
	for _, d := range dist {
		r.codebook += d
	}
	r.codebook /= float64(b * lat)
	gd, dz := decoderBackward64(l.dec, pd, dt, dout, rows)
	copy(r.grad[l.enc.np:], gd)
	scale := 2 / float64(b*lat)
	for i, j := range idx {
		for t := 0; t < lat; t++ {
			diff := z[i*lat+t] - c[int(j)*lat+t]
			dz[i*lat+t] += beta * scale * diff                 // commitment: pulls z to its codeword
			r.grad[l.cb+int(j)*lat+t] -= lambda * scale * diff // codebook term: pulls the codeword to z
		}
	}
	ge, _ := encoderBackward64(l.enc, pe, et, dz, rows)
	copy(r.grad, ge)
	return r
}

// adamConsts are Adam's hyper-parameters other than the learning rate.
type adamConsts struct{ b1, b2, eps float64 }

// epochResult is what one oracle epoch computed.
type epochResult struct {
	p        []float64 // parameters after the last batch
	meanLoss float64   // mean over batches of recon + lambda*codebook term
	mse      float64   // the full pass's loss-weighted reconstruction MSE
	idx      []int32   // the full pass's indices
	margin   float64   // the smallest assignment margin of every batch and the full pass
}

// trainEpoch64 runs the batches of order (rpb rows each, the last one
// shorter) with Adam steps firstStep, firstStep+1, ... from zero moments,
// then the full pass. wts is one row's loss weights, shared by every row.
func trainEpoch64(l trainLayout, p0, x, rowW []float64, rows, rpb int, order []int32, lr float64, firstStep int,
	lambda, beta float64, ac adamConsts) epochResult {
	rowLen := l.enc.e * l.enc.dim
	p := append([]float64(nil), p0...)
	m, v := make([]float64, len(p)), make([]float64, len(p))
	res := epochResult{margin: math.Inf(1)}
	step, batches := firstStep, 0
	for b0 := 0; b0 < rows; b0 += rpb {
		nr := min(rpb, rows-b0)
		var xb, wb []float64
		for _, r := range order[b0 : b0+nr] {
			xb = append(xb, x[int(r)*rowLen:(int(r)+1)*rowLen]...)
			wb = append(wb, rowW...)
		}
		sr := trainStep64(l, p, xb, wb, nr, lambda, beta)
		adam64(p, sr.grad, m, v, lr, ac.b1, ac.b2, ac.eps, step)
		res.meanLoss += sr.recon + lambda*sr.codebook
		res.margin = min(res.margin, sr.margin)
		step++
		batches++
	}
	res.meanLoss /= float64(batches)
	res.p = p

	// The full pass: the encoder and decoder treat each row on its own, so
	// one call over every row is the batched pass.
	lat := l.enc.latent
	z, _ := encoderForward64(l.enc, p[:l.enc.np], x, rows)
	idx, _, margin := assign64(z, p[l.cb:], rows*l.enc.e, lat, l.k)
	res.idx, res.margin = idx, min(res.margin, margin)
	y0 := make([]float64, len(z))
	for i, j := range idx {
		copy(y0[i*lat:(i+1)*lat], p[l.cb+int(j)*lat:l.cb+(int(j)+1)*lat])
	}
	out, _ := decoderForward64(l.dec, p[l.enc.np:l.cb], y0, rows)
	se, sw := 0.0, 0.0
	for i, o := range out {
		w := rowW[i%rowLen]
		d := o - x[i]
		se += w * d * d
		sw += w
	}
	res.mse = se / sw
	return res
}

// ---- generators ----------------------------------------------------------

// minTrainMargin is the smallest relative assignment margin a training
// golden may have. The backends compute latents in float32 (relative error
// about 1e-6 after a few blocks), so a margin of 1e-3 keeps every backend's
// choice of codeword the oracle's; the generator moves to the next seed
// until a case has it.
const minTrainMargin = 1e-3

// trainShape is one training golden's network and batch.
type trainShape struct {
	name                      string
	e, dim, latent, hidden, k int
	rows, pad                 int // rows of the batch (step) or group (epoch); padded columns per row
	skip                      bool
	lambda, beta              float32
	lr                        float32
	step                      int // Adam step (step) or first step (epoch)
	rpb                       int // rows per batch (epoch)
	moments                   bool
}

// trainAdam are the training loop's Adam constants, float32 values as the
// kernels receive them.
var trainAdam = adamConsts{float64(float32(0.9)), float64(float32(0.999)), float64(float32(1e-8))}

func (s trainShape) layout() trainLayout {
	return newTrainLayout(s.e, s.dim, s.latent, s.hidden, s.k, s.skip)
}

func (s trainShape) ints() map[string]int {
	m := ints("e", s.e, "dim", s.dim, "latent", s.latent, "hidden", s.hidden, "k", s.k, "rows", s.rows,
		"cols", s.e*s.dim-s.pad, "step", s.step)
	if s.skip {
		m["skip"] = 1
	}
	if s.rpb > 0 {
		m["rows_per_batch"] = s.rpb
	}
	return m
}

func (s trainShape) scalars() map[string]float64 {
	return map[string]float64{"lambda": float64(s.lambda), "beta": float64(s.beta), "lr": float64(s.lr),
		"b1": trainAdam.b1, "b2": trainAdam.b2, "eps": trainAdam.eps}
}

// trainInputs draws a parameter vector (linear layers uniform in
// +-1/sqrt(fan_in) as training initialises them, RLN scales near 1, the
// codebook normal with the latents' spread), the group's rows (zero on
// the padded last columns) and one row's loss weights (uneven, 0 on
// padding).
func trainInputs(r *rng, s trainShape) (p, x, rowW []float32) {
	l := s.layout()
	p = make([]float32, l.np)
	lin := func(off int, ml mlpLayout) {
		for i := 0; i < ml.np; i++ {
			fanIn := ml.in
			if i >= ml.w2 {
				fanIn = ml.hidden
			}
			p[off+i] = round3((2*r.uniform() - 1) / math.Sqrt(float64(fanIn)))
		}
	}
	norm := func(off int) {
		w := s.e * s.latent
		copy(p[off:], r.vec(w, 1, 0.1))
		copy(p[off+w:], r.vec(w, 0, 0.1))
	}
	en, de := l.enc, l.dec
	lin(en.e0, en.mlpIn)
	norm(en.n1)
	lin(en.e1, en.mlpLat)
	norm(en.n2)
	lin(en.e2, en.mlpLat)
	norm(en.n3)
	norm(en.np + de.n1)
	lin(en.np+de.d1, de.mlpLat)
	norm(en.np + de.n2)
	lin(en.np+de.d2, de.mlpLat)
	norm(en.np + de.n3)
	lin(en.np+de.d0, de.mlpOut)
	copy(p[l.cb:], r.vec(s.k*s.latent, 0, 1))
	rowLen := s.e * s.dim
	x = r.vec(s.rows*rowLen, 0, 1)
	rowW = make([]float32, rowLen)
	for c := range rowW {
		if c < rowLen-s.pad {
			rowW[c] = round3(0.5 + r.uniform())
		}
	}
	for row := 0; row < s.rows; row++ {
		for c := rowLen - s.pad; c < rowLen; c++ {
			x[row*rowLen+c] = 0
		}
	}
	return p, x, rowW
}

func repeatRow(rowW []float32, rows int) []float64 {
	out := make([]float64, 0, rows*len(rowW))
	for i := 0; i < rows; i++ {
		out = append(out, f64(rowW)...)
	}
	return out
}

// seedFor returns the first seed from base whose case has the margin.
func seedFor(base uint64, name string, margin func(r *rng) float64) uint64 {
	for s := base; s < base+1000; s++ {
		if margin(&rng{s}) >= minTrainMargin {
			return s
		}
	}
	panic(fmt.Sprintf("testvectors: no seed in 1000 gives training case %s an assignment margin of %g", name, minTrainMargin))
}

// Keys of train_step: ints e dim latent hidden k rows cols step [skip];
// scalars lambda beta lr b1 b2 eps; f32 p m v x row_w (one row's loss
// weights, the same for every row); want grad (the batch's gradient), p m v
// (after the Adam step), recon codebook (the batch's two terms); want_int idx.
func genTrainStep() []Case {
	var cs []Case
	for i, s := range []trainShape{
		{name: "plain_padded", e: 3, dim: 4, latent: 4, hidden: 5, k: 16, rows: 4, pad: 2, lambda: 0.4, beta: 0.3, lr: 0.016, step: 1},
		{name: "skip_moments", e: 3, dim: 4, latent: 4, hidden: 6, k: 12, rows: 3, pad: 1, skip: true, lambda: 0.4, beta: 0.25, lr: 0.01, step: 7, moments: true},
		{name: "latent3_lambda0", e: 2, dim: 4, latent: 3, hidden: 4, k: 9, rows: 5, lambda: 0, beta: 0, lr: 0.02, step: 2, moments: true},
	} {
		l := s.layout()
		draw := func(r *rng) (p, m, v, x, rowW []float32) {
			p, x, rowW = trainInputs(r, s)
			m, v = make([]float32, l.np), make([]float32, l.np)
			if s.moments {
				m = r.vec(l.np, 0, 0.01)
				v = r.vec(l.np, 0, 0.01)
				for t := range v {
					v[t] *= v[t]
				}
			}
			return p, m, v, x, rowW
		}
		seed := seedFor(uint64(1100+100*i), s.name, func(r *rng) float64 {
			p, _, _, x, rowW := draw(r)
			return trainStep64(l, f64(p), f64(x), repeatRow(rowW, s.rows), s.rows, float64(s.lambda), float64(s.beta)).margin
		})
		p, m, v, x, rowW := draw(&rng{seed})
		sr := trainStep64(l, f64(p), f64(x), repeatRow(rowW, s.rows), s.rows, float64(s.lambda), float64(s.beta))
		p2, m2, v2 := f64(p), f64(m), f64(v)
		adam64(p2, sr.grad, m2, v2, float64(s.lr), trainAdam.b1, trainAdam.b2, trainAdam.eps, s.step)
		cs = append(cs, Case{
			Name:    s.name,
			Ints:    s.ints(),
			Scalars: s.scalars(),
			F32:     map[string][]float32{"p": p, "m": m, "v": v, "x": x, "row_w": rowW},
			Want: map[string][]float64{"grad": sr.grad, "p": p2, "m": m2, "v": v2,
				"recon": {sr.recon}, "codebook": {sr.codebook}},
			WantInt: map[string][]int64{"idx": widen(sr.idx)},
		})
	}
	return cs
}

// Keys of train_epoch: ints e dim latent hidden k rows cols rows_per_batch
// step (the first Adam step; moments start at zero) [skip]; scalars lambda
// beta lr b1 b2 eps; f32 p x row_w; i32 order; want p (after the last
// batch), mean_loss, mse (the full pass's); want_int idx (the full pass's).
func genTrainEpoch() []Case {
	var cs []Case
	for i, s := range []trainShape{
		{name: "plain_uneven_batches", e: 3, dim: 4, latent: 4, hidden: 5, k: 12, rows: 10, rpb: 4, pad: 2, lambda: 0.4, beta: 0.3, lr: 0.016, step: 1},
		{name: "skip_later_steps", e: 2, dim: 3, latent: 3, hidden: 4, k: 10, rows: 9, rpb: 3, pad: 1, skip: true, lambda: 0.4, beta: 0.1, lr: 0.01, step: 13},
	} {
		l := s.layout()
		draw := func(r *rng) (p, x, rowW []float32, order []int32) {
			p, x, rowW = trainInputs(r, s)
			order = make([]int32, s.rows)
			for t := range order {
				order[t] = int32(t)
			}
			for t := len(order) - 1; t > 0; t-- {
				j := r.intn(t + 1)
				order[t], order[j] = order[j], order[t]
			}
			return p, x, rowW, order
		}
		epoch := func(p, x, rowW []float32, order []int32) epochResult {
			return trainEpoch64(l, f64(p), f64(x), f64(rowW), s.rows, s.rpb, order, float64(s.lr), s.step,
				float64(s.lambda), float64(s.beta), trainAdam)
		}
		seed := seedFor(uint64(1300+100*i), s.name, func(r *rng) float64 { return epoch(draw(r)).margin })
		p, x, rowW, order := draw(&rng{seed})
		er := epoch(p, x, rowW, order)
		cs = append(cs, Case{
			Name:    s.name,
			Ints:    s.ints(),
			Scalars: s.scalars(),
			F32:     map[string][]float32{"p": p, "x": x, "row_w": rowW},
			I32:     map[string][]int32{"order": order},
			Want:    map[string][]float64{"p": er.p, "mean_loss": {er.meanLoss}, "mse": {er.mse}},
			WantInt: map[string][]int64{"idx": widen(er.idx)},
		})
	}
	return cs
}
