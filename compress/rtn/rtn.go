// Package rtn is the round-to-nearest baseline: every weight is replaced by
// one of 2^B evenly spaced levels chosen per group of consecutive input
// weights of a row, with the group's scale and offset kept in fp16.
//
// # Groups
//
// Row r of a [Rows, Cols] matrix is cut into ceil(Cols/G) groups of G
// consecutive weights; the last group of a row holds Cols - G*(ceil(Cols/G)-1)
// weights when Cols % G != 0. Groups never cross rows. Group g of row r has
// the flat number r*ceil(Cols/G) + g.
//
// # Levels
//
// A group with scale s and offset o (both fp16 values) reconstructs its
// code q in [0, 2^B-1] as
//
//	w = fl32(fl32(s * q) + o)
//
// in float32 arithmetic with each operation rounded (no fused multiply-add),
// so every reader gets the same bits. This is the "scale and minimum"
// convention (llama.cpp's Q4_1): the offset is the lowest level, stored as a
// float, not an integer zero point. It handles degenerate groups without a
// division: a constant or all-zero group has s = 0, every code 0 and w = o.
//
// # Choosing the range
//
// For a group with minimum m and maximum M, candidate ranges [p*m, p*M] are
// tried for p = 1 - 0.5*i/(Shrinks-1), i = 0 .. Shrinks-1 (p from 1 down to
// 0.5; Shrinks = 1 tries only p = 1, plain min/max RTN). For each candidate
// the stored values are formed first, s = fp16((p*M - p*m)/(2^B-1)) and
// o = fp16(p*m) (each computed in float64, rounded to float32, then to fp16
// to nearest even), then the codes are computed from those stored values,
// q = clamp(round((x - o)/s), 0, 2^B-1) (q = 0 when s = 0), and the candidate
// whose reconstruction has the smallest weighted squared error
// sum_i c_i (x_i - w_i)^2 is kept, ties to the larger p. The column weights
// c are the caller's per-input-column importance, or 1 for every column.
// Because p = 1 is always a candidate and is computed exactly as plain
// min/max RTN, the kept group's weighted error is never above plain RTN's.
//
// # Stored layout
//
// What a matrix costs (Cost): its Rows*Cols codes as one bit-packed array
// of B-bit unsigned integers in row-major order (ceil(Rows*Cols*B/8) bytes),
// plus, per group in the flat group order above, its scale and its offset as
// fp16 (2 + 2 bytes).
package rtn

import (
	"fmt"
	"math"

	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/matrix"
)

// DefaultShrinks is the number of candidate clipping ranges tried per group
// when Settings.Shrinks is 0.
const DefaultShrinks = 20

// MinShrink is the narrowest candidate range, as a fraction of [min, max].
const MinShrink = 0.5

// Settings choose the quantiser.
type Settings struct {
	Bits      int // bits per code, 1..8
	GroupSize int // consecutive input weights per group, >= 1
	// Shrinks is the number of clipping ranges tried per group (0:
	// DefaultShrinks; 1: plain min/max).
	Shrinks int
}

// Validate reports impossible settings.
func (s Settings) Validate() error {
	switch {
	case s.Bits < 1 || s.Bits > 8:
		return fmt.Errorf("rtn: %d bits per weight outside [1, 8]", s.Bits)
	case s.GroupSize < 1 || s.GroupSize > 1<<24:
		return fmt.Errorf("rtn: group size %d outside [1, 2^24]", s.GroupSize)
	case s.Shrinks < 0 || s.Shrinks > 1000:
		return fmt.Errorf("rtn: %d clipping candidates outside [0, 1000] (0 means %d)", s.Shrinks, DefaultShrinks)
	}
	return nil
}

func (s Settings) shrinks() int {
	if s.Shrinks == 0 {
		return DefaultShrinks
	}
	return s.Shrinks
}

// Result is what RTN keeps for one matrix, already in its stored precision,
// plus the error it measured.
type Result struct {
	Bits, GroupSize, Rows, Cols int
	Codes                       []uint32  // Rows*Cols codes in [0, 2^Bits-1], row-major
	Scales                      []float32 // one per group (flat group order), fp16 values
	Offsets                     []float32 // one per group (flat group order), fp16 values
	NMSE                        float64   // ||W - Reconstruct||^2 / ||W||^2
}

// GroupsPerRow is ceil(cols/groupSize).
func GroupsPerRow(cols, groupSize int) int { return (cols + groupSize - 1) / groupSize }

// Cost is the number of bytes the stored layout (package comment) takes for
// a [rows, cols] matrix.
func Cost(rows, cols int, st Settings) int64 {
	n := int64(rows) * int64(cols)
	groups := int64(rows) * int64(GroupsPerRow(cols, st.GroupSize))
	return (n*int64(st.Bits)+7)/8 + 4*groups
}

