package pipeline

import (
	"encoding/json"
	"fmt"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/metanet"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
)

// splitDecoder separates a decoder in bindings.Decoder order
// (N1|D1|N2|D2|N3|D0) into its MLPs (D1|D2|D0), stored in fp16 or fp32, and
// its RLN scales and shifts (N1|N2|N3), always fp16.
func splitDecoder(e, dim, latent, hidden int, p []float32) (mlp, rln []float32) {
	n1, d1, n2, d2, n3, d0 := bindings.Decoder{E: e, Dim: dim, Latent: latent, Hidden: hidden, P: p}.Parts()
	for _, m := range []bindings.MLP{d1, d2, d0} {
		mlp = append(mlp, m.P...)
	}
	for _, n := range []bindings.RLN{n1, n2, n3} {
		rln = append(rln, n.P...)
	}
	return mlp, rln
}

// joinDecoder is the inverse of splitDecoder.
func joinDecoder(e, dim, latent, hidden int, mlp, rln []float32) []float32 {
	p := make([]float32, bindings.DecoderParams(e, dim, latent, hidden))
	n1, d1, n2, d2, n3, d0 := bindings.Decoder{E: e, Dim: dim, Latent: latent, Hidden: hidden, P: p}.Parts()
	for _, m := range []bindings.MLP{d1, d2, d0} {
		mlp = mlp[copy(m.P, mlp):]
	}
	for _, n := range []bindings.RLN{n1, n2, n3} {
		rln = rln[copy(n.P, rln):]
	}
	return p
}

// decodeGroup turns a stored pocketllm group back into what Reconstruct
// needs, checking that every array has the size its settings imply.
func decodeGroup(file string, g pllm.Group) (*pocketllm.Result, [][2]int, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: group %s: %s", file, g.Name, fmt.Sprintf(format, args...))
	}
	if g.Method != MethodPocketLLM {
		return nil, nil, fail("method %q is not one this build reconstructs", g.Method)
	}
	var p GroupParams
	if err := json.Unmarshal(g.Params, &p); err != nil {
		return nil, nil, fail("settings: %v", err)
	}
	s := metanet.Shape{E: p.E, Dim: p.Dim, Latent: p.Latent, Hidden: p.Hidden, K: p.K}
	if err := s.Validate(); err != nil {
		return nil, nil, fail("%v", err)
	}
	if p.Dim > 64 || p.Latent > 64 || p.Hidden > 1024 || p.Cols < 1 || (p.Cols+p.Dim-1)/p.Dim != p.E {
		return nil, nil, fail("inconsistent settings %+v", p)
	}
	if p.GELU != "tanh" {
		return nil, nil, fail("GELU form %q; this build uses tanh", p.GELU)
	}
	shapes := make([][2]int, len(g.Members))
	rows := 0
	for i, m := range g.Members {
		if len(m.Shape) != 2 || m.Shape[1] != p.Cols || m.Shape[0] < 1 {
			return nil, nil, fail("member %s has shape %v, the group's rows are %d wide", m.Name, m.Shape, p.Cols)
		}
		shapes[i] = [2]int{m.Shape[0], m.Shape[1]}
		rows += m.Shape[0]
	}
	arr := func(name string, n int) ([]float32, error) {
		a, ok := g.Array(name)
		if !ok {
			return nil, fail("array %q is missing", name)
		}
		if a.Encoding != pllm.F16 && a.Encoding != pllm.F32 {
			return nil, fail("array %q has encoding %s, want f16 or f32", name, a.Encoding)
		}
		if len(a.Floats) != n {
			return nil, fail("array %q holds %d values, want %d", name, len(a.Floats), n)
		}
		return a.Floats, nil
	}
	res := &pocketllm.Result{Shape: s}
	var err error
	if res.Codebook, err = arr("codebook", s.K*s.Latent); err != nil {
		return nil, nil, err
	}
	mlpN := 2*bindings.MLPParams(s.Latent, s.Hidden, s.Latent) + bindings.MLPParams(s.Latent, s.Hidden, s.Dim)
	mlp, err := arr("decoder_mlp", mlpN)
	if err != nil {
		return nil, nil, err
	}
	rln, err := arr("decoder_rln", 3*2*s.Width())
	if err != nil {
		return nil, nil, err
	}
	res.Decoder = joinDecoder(s.E, s.Dim, s.Latent, s.Hidden, mlp, rln)
	if res.Scales, err = arr("scales", len(g.Members)); err != nil {
		return nil, nil, err
	}
	ia, ok := g.Array("indices")
	if !ok || ia.Encoding != pllm.Uint {
		return nil, nil, fail("array \"indices\" is missing or not bit-packed")
	}
	if len(ia.Uints) != rows*s.E {
		return nil, nil, fail("%d indices for %d rows of %d sub-vectors", len(ia.Uints), rows, s.E)
	}
	res.Indices = make([]int32, len(ia.Uints))
	for i, v := range ia.Uints {
		if v >= uint32(s.K) {
			return nil, nil, fail("index %d of sub-vector %d is outside the codebook of %d", v, i, s.K)
		}
		res.Indices[i] = int32(v)
	}
	return res, shapes, nil
}
