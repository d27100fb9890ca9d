// Package plan decides what gets compressed and how: which tensors (regular
// expressions on their names), which share one meta network (--share), and
// which sub-vector length and codebook size meet a bits-per-weight target
// when every stored byte is counted.
package plan

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
)

// DefaultInclude matches every attention and MLP projection of a Llama-style
// model, and nothing else: embeddings, norms and the output head stay as they are.
const DefaultInclude = `(^|\.)(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$`

// Matrix is a tensor chosen for compression.
type Matrix struct {
	Name       string
	Rows, Cols int
	DType      checkpoint.DType
}

// Select splits tensors into those to compress (matching include and not
// exclude) and those kept as they are. A tensor that matches but is not a 2-D
// floating-point matrix is an error, not silently kept.
func Select(tensors []checkpoint.TensorInfo, include, exclude *regexp.Regexp) (chosen []Matrix, kept []checkpoint.TensorInfo, err error) {
	for _, t := range tensors {
		if !include.MatchString(t.Name) || (exclude != nil && exclude.MatchString(t.Name)) {
			kept = append(kept, t)
			continue
		}
		switch {
		case len(t.Shape) != 2:
			return nil, nil, fmt.Errorf("tensor %s matches the include pattern but has shape %v, not a matrix", t.Name, t.Shape)
		case t.DType != "F32" && t.DType != "F16" && t.DType != "BF16":
			return nil, nil, fmt.Errorf("tensor %s matches the include pattern but has dtype %s; only F32, F16 and BF16 are compressed", t.Name, t.DType)
		case t.Shape[0] < 1 || t.Shape[1] < 1:
			return nil, nil, fmt.Errorf("tensor %s matches the include pattern but is empty (%v)", t.Name, t.Shape)
		}
		chosen = append(chosen, Matrix{Name: t.Name, Rows: t.Shape[0], Cols: t.Shape[1], DType: t.DType})
	}
	return chosen, kept, nil
}

// Group is a set of matrices that share one meta network.
type Group struct {
	Name    string
	Members []Matrix
}

// Cols is the row width every member has.
func (g Group) Cols() int { return g.Members[0].Cols }

// Weights is the number of real weights in the group.
func (g Group) Weights() int64 {
	var n int64
	for _, m := range g.Members {
		n += int64(m.Rows) * int64(m.Cols)
	}
	return n
}

// Rows is the number of weight rows in the group.
func (g Group) Rows() int {
	n := 0
	for _, m := range g.Members {
		n += m.Rows
	}
	return n
}

var layerNumber = regexp.MustCompile(`\.\d+\.`)

// Kind is a tensor's name with its layer number replaced by "*":
// model.layers.3.mlp.up_proj.weight -> model.layers.*.mlp.up_proj.weight.
func Kind(name string) string { return layerNumber.ReplaceAllString(name, ".*.") }

// Share modes.
const (
	ShareNone  = "none"  // one meta network per matrix
	ShareKind  = "kind"  // one per tensor kind and row width, across layers
	ShareWidth = "width" // one per row width: every kind and layer with that input width
)

// Groups puts matrices into groups, in order of first appearance.
func Groups(mats []Matrix, share string) ([]Group, error) {
	switch share {
	case ShareNone:
		gs := make([]Group, len(mats))
		for i, m := range mats {
			gs[i] = Group{Name: m.Name, Members: []Matrix{m}}
		}
		return gs, nil
	case ShareKind, ShareWidth:
		var gs []Group
		at := map[string]int{}
		for _, m := range mats {
			key := fmt.Sprintf("%s[in=%d]", Kind(m.Name), m.Cols)
			if share == ShareWidth {
				key = fmt.Sprintf("in=%d", m.Cols)
			}
			i, ok := at[key]
			if !ok {
				i = len(gs)
				at[key] = i
				gs = append(gs, Group{Name: key})
			}
			gs[i].Members = append(gs[i].Members, m)
		}
		return gs, nil
	}
	return nil, fmt.Errorf("share mode %q: want %q, %q or %q", share, ShareNone, ShareKind, ShareWidth)
}

// Setting is a sub-vector length and codebook size for a group.
type Setting struct {
	Dim, K int
}