// Compress quantises m. colWeight is nil (every column counts the same) or
// one finite, non-negative importance per input column, not all zero.
func Compress(m matrix.Matrix, st Settings, colWeight []float32) (*Result, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if m.Rows < 1 || m.Cols < 1 || len(m.Data) != m.Rows*m.Cols {
		return nil, fmt.Errorf("rtn: %s: %d values for a %dx%d matrix", m.Name, len(m.Data), m.Rows, m.Cols)
	}
	for i, v := range m.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("rtn: %s: non-finite weight %v at row %d, column %d", m.Name, v, i/m.Cols, i%m.Cols)
		}
	}
	if err := matrix.CheckColWeight(colWeight, m.Cols); err != nil {
		return nil, fmt.Errorf("rtn: %s: %w", m.Name, err)
	}
	gpr := GroupsPerRow(m.Cols, st.GroupSize)
	res := &Result{
		Bits: st.Bits, GroupSize: st.GroupSize, Rows: m.Rows, Cols: m.Cols,
		Codes:   make([]uint32, len(m.Data)),
		Scales:  make([]float32, m.Rows*gpr),
		Offsets: make([]float32, m.Rows*gpr),
	}
	q := quantiser{qmax: float64(int(1)<<st.Bits - 1), shrinks: st.shrinks()}
	for r := 0; r < m.Rows; r++ {
		for g := 0; g < gpr; g++ {
			c0 := g * st.GroupSize
			c1 := min(c0+st.GroupSize, m.Cols)
			var cw []float32
			if colWeight != nil {
				cw = colWeight[c0:c1]
			}
			fg := r*gpr + g
			s, o, ok := q.group(m.Data[r*m.Cols+c0:r*m.Cols+c1], cw, res.Codes[r*m.Cols+c0:r*m.Cols+c1])
			if !ok {
				return nil, fmt.Errorf("rtn: %s: row %d, columns %d..%d: weights beyond the fp16 range of the stored scale and offset", m.Name, r, c0, c1-1)
			}
			res.Scales[fg], res.Offsets[fg] = s, o
		}
	}
	res.NMSE = matrix.NMSE(m.Data, Reconstruct(res))
	return res, nil
}

// Level is the reconstruction of code q with scale s and offset o, exactly
// as every reader must compute it (package comment).
func Level(s, o float32, q uint32) float32 {
	return float32(s*float32(q)) + o
}

// Reconstruct rebuilds the [Rows, Cols] weights from r.
func Reconstruct(r *Result) []float32 {
	gpr := GroupsPerRow(r.Cols, r.GroupSize)
	w := make([]float32, r.Rows*r.Cols)
	for row := 0; row < r.Rows; row++ {
		for c := 0; c < r.Cols; c++ {
			g := row*gpr + c/r.GroupSize
			i := row*r.Cols + c
			w[i] = Level(r.Scales[g], r.Offsets[g], r.Codes[i])
		}
	}
	return w
}

type quantiser struct {
	qmax    float64
	shrinks int
	tmp     []uint32
}

// group quantises x (column weights cw, nil for uniform) into codes and
// returns the stored scale and offset; ok is false when no candidate range
// is representable in fp16.
func (qz *quantiser) group(x, cw []float32, codes []uint32) (scale, offset float32, ok bool) {
	lo, hi := x[0], x[0]
	for _, v := range x[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	if cap(qz.tmp) < len(x) {
		qz.tmp = make([]uint32, len(x))
	}
	tmp := qz.tmp[:len(x)]
	best := math.Inf(1)
	for i := 0; i < qz.shrinks; i++ {
		p := 1.0
		if qz.shrinks > 1 {
			p = 1 - MinShrink*float64(i)/float64(qz.shrinks-1)
		}
		a, b := p*float64(lo), p*float64(hi)
		s := roundF16((b - a) / qz.qmax)
		o := roundF16(a)
		if math.IsInf(float64(s), 0) || math.IsInf(float64(o), 0) {
			continue
		}
		e := qz.codes(x, cw, s, o, tmp)
		// Strictly smaller: ties keep the wider range, so p = 1 wins
		// whenever clipping does not help.
		if e < best {
			best, scale, offset, ok = e, s, o, true
			copy(codes, tmp)
		}
	}
	return scale, offset, ok
}

// codes fills q with the codes of x for scale s and offset o and returns
// the weighted squared error of their reconstruction.
func (qz *quantiser) codes(x, cw []float32, s, o float32, q []uint32) float64 {
	var e float64
	for i, v := range x {
		var c uint32
		if s != 0 {
			c = uint32(min(max(math.Round((float64(v)-float64(o))/float64(s)), 0), qz.qmax))
		}
		q[i] = c
		d := float64(v) - float64(Level(s, o, c))
		if cw != nil {
			e += float64(cw[i]) * d * d
		} else {
			e += d * d
		}
	}
	return e
}

func roundF16(v float64) float32 { return fp16.ToFloat32(fp16.FromFloat32(float32(v))) }
