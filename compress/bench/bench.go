// Package bench measures the kernels of every backend side by side on a
// standard ladder of sizes (and a naive Go loop as the baseline for
// assignment), plus one PocketLLM training epoch: what the CLI's bench
// command prints and BENCHMARKS.md reports.
package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"pocketllm-native/bindings"
)

// Bench kernels: the names Run and Case use.
const (
	Assign      = "assign"
	Decode      = "decode"
	MLPForward  = "mlp_forward"
	MLPBackward = "mlp_backward"
	Stats       = "codebook_stats"
	Gemm        = "gemm"
)

// Naive is the Backend of rows measuring the naive baseline: a plain
// single-threaded Go loop over the same data (assignment only).
const Naive = "naive"

// naiveMaxN caps the latents the naive baseline runs over: its cost per
// latent does not depend on N (the codebook stays in cache), and the full
// ladder would take minutes at naive speed.
const naiveMaxN = 16384

// Case is one kernel at one shape.
type Case struct {
	Kernel string // Assign, Stats, Decode, MLPForward, MLPBackward or Gemm
	N      int    // latents (assign, stats), sub-vectors (decode), rows (MLP) or m = n = k (gemm)
	K      int    // codewords (assign, stats, decode)
	Dim    int    // dz (assign); sub-vector length (decode); MLP input and output width
	Hidden int    // hidden width (decode, MLP)
	E      int    // sub-vectors per weight row (decode)
}

// Shape names the case in rows and benchmark names.
func (c Case) Shape() string {
	switch c.Kernel {
	case Assign, Stats:
		return fmt.Sprintf("dz%d_K%d_N%d", c.Dim, c.K, c.N)
	case Decode:
		return fmt.Sprintf("dim%d_h%d_E%d_K%d_N%d", c.Dim, c.Hidden, c.E, c.K, c.N)
	case Gemm:
		return fmt.Sprintf("%dx%dx%d", c.N, c.N, c.N)
	}
	return fmt.Sprintf("%dx%dx%d_N%d", c.Dim, c.Hidden, c.Dim, c.N)
}

// FLOPs is the arithmetic of one call, counting a multiply-add as 2 and
// only the matrix products (the distance loop for assign): 2*N*K*dz for
// assign, 2*N*(in*h + h*out) for the MLP forward pass and twice that
// backward, 2*N*(5*latent*h + h*dim) for decode (latent = dim), 2*N^3 for
// a square gemm.
func (c Case) FLOPs() float64 {
	n := float64(c.N)
	switch c.Kernel {
	case Assign:
		return 2 * n * float64(c.K) * float64(c.Dim)
	case MLPForward:
		return 2 * n * float64(2*c.Dim*c.Hidden)
	case MLPBackward:
		return 4 * n * float64(2*c.Dim*c.Hidden)
	case Decode:
		return 2 * n * float64(5*c.Dim*c.Hidden+c.Hidden*c.Dim)
	case Gemm:
		return 2 * n * n * n
	}
	return 0
}

// Ladder is the standard set of sizes: assignment with dz = 8, K in
// {256, 4096}, N in {16384, 262144}; codebook statistics at K = 4096;
// reconstruction with dim = 8, hidden = 16, rows of 8 sub-vectors; the MLP
// 8 -> 16 -> 8 forward and backward; square products C = A*B of side 64,
// 256 and 1024.
// short keeps only the smaller N of each (gemm: 64 and 256).
func Ladder(short bool) []Case {
	ns := []int{16384, 262144}
	if short {
		ns = ns[:1]
	}
	var cs []Case
	for _, k := range []int{256, 4096} {
		for _, n := range ns {
			cs = append(cs, Case{Kernel: Assign, N: n, K: k, Dim: 8})
		}
	}
	for _, n := range ns {
		cs = append(cs, Case{Kernel: Stats, N: n, K: 4096, Dim: 8})
	}
	for _, n := range ns {
		cs = append(cs, Case{Kernel: Decode, N: n, K: 4096, Dim: 8, Hidden: 16, E: 8})
	}
	for _, kern := range []string{MLPForward, MLPBackward} {
		for _, n := range ns {
			cs = append(cs, Case{Kernel: kern, N: n, Dim: 8, Hidden: 16})
		}
	}
	sides := []int{64, 256, 1024}
	if short {
		sides = sides[:2]
	}
	for _, n := range sides {
		cs = append(cs, Case{Kernel: Gemm, N: n})
	}
	return cs
}

