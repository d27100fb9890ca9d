// Package plan decides what gets compressed and how: which tensors (regular
// expressions on their names), which share one meta network (--share), and
// which sub-vector length and codebook size meet a bits-per-weight target
// when every stored byte is counted.
package plan

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

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

// ErrUnreachable is wrapped by Choose's error when no setting fits the target.
var ErrUnreachable = errors.New("cannot reach")

// Options steer Choose.
type Options struct {
	Dims     []int // candidate sub-vector lengths
	MaxLog2K int   // largest codebook is 2^MaxLog2K
	// Cost is the bytes a group takes in the file with a setting, every
	// stored byte counted (arrays, descriptor, framing).
	Cost func(Group, Setting) int64
}

// MaxBits bounds a bits-per-weight target from above: at 16 bits per weight
// the file is no smaller than the model stored at FP16, the reference every
// compression ratio is given against, so such a target compresses nothing.
const MaxBits = 16

// CheckTarget refuses a bits-per-weight target that is not a number above 0
// and below MaxBits (zero, negative, NaN, infinite, or too large to compress).
func CheckTarget(bits float64) error {
	if !(bits > 0 && bits < MaxBits) {
		return fmt.Errorf("target %v bits per weight: want a number above 0 and below %d (at %d or more the file is no smaller than the model at FP16)", bits, MaxBits, MaxBits)
	}
	return nil
}

// Choose picks the setting that spends the most bits on indices per weight
// (log2 K / d, the quantity that sets a vector quantiser's resolution) while
// the whole group, every stored byte included, stays within target bits per
// weight. At equal rate the longer sub-vector wins: a vector quantiser in
// more dimensions packs its cells better and sees more of each row's
// correlations. A codebook is never larger than the number of sub-vectors it
// serves.
func Choose(g Group, target float64, o Options) (Setting, float64, error) {
	if err := CheckTarget(target); err != nil {
		return Setting{}, 0, err
	}
	weights := float64(g.Weights())
	best, bestBits, bestRate := Setting{}, 0.0, -1.0
	cheapest := math.Inf(1)
	for _, d := range o.Dims {
		e := (g.Cols() + d - 1) / d
		n := g.Rows() * e
		for lk := 1; lk <= o.MaxLog2K && 1<<lk <= n; lk++ {
			s := Setting{Dim: d, K: 1 << lk}
			bits := 8 * float64(o.Cost(g, s)) / weights
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
		return Setting{}, 0, fmt.Errorf("group %s (%d weights): %w %.2f bits per weight, the cheapest setting costs %.2f (what a group stores besides its indices outweighs them); share across layers (--share kind or width) or raise --bits", g.Name, g.Weights(), ErrUnreachable, target, cheapest)
	}
	return best, bestBits, nil
}

// DefaultDims are the sub-vector lengths a bits target chooses among unless
// told otherwise: the paper's 4 and 8, and 2, which small models need.
var DefaultDims = []int{2, 4, 8}

// FormatDims is the inverse of ParseDims.
func FormatDims(dims []int) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, ",")
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