// Cost counts the bytes a group's arrays take in a .pllm file for a setting
// (FORMAT.md, "pocketllm group arrays"): bit-packed indices, fp16 codebook,
// decoder MLPs in fp16 or fp32, fp16 RLN scales and shifts, one fp32 scale per
// member. Latent size equals Dim.
func Cost(g Group, s Setting, hidden int, decoderF32 bool) int64 {
	e := (g.Cols() + s.Dim - 1) / s.Dim
	n := int64(g.Rows()) * int64(e)
	indexBits := int64(IndexBits(s.K))
	mlpValues := int64(2*bindings.MLPParams(s.Dim, hidden, s.Dim) + bindings.MLPParams(s.Dim, hidden, s.Dim))
	mlpBytes := 2 * mlpValues
	if decoderF32 {
		mlpBytes = 4 * mlpValues
	}
	return (n*indexBits+7)/8 + // indices
		2*int64(s.K*s.Dim) + // codebook
		mlpBytes + // decoder MLPs
		2*int64(3*2*e*s.Dim) + // decoder RLNs
		4*int64(len(g.Members)) // scales
}

// IndexBits is ceil(log2 k), at least 1.
func IndexBits(k int) int {
	b := 1
	for 1<<b < k {
		b++
	}
	return b
}

// Options steer Choose.
type Options struct {
	Dims       []int // candidate sub-vector lengths
	MaxLog2K   int   // largest codebook is 2^MaxLog2K
	Hidden     int
	DecoderF32 bool
	// Overhead is the bytes a group's section costs besides its arrays
	// (header, descriptor, checksum, index entry), counted against the target.
	Overhead func(Group) int64
}

// Choose picks the setting that spends the most bits on indices per weight
// (log2 K / d, the quantity that sets a vector quantiser's resolution) while
// the whole group, every stored byte included, stays within target bits per
// weight. At equal rate the longer sub-vector wins: a vector quantiser in
// more dimensions packs its cells better and sees more of each row's
// correlations. A codebook is never larger than the number of sub-vectors it
// serves.
func Choose(g Group, target float64, o Options) (Setting, float64, error) {
	if !(target > 0) || math.IsInf(target, 0) {
		return Setting{}, 0, fmt.Errorf("bits per weight target %v must be a positive number", target)
	}
	weights := float64(g.Weights())
	best, bestBits, bestRate := Setting{}, 0.0, -1.0
	cheapest := math.Inf(1)
	for _, d := range o.Dims {
		e := (g.Cols() + d - 1) / d
		n := g.Rows() * e
		for lk := 1; lk <= o.MaxLog2K && 1<<lk <= n; lk++ {
			s := Setting{Dim: d, K: 1 << lk}
			bytes := Cost(g, s, o.Hidden, o.DecoderF32)
			if o.Overhead != nil {
				bytes += o.Overhead(g)
			}
			bits := 8 * float64(bytes) / weights
			cheapest = math.Min(cheapest, bits)
			if bits > target {
				continue
			}
			rate := float64(lk) / float64(d)
			if rate > bestRate || (rate == bestRate && d > best.Dim) {
				best, bestBits, bestRate = s, bits, rate
			}
		}
	}
	if bestRate < 0 {
		if math.IsInf(cheapest, 1) {
			return Setting{}, 0, fmt.Errorf("group %s: too few sub-vectors for any codebook with sub-vector lengths %v", g.Name, o.Dims)
		}
		return Setting{}, 0, fmt.Errorf("group %s (%d weights): cannot reach %.2f bits per weight, the cheapest setting costs %.2f (decoder and codebook outweigh the indices); share meta networks across layers (--share kind) or raise --bits", g.Name, g.Weights(), target, cheapest)
	}
	return best, bestBits, nil
}

// SortedKinds lists the distinct kinds of the matrices, for reports.
func SortedKinds(mats []Matrix) []string {
	set := map[string]bool{}
	for _, m := range mats {
		set[Kind(m.Name)] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseDims reads a comma-separated list of sub-vector lengths.
func ParseDims(s string) ([]int, error) {
	var dims []int
	for _, f := range strings.Split(s, ",") {
		var d int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &d); err != nil || d < 1 || d > 64 {
			return nil, fmt.Errorf("sub-vector lengths %q: each must be an integer in [1, 64]", s)
		}
		dims = append(dims, d)
	}
	return dims, nil
}