// Row is one measurement.
type Row struct {
	Kernel, Backend, Shape string
	Seconds                float64 // per call
	GFLOPS                 float64 // FLOPs / Seconds / 1e9
	ItemsPerSec            float64 // latents, sub-vectors or rows per second
	VsNaive                float64 // naive seconds per item / this row's; 0 without a naive row
}

// Run measures every case on every backend (and, when naive is set,
// the naive assignment baseline), each call repeated until minTime has
// passed after one warm-up call. Rows come in case order, backends in the
// order given, naive last.
func Run(ks []bindings.Kernels, cases []Case, minTime time.Duration, naive bool) ([]Row, error) {
	var rows []Row
	for _, c := range cases {
		first := len(rows)
		for _, k := range ks {
			op, err := newOp(k, c)
			if err != nil {
				return nil, err
			}
			sec, err := measure(op, minTime)
			if err != nil {
				return nil, fmt.Errorf("bench %s %s on %s: %v", c.Kernel, c.Shape(), k.Name(), err)
			}
			rows = append(rows, newRow(c, k.Name(), sec, c.N))
		}
		if naive && c.Kernel == Assign {
			nc := c
			nc.N = min(c.N, naiveMaxN)
			op := newNaiveAssign(nc)
			sec, err := measure(op, minTime)
			if err != nil {
				return nil, err
			}
			nr := newRow(nc, Naive, sec, nc.N)
			nr.Shape = c.Shape()
			nr.VsNaive = 1
			for i := first; i < len(rows); i++ {
				rows[i].VsNaive = rows[i].ItemsPerSec / nr.ItemsPerSec
			}
			rows = append(rows, nr)
		}
	}
	return rows, nil
}

func newRow(c Case, backend string, sec float64, n int) Row {
	return Row{
		Kernel: c.Kernel, Backend: backend, Shape: c.Shape(), Seconds: sec,
		GFLOPS: c.FLOPs() / sec / 1e9, ItemsPerSec: float64(n) / sec,
	}
}

// measure times op: one warm-up call, then batches of growing size until
// one batch lasts minTime.
func measure(op func() error, minTime time.Duration) (float64, error) {
	if err := op(); err != nil {
		return 0, err
	}
	reps := 1
	for {
		start := time.Now()
		for i := 0; i < reps; i++ {
			if err := op(); err != nil {
				return 0, err
			}
		}
		el := time.Since(start)
		if el >= minTime || reps >= 1<<24 {
			return el.Seconds() / float64(reps), nil
		}
		next := reps * 2
		if el > 0 {
			next = max(next, int(float64(reps)*1.2*float64(minTime)/float64(el)))
		}
		reps = min(next, 100*reps)
	}
}

func randomVec(r *rand.Rand, n int, sd float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = sd * float32(r.NormFloat64())
	}
	return v
}

// newOp allocates the inputs of one case and returns the call to time.
func newOp(k bindings.Kernels, c Case) (func() error, error) {
	r := rand.New(rand.NewPCG(uint64(c.N), uint64(c.K)))
	switch c.Kernel {
	case Assign:
		z, cb := randomVec(r, c.N*c.Dim, 1), randomVec(r, c.K*c.Dim, 1)
		idx, dist := make([]int32, c.N), make([]float32, c.N)
		return func() error { return k.Assign(z, c.N, c.Dim, cb, c.K, idx, dist) }, nil
	case Stats:
		z := randomVec(r, c.N*c.Dim, 1)
		idx := make([]int32, c.N)
		for i := range idx {
			idx[i] = int32(r.IntN(c.K))
		}
		sums, counts := make([]float64, c.K*c.Dim), make([]int64, c.K)
		return func() error { return k.CodebookStats(z, c.N, c.Dim, idx, c.K, sums, counts) }, nil
	case Decode:
		if c.E <= 0 || c.N%c.E != 0 {
			return nil, fmt.Errorf("bench decode: N=%d is not whole rows of E=%d", c.N, c.E)
		}
		dec := bindings.Decoder{E: c.E, Dim: c.Dim, Latent: c.Dim, Hidden: c.Hidden}
		dec.P = randomVec(r, bindings.DecoderParams(c.E, c.Dim, c.Dim, c.Hidden), 0.3)
		cb := randomVec(r, c.K*c.Dim, 1)
		idx := make([]int32, c.N)
		for i := range idx {
			idx[i] = int32(r.IntN(c.K))
		}
		out := make([]float32, c.N*c.Dim)
		rows := c.N / c.E
		return func() error { return k.Decode(dec, cb, idx, rows, out) }, nil
	case MLPForward, MLPBackward:
		m := bindings.MLP{In: c.Dim, Hidden: c.Hidden, Out: c.Dim}
		m.P = randomVec(r, m.NumParams(), 0.3)
		x := randomVec(r, c.N*c.Dim, 1)
		pre, y := make([]float32, c.N*c.Hidden), make([]float32, c.N*c.Dim)
		if c.Kernel == MLPForward {
			return func() error { return k.MLPForward(m, x, c.N, pre, y) }, nil
		}
		if err := k.MLPForward(m, x, c.N, pre, y); err != nil {
			return nil, err
		}
		g := m
		g.P = make([]float32, m.NumParams())
		dx := make([]float32, c.N*c.Dim)
		return func() error { return k.MLPBackward(m, g, x, pre, y, c.N, dx) }, nil
	case Gemm:
		a, bm, cm := randomVec(r, c.N*c.N, 1), randomVec(r, c.N*c.N, 1), make([]float32, c.N*c.N)
		return func() error { return k.Gemm(false, false, c.N, c.N, c.N, 1, a, bm, 0, cm) }, nil
	}
	return nil, fmt.Errorf("bench: unknown kernel %q", c.Kernel)
}

