package plan

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint"
)

func llamaTensors() []checkpoint.TensorInfo {
	var ts []checkpoint.TensorInfo
	ts = append(ts, checkpoint.TensorInfo{Name: "model.embed_tokens.weight", DType: "F32", Shape: []int{512, 64}})
	for l := 0; l < 2; l++ {
		p := "model.layers." + string(rune('0'+l)) + "."
		ts = append(ts,
			checkpoint.TensorInfo{Name: p + "input_layernorm.weight", DType: "F32", Shape: []int{64}},
			checkpoint.TensorInfo{Name: p + "self_attn.q_proj.weight", DType: "F32", Shape: []int{64, 64}},
			checkpoint.TensorInfo{Name: p + "self_attn.k_proj.weight", DType: "BF16", Shape: []int{32, 64}},
			checkpoint.TensorInfo{Name: p + "mlp.gate_proj.weight", DType: "F16", Shape: []int{172, 64}},
			checkpoint.TensorInfo{Name: p + "mlp.down_proj.weight", DType: "F32", Shape: []int{64, 172}},
		)
	}
	ts = append(ts, checkpoint.TensorInfo{Name: "model.norm.weight", DType: "F32", Shape: []int{64}},
		checkpoint.TensorInfo{Name: "lm_head.weight", DType: "F32", Shape: []int{512, 64}})
	return ts
}

