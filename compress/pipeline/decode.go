package pipeline

import (
	"encoding/json"
	"fmt"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/metanet"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/vq"
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

// decodePocketLLM turns a stored pocketllm group back into what Reconstruct
// needs, checking that every array has the size its settings imply.
func decodePocketLLM(file string, g pllm.Group) (*pocketllm.Result, [][2]int, error) {
	fail := failer(file, g)
	var p GroupParams
	if err := json.Unmarshal(g.Params, &p); err != nil {
		return nil, nil, fail("settings: %v", err)
	}
	s := metanet.Shape{E: p.E, Dim: p.Dim, Latent: p.Latent, Hidden: p.Hidden, K: p.K, Skip: p.Skip}
	if err := s.Validate(); err != nil {
		return nil, nil, fail("%v", err)
	}
	if p.Dim > 64 || p.Latent > 64 || p.Hidden > 1024 || p.Cols < 1 || (p.Cols+p.Dim-1)/p.Dim != p.E {
		return nil, nil, fail("inconsistent settings %+v", p)
	}
	if p.GELU != "tanh" {
		return nil, nil, fail("GELU form %q; this build uses tanh", p.GELU)
	}
	shapes, rows, err := memberShapes(fail, g, p.Cols)
	if err != nil {
		return nil, nil, err
	}
	arr := func(name string, n int) ([]float32, error) { return floatArray(fail, g, name, n) }
	res := &pocketllm.Result{Shape: s}
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
	if res.Indices, err = indexValues(fail, g, "indices", rows*s.E, s.K); err != nil {
		return nil, nil, err
	}
	return res, shapes, nil
}

func failer(file string, g pllm.Group) func(format string, args ...any) error {
	return func(format string, args ...any) error {
		return fmt.Errorf("%s: group %s: %s", file, g.Name, fmt.Sprintf(format, args...))
	}
}

// floatArray returns the group's f16 or f32 array name, which must hold n
// finite values.
func floatArray(fail func(string, ...any) error, g pllm.Group, name string, n int) ([]float32, error) {
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
	if err := a.CheckFinite(); err != nil {
		return nil, fail("%v", err)
	}
	return a.Floats, nil
}

// indexValues returns the group's bit-packed array name as n indices below k.
func indexValues(fail func(string, ...any) error, g pllm.Group, name string, n, k int) ([]int32, error) {
	a, ok := g.Array(name)
	if !ok || a.Encoding != pllm.Uint {
		return nil, fail("array %q is missing or not bit-packed", name)
	}
	if len(a.Uints) != n {
		return nil, fail("array %q holds %d values, want %d", name, len(a.Uints), n)
	}
	out := make([]int32, n)
	for i, v := range a.Uints {
		if v >= uint32(k) {
			return nil, fail("%s value %d at %d is not below %d", name, v, i, k)
		}
		out[i] = int32(v)
	}
	return out, nil
}

// memberShapes checks that every member is a matrix of cols columns.
func memberShapes(fail func(string, ...any) error, g pllm.Group, cols int) ([][2]int, int, error) {
	shapes := make([][2]int, len(g.Members))
	rows := 0
	for i, m := range g.Members {
		if len(m.Shape) != 2 || m.Shape[1] != cols || m.Shape[0] < 1 {
			return nil, 0, fail("member %s has shape %v, the group's rows are %d wide", m.Name, m.Shape, cols)
		}
		shapes[i] = [2]int{m.Shape[0], m.Shape[1]}
		rows += m.Shape[0]
	}
	return shapes, rows, nil
}

func decodeVQ(file string, g pllm.Group) (*vq.Result, [][2]int, error) {
	fail := failer(file, g)
	var p VQParams
	if err := json.Unmarshal(g.Params, &p); err != nil {
		return nil, nil, fail("settings: %v", err)
	}
	if err := (vq.Settings{Dim: p.Dim, K: p.K}).Validate(); err != nil {
		return nil, nil, fail("%v", err)
	}
	if p.Cols < 1 || (p.Cols+p.Dim-1)/p.Dim != p.E {
		return nil, nil, fail("inconsistent settings %+v", p)
	}
	shapes, rows, err := memberShapes(fail, g, p.Cols)
	if err != nil {
		return nil, nil, err
	}
	res := &vq.Result{Dim: p.Dim, K: p.K, E: p.E, Cols: p.Cols}
	if res.Codebook, err = floatArray(fail, g, "codebook", p.K*p.Dim); err != nil {
		return nil, nil, err
	}
	if res.Scales, err = floatArray(fail, g, "scales", len(g.Members)); err != nil {
		return nil, nil, err
	}
	if res.Indices, err = indexValues(fail, g, "indices", rows*p.E, p.K); err != nil {
		return nil, nil, err
	}
	return res, shapes, nil
}

func decodeRTN(file string, g pllm.Group) (*rtn.Result, error) {
	fail := failer(file, g)
	var p RTNParams
	if err := json.Unmarshal(g.Params, &p); err != nil {
		return nil, fail("settings: %v", err)
	}
	if err := (rtn.Settings{Bits: p.Bits, GroupSize: p.GroupSize}).Validate(); err != nil {
		return nil, fail("%v", err)
	}
	if len(g.Members) != 1 {
		return nil, fail("%d members; rtn stores one matrix per group", len(g.Members))
	}
	shapes, rows, err := memberShapes(fail, g, p.Cols)
	if err != nil {
		return nil, err
	}
	res := &rtn.Result{Bits: p.Bits, GroupSize: p.GroupSize, Rows: shapes[0][0], Cols: p.Cols}
	groups := rows * rtn.GroupsPerRow(p.Cols, p.GroupSize)
	if res.Scales, err = floatArray(fail, g, "scales", groups); err != nil {
		return nil, err
	}
	if res.Offsets, err = floatArray(fail, g, "offsets", groups); err != nil {
		return nil, err
	}
	codes, err := indexValues(fail, g, "codes", rows*p.Cols, 1<<p.Bits)
	if err != nil {
		return nil, err
	}
	res.Codes = make([]uint32, len(codes))
	for i, c := range codes {
		res.Codes[i] = uint32(c)
	}
	return res, nil
}