// newNaiveAssign is the baseline: the loop of the Assign doc comment,
// written plainly, on one goroutine.
func newNaiveAssign(c Case) func() error {
	r := rand.New(rand.NewPCG(uint64(c.N), uint64(c.K)))
	z, cb := randomVec(r, c.N*c.Dim, 1), randomVec(r, c.K*c.Dim, 1)
	idx, dist := make([]int32, c.N), make([]float32, c.N)
	return func() error {
		for i := 0; i < c.N; i++ {
			best, bestJ := float32(0), -1
			for j := 0; j < c.K; j++ {
				var s float32
				for t := 0; t < c.Dim; t++ {
					d := z[i*c.Dim+t] - cb[j*c.Dim+t]
					s += d * d
				}
				if bestJ < 0 || s < best {
					best, bestJ = s, j
				}
			}
			idx[i], dist[i] = int32(bestJ), best
		}
		return nil
	}
}

// ParseCase reads one case written KERNEL:key=value,..., e.g.
// assign:n=16777216,k=32768,dz=8 or
// decode:n=16777216,k=32768,dim=8,hidden=16,e=512. Keys: n and k for
// assign and codebook_stats (with dz), decode (with dim, hidden, e) and the
// MLP kernels (n rows, dim, hidden); a key a kernel does not use, or a
// missing one, is an error.
func ParseCase(spec string) (Case, error) {
	kernel, args, _ := strings.Cut(spec, ":")
	var c Case
	c.Kernel = kernel
	var keys []string
	switch kernel {
	case Assign, Stats:
		keys = []string{"n", "k", "dz"}
	case Decode:
		keys = []string{"n", "k", "dim", "hidden", "e"}
	case MLPForward, MLPBackward:
		keys = []string{"n", "dim", "hidden"}
	default:
		return c, fmt.Errorf("%q: unknown kernel %q (want %s, %s, %s, %s or %s)", spec, kernel,
			Assign, Stats, Decode, MLPForward, MLPBackward)
	}
	dst := map[string]*int{"n": &c.N, "k": &c.K, "dz": &c.Dim, "dim": &c.Dim, "hidden": &c.Hidden, "e": &c.E}
	seen := map[string]bool{}
	for _, kv := range strings.Split(args, ",") {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || !slices.Contains(keys, key) || seen[key] {
			return c, fmt.Errorf("%q: %q is not one of %s=VALUE, each once", spec, kv, strings.Join(keys, "=, "))
		}
		v, err := strconv.Atoi(val)
		if err != nil || v < 1 {
			return c, fmt.Errorf("%q: %s=%s is not a positive integer", spec, key, val)
		}
		*dst[key], seen[key] = v, true
	}
	for _, key := range keys {
		if !seen[key] {
			return c, fmt.Errorf("%q: %s= is missing", spec, key)
		}
	}
	if kernel == Decode && c.N%c.E != 0 {
		return c, fmt.Errorf("%q: n=%d is not whole rows of e=%d sub-vectors", spec, c.N, c.E)
	}
	return c, nil
}