func TestDefaultSelectionTakesProjectionsOnly(t *testing.T) {
	chosen, kept, err := Select(llamaTensors(), regexp.MustCompile(DefaultInclude), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(chosen) != 8 {
		t.Fatalf("chose %d tensors, want the 8 projections", len(chosen))
	}
	for _, k := range kept {
		if strings.Contains(k.Name, "_proj") {
			t.Errorf("kept projection %s", k.Name)
		}
	}
	chosen, _, err = Select(llamaTensors(), regexp.MustCompile(DefaultInclude), regexp.MustCompile(`layers\.0\.`))
	if err != nil || len(chosen) != 4 {
		t.Fatalf("exclude layer 0: chose %d (%v)", len(chosen), err)
	}
	if _, _, err := Select(llamaTensors(), regexp.MustCompile(`norm`), nil); err == nil {
		t.Fatal("a 1-D norm matched by --include was accepted for compression")
	}
}

// Qwen2's q/k/v biases sit beside the projections they belong to; the
// default selection keeps them, and a pattern that reaches one is refused
// rather than compressing a vector.
func TestDefaultSelectionKeepsBiases(t *testing.T) {
	ts := llamaTensors()
	for _, p := range []string{"q", "k", "v"} {
		ts = append(ts, checkpoint.TensorInfo{Name: "model.layers.0.self_attn." + p + "_proj.bias", DType: "BF16", Shape: []int{32}})
	}
	chosen, kept, err := Select(ts, regexp.MustCompile(DefaultInclude), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chosen {
		if strings.HasSuffix(c.Name, ".bias") {
			t.Errorf("default selection chose %s", c.Name)
		}
	}
	biases := 0
	for _, k := range kept {
		if strings.HasSuffix(k.Name, ".bias") {
			biases++
		}
	}
	if biases != 3 || len(chosen) != 8 {
		t.Errorf("kept %d biases and chose %d tensors, want 3 and 8", biases, len(chosen))
	}
	if _, _, err := Select(ts, regexp.MustCompile(`self_attn\.q_proj`), nil); err == nil || !strings.Contains(err.Error(), "q_proj.bias") {
		t.Errorf("a pattern matching a bias: %v", err)
	}
}

func TestGroupsByKindAndWidth(t *testing.T) {
	chosen, _, _ := Select(llamaTensors(), regexp.MustCompile(DefaultInclude), nil)
	gs, err := Groups(chosen, ShareKind)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range gs {
		names = append(names, g.Name)
		if len(g.Members) != 2 {
			t.Errorf("group %s has %d members, want one per layer", g.Name, len(g.Members))
		}
	}
	want := []string{
		"model.layers.*.self_attn.q_proj.weight[in=64]", "model.layers.*.self_attn.k_proj.weight[in=64]",
		"model.layers.*.mlp.gate_proj.weight[in=64]", "model.layers.*.mlp.down_proj.weight[in=172]",
	}
	if d := cmp.Diff(want, names); d != "" {
		t.Fatal(d)
	}
	gs, _ = Groups(chosen, ShareWidth)
	if len(gs) != 2 || gs[0].Name != "in=64" || len(gs[0].Members) != 6 || gs[1].Name != "in=172" {
		t.Fatalf("share width: %+v", gs)
	}
	gs, _ = Groups(chosen, ShareNone)
	if len(gs) != 8 {
		t.Fatalf("share none: %d groups", len(gs))
	}
	if _, err := Groups(chosen, "layer"); err == nil {
		t.Fatal("unknown share mode accepted")
	}
}

func TestChooseMeetsTargetOrExplains(t *testing.T) {
	layer := Group{Name: "q", Members: []Matrix{{Name: "q", Rows: 64, Cols: 64}}}
	// A stand-in for the container's accounting: bit-packed indices, an fp16
	// codebook and a fixed 2 KiB for the decoder and framing.
	cost := func(g Group, s Setting) int64 {
		n := int64(g.Rows() * ((g.Cols() + s.Dim - 1) / s.Dim))
		return (n*int64(bitsFor(s.K))+7)/8 + 2*int64(s.K*s.Dim) + 2048
	}
	o := Options{Dims: []int{4, 8}, MaxLog2K: 16, Cost: cost}
	if _, _, err := Choose(layer, 3, o); err == nil || !strings.Contains(err.Error(), "--share kind") {
		t.Fatalf("a 64x64 matrix cannot carry its own decoder at 3 bits; got %v", err)
	}
	shared := Group{Name: "q", Members: make([]Matrix, 5)}
	for i := range shared.Members {
		shared.Members[i] = Matrix{Rows: 64, Cols: 64}
	}
	for _, target := range []float64{3, 4} {
		s, bits, err := Choose(shared, target, o)
		if err != nil {
			t.Fatal(err)
		}
		if bits > target {
			t.Fatalf("target %v: chose %+v at %.3f bits", target, s, bits)
		}
		if got := 8 * float64(cost(shared, s)) / float64(shared.Weights()); got != bits {
			t.Fatalf("reported %.4f bits, cost says %.4f", bits, got)
		}
	}
	s3, _, _ := Choose(shared, 3, o)
	s4, _, _ := Choose(shared, 4, o)
	if float64(bitsFor(s4.K))/float64(s4.Dim) <= float64(bitsFor(s3.K))/float64(s3.Dim) {
		t.Fatalf("4 bits (%+v) buys no more index resolution than 3 bits (%+v)", s4, s3)
	}
	if _, _, err := Choose(shared, 0, o); err == nil {
		t.Fatal("a zero target was accepted")
	}
}

func TestCheckTargetRefusesWhatCannotCompress(t *testing.T) {
	for _, bad := range []float64{0, -3, math.NaN(), math.Inf(1), math.Inf(-1), MaxBits, 100} {
		err := CheckTarget(bad)
		if err == nil {
			t.Errorf("target %v accepted", bad)
			continue
		}
		// The message names the bad target, not a consequence of it.
		if !strings.Contains(err.Error(), fmt.Sprintf("target %v bits", bad)) {
			t.Errorf("target %v: %v", bad, err)
		}
	}
	for _, good := range []float64{0.5, 3, MaxBits - 0.01} {
		if err := CheckTarget(good); err != nil {
			t.Errorf("target %v refused: %v", good, err)
		}
	}
}

func bitsFor(k int) int {
	b := 1
	for 1<<b < k {
		b++
	}
	return b
}

func TestDimsRoundTrip(t *testing.T) {
	d, err := ParseDims(FormatDims(DefaultDims))
	if err != nil || cmp.Diff(DefaultDims, d) != "" {
		t.Fatalf("%v, %v", d, err)
	}
	for _, bad := range []string{"", "0", "4,x", "65", "-2"} {
		if _, err := ParseDims(bad); err == nil {
			t.Errorf("ParseDims(%q) accepted", bad)
		}
	}
}
