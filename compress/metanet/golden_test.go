package metanet

import (
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/backendtest"
	"pocketllm-native/testvectors"
)

func TestMain(m *testing.M) { backendtest.Main(m) }

// Tolerances of a whole training step against the float64 oracle. The
// assignments are exact: every golden keeps each latent's nearest codeword
// at least testvectors' minimum margin ahead of the second, far beyond
// float32 rounding.
const (
	// StepGradNMSE bounds the error energy of the batch gradient: some
	// twenty float32 blocks in a chain forward and back, each adding error
	// energy near 2^-46 of its signal, RLN's 1/std amplifying what came
	// before. The go and cpu backends stay near 1e-14; the bound leaves
	// room for other summation orders (CUDA's blocked sums, FMA).
	StepGradNMSE = 1e-10
	// StepLossRel bounds the relative error of the batch's two loss terms:
	// float64 sums of float32 squared errors of float32 outputs (go and cpu:
	// about 3e-8).
	StepLossRel = 1e-6
	// AdamStateNMSE bounds parameters and moments after the Adam step,
	// which carries the gradient's error (scaled by lr/sqrt(v) in the
	// parameters) plus one float32 rounding per value (go and cpu: below
	// 1e-14).
	AdamStateNMSE = 1e-10
	// NetworkNMSE bounds the encoder and decoder goldens, forward and
	// backward: six float32 blocks each way, RLN's 1/std amplifying
	// earlier rounding by a row's scale over its spread.
	NetworkNMSE = 1e-9
)

// goldenShape is one training golden's network shape and loss weights.
func goldenShape(c testvectors.Case) (Shape, Loss) {
	s := Shape{E: c.Int("e"), Dim: c.Int("dim"), Latent: c.Int("latent"), Hidden: c.Int("hidden"), K: c.Int("k"), Skip: c.Has("skip")}
	return s, Loss{Lambda: float64(float32(c.Scalars["lambda"])), Beta: float64(float32(c.Scalars["beta"]))}
}

// repeatRow lays one row's loss weights out for rows rows.
func repeatRow(w []float32, rows int) []float32 {
	out := make([]float32, 0, rows*len(w))
	for i := 0; i < rows; i++ {
		out = append(out, w...)
	}
	return out
}

// One whole training step (Workspace.Step, then Adam) on every backend
// against the oracle's float64 step.
func TestStepMatchesGolden(t *testing.T) {
	cases, err := testvectors.Load(testvectors.KTrainStep)
	if err != nil {
		t.Fatal(err)
	}
	backendtest.Each(t, func(t *testing.T, k bindings.Kernels) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				s, loss := goldenShape(c)
				rows := c.Int("rows")
				f := c.F32
				p, m, v := slices.Clone(f["p"]), slices.Clone(f["m"]), slices.Clone(f["v"])
				grad := make([]float32, s.NumParams())
				w := NewWorkspace(s, rows)
				bl, err := w.Step(k, s.ViewsOf(p), s.ViewsOf(grad), f["x"], repeatRow(f["row_w"], rows), rows, loss)
				if err != nil {
					t.Fatal(err)
				}
				backendtest.CheckIndices(t, "codeword indices", w.Indices(rows), c.WantInt["idx"])
				backendtest.CheckRel(t, "reconstruction term", bl.Recon, c.Want["recon"][0], StepLossRel)
				backendtest.CheckRel(t, "codebook term", bl.Codebook, c.Want["codebook"][0], StepLossRel)
				backendtest.CheckNMSE(t, "gradient", grad, c.Want["grad"], StepGradNMSE)
				sc := c.Scalars
				if err := k.Adam(p, grad, m, v, float32(sc["lr"]), float32(sc["b1"]), float32(sc["b2"]), float32(sc["eps"]), c.Int("step")); err != nil {
					t.Fatal(err)
				}
				backendtest.CheckNMSE(t, "parameters after Adam", p, c.Want["p"], AdamStateNMSE)
				backendtest.CheckNMSE(t, "first moments", m, c.Want["m"], AdamStateNMSE)
				backendtest.CheckNMSE(t, "second moments", v, c.Want["v"], AdamStateNMSE)
			})
		}
	})
}

// The encoder and decoder as training composes them (Encode and
// encoderBackward; decodeForward and decodeBackward) on every backend
// against the oracle's networks. The encoder's gradient at its input is
// not checked: training never asks for it (mlp_backward's goldens check
// that kernel output).
func TestNetworksMatchGolden(t *testing.T) {
	enc, err := testvectors.Load(testvectors.KEncoder)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := testvectors.Load(testvectors.KDecoder)
	if err != nil {
		t.Fatal(err)
	}
	shapeOf := func(c testvectors.Case) (Shape, int) {
		return Shape{E: c.Int("e"), Dim: c.Int("dim"), Latent: c.Int("latent"), Hidden: c.Int("hidden"), K: 1}, c.Int("rows")
	}
	backendtest.Each(t, func(t *testing.T, k bindings.Kernels) {
		for _, c := range enc {
			t.Run("encoder/"+c.Name, func(t *testing.T) {
				s, rows := shapeOf(c)
				p, grad := make([]float32, s.NumParams()), make([]float32, s.NumParams())
				copy(p, c.F32["p"])
				w := NewWorkspace(s, rows)
				z, err := w.Encode(k, s.ViewsOf(p), c.F32["x"], rows)
				if err != nil {
					t.Fatal(err)
				}
				backendtest.CheckNMSE(t, "z", z, c.Want["z"], NetworkNMSE)
				if err := w.encoderBackward(k, s.ViewsOf(p), s.ViewsOf(grad), c.F32["x"], rows, slices.Clone(c.F32["dz"])); err != nil {
					t.Fatal(err)
				}
				backendtest.CheckNMSE(t, "g", grad[:s.EncoderParams()], c.Want["g"], NetworkNMSE)
			})
		}
		for _, c := range dec {
			t.Run("decoder/"+c.Name, func(t *testing.T) {
				s, rows := shapeOf(c)
				p, grad := make([]float32, s.NumParams()), make([]float32, s.NumParams())
				copy(p[s.EncoderParams():], c.F32["p"])
				w := NewWorkspace(s, rows)
				copy(w.y0, c.F32["y0"])
				if err := w.decodeForward(k, s.ViewsOf(p), rows); err != nil {
					t.Fatal(err)
				}
				n := rows * s.E
				backendtest.CheckNMSE(t, "out", w.xhat[:n*s.Dim], c.Want["out"], NetworkNMSE)
				copy(w.dxhat, c.F32["dout"])
				if err := w.decodeBackward(k, s.ViewsOf(p), s.ViewsOf(grad), rows); err != nil {
					t.Fatal(err)
				}
				backendtest.CheckNMSE(t, "g", s.ViewsOf(grad).Decoder.P, c.Want["g"], NetworkNMSE)
				backendtest.CheckNMSE(t, "dy0", w.g0[:n*s.Latent], c.Want["dy0"], NetworkNMSE)
			})
		}
	})
}
