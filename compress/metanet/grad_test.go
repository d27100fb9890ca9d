package metanet

import (
	"math"
	"math/rand/v2"
	"testing"

	"pocketllm-native/bindings"
)

// gradTolerance bounds the relative error between an analytic gradient and a
// central finite difference computed in float32 with step fdStep: the
// difference quotient carries about 1e-7/fdStep of rounding noise.
const (
	gradTolerance = 2e-2
	fdStep        = 1e-2
)

// testShapes are the two network forms: METHOD.md's, and the one with
// identity paths around the outer MLPs.
func testShapes() map[string]Shape {
	return map[string]Shape{
		"plain": {E: 3, Dim: 4, Latent: 5, Hidden: 6, K: 7},
		"skip":  {E: 3, Dim: 4, Latent: 4, Hidden: 6, K: 7, Skip: true},
	}
}

func randomize(p []float32, rng *rand.Rand, scale float64) {
	for i := range p {
		p[i] = float32(rng.NormFloat64() * scale)
	}
}

// checkGrad compares analytic[i] with the finite difference of f around p[i]
// for a sample of indices.
func checkGrad(t *testing.T, what string, p, analytic []float32, f func() float64, rng *rand.Rand) {
	t.Helper()
	checked := 0
	for _, i := range rng.Perm(len(p))[:min(len(p), 60)] {
		old := p[i]
		p[i] = old + fdStep
		up := f()
		p[i] = old - fdStep
		down := f()
		p[i] = old
		fd := (up - down) / (2 * fdStep)
		an := float64(analytic[i])
		scale := math.Max(math.Abs(fd), math.Abs(an))
		if scale < 1e-3 {
			continue // both vanish; relative error means nothing here
		}
		checked++
		if math.Abs(fd-an)/scale > gradTolerance {
			t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g", what, i, an, fd)
		}
	}
	if checked < 5 {
		t.Fatalf("%s: only %d gradients large enough to check", what, checked)
	}
}

func TestDecoderGradientMatchesFiniteDifferences(t *testing.T) {
	for form, s := range testShapes() {
		t.Run(form, func(t *testing.T) {
			k := bindings.Go()
			rng := rand.New(rand.NewPCG(1, 2))
			p := Init(s, rng)
			randomize(p[s.EncoderParams():s.EncoderParams()+s.DecoderParams()], rng, 0.5)
			rows := 4
			// Padding (weight 0) in each row's last three values, uneven weights elsewhere.
			wts := make([]float32, rows*s.E*s.Dim)
			for i := range wts {
				if i%(s.E*s.Dim) < s.E*s.Dim-3 {
					wts[i] = float32(0.5 + rng.Float64())
				}
			}
			w := NewWorkspace(s, rows)
			x := make([]float32, rows*s.E*s.Dim)
			randomize(x, rng, 1)
			y0 := make([]float32, rows*s.E*s.Latent)
			randomize(y0, rng, 1)

			loss := func() float64 {
				copy(w.y0, y0)
				g := make([]float32, s.NumParams())
				l, err := w.decodeLoss(k, s.ViewsOf(p), s.ViewsOf(g), x, wts, rows)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			grad := make([]float32, s.NumParams())
			copy(w.y0, y0)
			if _, err := w.decodeLoss(k, s.ViewsOf(p), s.ViewsOf(grad), x, wts, rows); err != nil {
				t.Fatal(err)
			}
			dy0 := append([]float32(nil), w.g0[:len(y0)]...)
			dec := s.ViewsOf(p).Decoder.P
			checkGrad(t, "decoder", dec, s.ViewsOf(grad).Decoder.P, loss, rng)
			checkGrad(t, "codeword input", y0, dy0, loss, rng)
		})
	}
}

func TestEncoderGradientMatchesFiniteDifferences(t *testing.T) {
	for form, s := range testShapes() {
		t.Run(form, func(t *testing.T) {
			k := bindings.Go()
			rng := rand.New(rand.NewPCG(3, 4))
			p := Init(s, rng)
			randomize(p[:s.EncoderParams()], rng, 0.5)
			rows := 3
			w := NewWorkspace(s, rows)
			x := make([]float32, rows*s.E*s.Dim)
			randomize(x, rng, 1)
			// The scalar sum(z * probe) has gradient probe at z.
			probe := make([]float32, rows*s.E*s.Latent)
			randomize(probe, rng, 1)
			f := func() float64 {
				z, err := w.Encode(k, s.ViewsOf(p), x, rows)
				if err != nil {
					t.Fatal(err)
				}
				var sum float64
				for i, v := range z {
					sum += float64(v) * float64(probe[i])
				}
				return sum
			}
			f()
			grad := make([]float32, s.NumParams())
			dz := append([]float32(nil), probe...)
			if err := w.encoderBackward(k, s.ViewsOf(p), s.ViewsOf(grad), x, rows, dz); err != nil {
				t.Fatal(err)
			}
			checkGrad(t, "encoder", p[:s.EncoderParams()], grad[:s.EncoderParams()], f, rng)
		})
	}
}

func TestCodebookGradientMatchesFiniteDifferences(t *testing.T) {
	for form, s := range testShapes() {
		t.Run(form, func(t *testing.T) {
			// With the encoder and assignment fixed, Lambda*MSE(C[idx], z) is smooth in
			// C; Step's codebook gradient must be its derivative.
			k := bindings.Go()
			rng := rand.New(rand.NewPCG(5, 6))
			p := Init(s, rng)
			rows := 5
			w := NewWorkspace(s, rows)
			x := make([]float32, rows*s.E*s.Dim)
			randomize(x, rng, 1)
			lambda := 0.4
			grad := make([]float32, s.NumParams())
			ones := make([]float32, len(x))
			for i := range ones {
				ones[i] = 1
			}
			if _, err := w.Step(k, s.ViewsOf(p), s.ViewsOf(grad), x, ones, rows, Loss{Lambda: lambda}); err != nil {
				t.Fatal(err)
			}
			idx := append([]int32(nil), w.Indices(rows)...)
			z := append([]float32(nil), w.z[:rows*s.E*s.Latent]...)
			cb := s.ViewsOf(p).Codebook
			f := func() float64 {
				var sum float64
				for i, j := range idx {
					for t := 0; t < s.Latent; t++ {
						d := float64(cb[int(j)*s.Latent+t]) - float64(z[i*s.Latent+t])
						sum += d * d
					}
				}
				return lambda * sum / float64(len(z))
			}
			checkGrad(t, "codebook", cb, s.ViewsOf(grad).Codebook, f, rng)
		})
	}
}
