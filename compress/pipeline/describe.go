package pipeline

import (
	"encoding/json"
	"math"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/rtn"
)

// The planner counts every byte a group will take in the file, so it
// describes the group exactly as the encoders below will write it, with the
// longest values its measurements can take: the planned size is an upper
// bound of the written one, a few bytes per member above it at most.
const (
	// longestFloat has the longest encoding/json form of any finite
	// float64, 25 bytes: "-0.0000012345678901234567". Go writes magnitudes
	// in [1e-6, 1e21) without an exponent, so 17 significant digits after
	// five leading zeros beat every exponent form (at most 24 bytes, as in
	// -1.7976931348623157e+308). A measurement such as an NMSE of 1.2e-05
	// takes 23 bytes when it has 17 digits.
	longestFloat = -1.2345678901234567e-06
	longestEpoch = math.MaxInt // the best epoch is an int
)

func longestMembers(g plan.Group) []pllm.Member {
	nmse := make([]float64, len(g.Members))
	for j := range nmse {
		nmse[j] = longestFloat
	}
	out, err := members(g, nmse)
	if err != nil {
		panic("pipeline: describing a group the planner built: " + err.Error())
	}
	return out
}

func groupBytes(g plan.Group, method string, params any, arrays []pllm.ArrayInfo) int64 {
	p, err := json.Marshal(params)
	if err == nil {
		var n int64
		n, err = pllm.GroupSize(pllm.GroupInfo{Name: g.Name, Method: method, Params: p, Members: longestMembers(g), Arrays: arrays})
		if err == nil {
			return n
		}
	}
	// Only finite constants and the planner's own settings are described.
	panic("pipeline: describing a group the planner built: " + err.Error())
}

func subVectorCount(g plan.Group, dim int) int { return g.Rows() * ((g.Cols() + dim - 1) / dim) }

// pocketllmBytes is what encodeGroup writes for a setting.
func pocketllmBytes(g plan.Group, s plan.Setting, hidden int, decoderF32, skip bool) int64 {
	e := (g.Cols() + s.Dim - 1) / s.Dim
	mlpEnc := pllm.F16
	if decoderF32 {
		mlpEnc = pllm.F32
	}
	arrays := []pllm.ArrayInfo{
		{Name: "indices", Encoding: pllm.Uint, Bits: pllm.BitsFor(uint64(s.K)), Count: subVectorCount(g, s.Dim)},
		{Name: "codebook", Encoding: pllm.F16, Count: s.K * s.Dim},
		{Name: "decoder_mlp", Encoding: mlpEnc, Count: 3 * bindings.MLPParams(s.Dim, hidden, s.Dim)},
		{Name: "decoder_rln", Encoding: pllm.F16, Count: 3 * 2 * e * s.Dim},
		{Name: "scales", Encoding: pllm.F32, Count: len(g.Members)},
	}
	params := GroupParams{Dim: s.Dim, Latent: s.Dim, Hidden: hidden, K: s.K, E: e, Cols: g.Cols(), GELU: "tanh",
		BestEpoch: longestEpoch, ReconMSE: longestFloat, Skip: skip}
	return groupBytes(g, MethodPocketLLM, params, arrays)
}

// vqBytes is what compressVQ writes for a setting.
func vqBytes(g plan.Group, s plan.Setting) int64 {
	arrays := []pllm.ArrayInfo{
		{Name: "indices", Encoding: pllm.Uint, Bits: pllm.BitsFor(uint64(s.K)), Count: subVectorCount(g, s.Dim)},
		{Name: "codebook", Encoding: pllm.F16, Count: s.K * s.Dim},
		{Name: "scales", Encoding: pllm.F32, Count: len(g.Members)},
	}
	params := VQParams{Dim: s.Dim, K: s.K, E: (g.Cols() + s.Dim - 1) / s.Dim, Cols: g.Cols()}
	return groupBytes(g, MethodVQ, params, arrays)
}

// rtnBytes is what compressRTN writes for a one-matrix group.
func rtnBytes(g plan.Group, st rtn.Settings) int64 {
	m := g.Members[0]
	groups := m.Rows * rtn.GroupsPerRow(m.Cols, st.GroupSize)
	arrays := []pllm.ArrayInfo{
		{Name: "codes", Encoding: pllm.Uint, Bits: st.Bits, Count: m.Rows * m.Cols},
		{Name: "scales", Encoding: pllm.F16, Count: groups},
		{Name: "offsets", Encoding: pllm.F16, Count: groups},
	}
	return groupBytes(g, MethodRTN, RTNParams{Bits: st.Bits, GroupSize: st.GroupSize, Cols: m.Cols}, arrays)
}
