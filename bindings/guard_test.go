package bindings_test

import (
	"fmt"
	"math"
	"testing"
)

// Guarded buffers, after gonum's guarded vectors: every slice handed to a
// kernel sits between two runs of guardLen sentinel values, and its
// capacity ends at its length, so that a native kernel writing past either
// end is seen from Go after the call. Output buffers start filled with a
// poison value, so an element a kernel should write and did not stays
// visible; input buffers must come back unchanged.

const guardLen = 64

var (
	guardF32  = math.Float32frombits(0x7fc0dead) // quiet NaNs with a payload no arithmetic produces
	poisonF32 = math.Float32frombits(0x7fc0beef)
	guardF64  = math.Float64frombits(0x7ff8_0000_dead_dead)
	poisonF64 = math.Float64frombits(0x7ff8_0000_beef_beef)
)

const (
	guardI32  = int32(-0x21524111) // 0xdeadbeef
	poisonI32 = int32(-0x0badf00d)
	guardI64  = int64(-0x2152411021524111)
	poisonI64 = int64(-0x0badf00d0badf00d)
)

type checker interface{ problem() string }

type guarded[T any] struct {
	name  string
	full  []T
	n     int
	guard T
	same  func(a, b T) bool
	want  []T // the body's expected content after the call; nil for outputs
}

func (g *guarded[T]) body() []T { return g.full[guardLen : guardLen+g.n : guardLen+g.n] }

// problem describes the first damage found, or returns "".
func (g *guarded[T]) problem() string {
	for i, v := range g.full {
		if i >= guardLen && i < guardLen+g.n {
			continue
		}
		if !g.same(v, g.guard) {
			if i >= guardLen+g.n {
				return fmt.Sprintf("%s: written %d values past its end", g.name, i-guardLen-g.n+1)
			}
			return fmt.Sprintf("%s: written %d values before its start", g.name, guardLen-i)
		}
	}
	if g.want != nil {
		for i, v := range g.body() {
			if !g.same(v, g.want[i]) {
				return fmt.Sprintf("%s[%d] changed from %v to %v by a call that must not write it", g.name, i, g.want[i], v)
			}
		}
	}
	return ""
}

func newGuarded[T any](name string, body []T, n int, guard, poison T, same func(a, b T) bool) *guarded[T] {
	g := &guarded[T]{name: name, full: make([]T, n+2*guardLen), n: n, guard: guard, same: same}
	for i := range g.full {
		g.full[i] = guard
	}
	b := g.body()
	if body != nil {
		copy(b, body)
	} else {
		for i := range b {
			b[i] = poison
		}
	}
	return g
}

func sameF32(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }
func sameF64(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
func sameI32(a, b int32) bool   { return a == b }
func sameI64(a, b int64) bool   { return a == b }

// arena hands out guarded buffers for one kernel call and checks them all
// afterwards.
type arena struct{ list []checker }

// in is an input: guarded, and expected unchanged by the call.
func (a *arena) in(name string, v []float32) []float32 {
	g := newGuarded(name, v, len(v), guardF32, poisonF32, sameF32)
	g.want = append([]float32(nil), v...)
	a.list = append(a.list, g)
	return g.body()
}

// inI32 is an index input.
func (a *arena) inI32(name string, v []int32) []int32 {
	g := newGuarded(name, v, len(v), guardI32, poisonI32, sameI32)
	g.want = append([]int32(nil), v...)
	a.list = append(a.list, g)
	return g.body()
}

// inout is a buffer the call updates in place (gradients, Adam state).
func (a *arena) inout(name string, v []float32) []float32 {
	g := newGuarded(name, v, len(v), guardF32, poisonF32, sameF32)
	a.list = append(a.list, g)
	return g.body()
}

// out is an output of n values, poisoned.
func (a *arena) out(name string, n int) []float32 {
	g := newGuarded[float32](name, nil, n, guardF32, poisonF32, sameF32)
	a.list = append(a.list, g)
	return g.body()
}

func (a *arena) outI32(name string, n int) []int32 {
	g := newGuarded[int32](name, nil, n, guardI32, poisonI32, sameI32)
	a.list = append(a.list, g)
	return g.body()
}

func (a *arena) outF64(name string, n int) []float64 {
	g := newGuarded[float64](name, nil, n, guardF64, poisonF64, sameF64)
	a.list = append(a.list, g)
	return g.body()
}

func (a *arena) outI64(name string, n int) []int64 {
	g := newGuarded[int64](name, nil, n, guardI64, poisonI64, sameI64)
	a.list = append(a.list, g)
	return g.body()
}

// frozen marks every buffer handed out so far as one the call must leave
// untouched (used for calls that must fail).
func (a *arena) frozen() {
	for _, c := range a.list {
		switch g := c.(type) {
		case *guarded[float32]:
			g.want = append([]float32(nil), g.body()...)
		case *guarded[float64]:
			g.want = append([]float64(nil), g.body()...)
		case *guarded[int32]:
			g.want = append([]int32(nil), g.body()...)
		case *guarded[int64]:
			g.want = append([]int64(nil), g.body()...)
		default:
			panic(fmt.Sprintf("unknown guarded type %T", c))
		}
	}
}

func (a *arena) check(t *testing.T) {
	t.Helper()
	for _, c := range a.list {
		if p := c.problem(); p != "" {
			t.Error(p)
		}
	}
}

func TestGuardsSeeDamage(t *testing.T) {
	var a arena
	x := a.out("x", 4)
	in := a.in("in", []float32{1, 2})
	g := a.list[0].(*guarded[float32])
	if p := g.problem(); p != "" {
		t.Fatalf("fresh buffer reported: %s", p)
	}
	x[3] = 1 // inside: fine for an output
	if p := g.problem(); p != "" {
		t.Fatalf("write inside an output reported: %s", p)
	}
	// Reach past the end the way a native kernel would: through the
	// backing array, which the slice's capacity hides from Go code.
	g.full[guardLen+4+2] = 0
	if p := g.problem(); p != "x: written 3 values past its end" {
		t.Fatalf("overrun reported as %q", p)
	}
	g.full[guardLen+4+2] = guardF32
	g.full[guardLen-1] = 0
	if p := g.problem(); p != "x: written 1 values before its start" {
		t.Fatalf("underrun reported as %q", p)
	}
	in[1] = 5
	if p := a.list[1].problem(); p == "" {
		t.Fatal("changed input not reported")
	}
}
