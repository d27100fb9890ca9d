package bindings

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// abiVersion is the PLLM_ABI_VERSION of native/include/pocketllm.h this
// package was written against.
const abiVersion = 3

// abiSymbol is the C function that reports a library's ABI version; it is
// resolved and checked before any other symbol.
const abiSymbol = "pllm_abi_version"

// checkABI refuses a library of another ABI version.
func checkABI(v int32) error {
	if v != abiVersion {
		return fmt.Errorf("ABI version %d, this build needs %d", v, abiVersion)
	}
	return nil
}

// errNotFound marks a candidate path where no library file exists, as
// opposed to a file that exists and failed to load.
var errNotFound = errors.New("not found")

// nativeLib is one loaded library: one Go function per C function of the
// ABI, registered on the resolved symbol. The Go signatures follow the
// header: int -> int32, int32_t -> int32, int64_t -> int64, pointers ->
// typed pointers (nil for NULL), contexts -> uintptr (never dereferenced in
// Go).
type nativeLib struct {
	path string

	abiVersion    func() int32
	backendScore  func() int32
	backendName   func() string
	buildInfo     func() string
	ctxCreate     func(out *uintptr) int32
	ctxDestroy    func(ctx uintptr)
	ctxError      func(ctx uintptr) string
	ctxDevice     func(ctx uintptr) string
	assign        func(ctx uintptr, z *float32, n int64, dz int32, c *float32, k int64, idx *int32, dist *float32) int32
	codebookStats func(ctx uintptr, z *float32, n int64, dz int32, idx *int32, k int64, sums *float64, counts *int64) int32
	mlpForward    func(ctx uintptr, in, hidden, out int32, p, x *float32, rows int64, pre, y *float32) int32
	mlpBackward   func(ctx uintptr, in, hidden, out int32, p, g, x, pre, dy *float32, rows int64, dx *float32) int32
	rlnForward    func(ctx uintptr, width int32, p, x *float32, groups int64, y, mean, rstd *float32) int32
	rlnBackward   func(ctx uintptr, width int32, p, g, x, dy *float32, groups int64, mean, rstd, dx *float32) int32
	adam          func(ctx uintptr, p, g, m, v *float32, n int64, lr, b1, b2, eps float32, step int64) int32
	decode        func(ctx uintptr, e, dim, latent, hidden int32, p, c *float32, k int64, idx *int32, rows int64, out *float32) int32
	gemm          func(ctx uintptr, transA, transB int32, m, n, k int64, alpha float32, a, b *float32, beta float32, c *float32) int32 // ABI 3

	// the resident training run (ABI 2); train handles are uintptr too
	trainCreate   func(ctx uintptr, iopt *int64, ni int32, dopt *float64, nd int32, out *uintptr) int32
	trainParams   func(t uintptr) int64
	trainUpload   func(t uintptr, x, wts, params *float32, initialCandidate int32) int32
	trainEpoch    func(t uintptr, order *int32, lr float32, firstStep int64, refresh int32, meanLoss, mse *float64, bestEpoch *int64) int32
	trainKMeans   func(t uintptr) int32
	trainDownload func(t uintptr, bestParams *float32, bestIdx *int32, bestMSE *float64, bestEpoch *int64) int32
	trainDestroy  func(t uintptr)
}

type symbol struct {
	name string
	fn   any // pointer to a func field of nativeLib
}

// symbols lists every C function the package binds; a library lacking any
// of them is refused.
func (l *nativeLib) symbols() []symbol {
	return []symbol{
		{abiSymbol, &l.abiVersion},
		{"pllm_backend_score", &l.backendScore},
		{"pllm_backend_name", &l.backendName},
		{"pllm_build_info", &l.buildInfo},
		{"pllm_ctx_create", &l.ctxCreate},
		{"pllm_ctx_destroy", &l.ctxDestroy},
		{"pllm_ctx_error", &l.ctxError},
		{"pllm_ctx_device", &l.ctxDevice},
		{"pllm_assign", &l.assign},
		{"pllm_codebook_stats", &l.codebookStats},
		{"pllm_mlp_forward", &l.mlpForward},
		{"pllm_mlp_backward", &l.mlpBackward},
		{"pllm_rln_forward", &l.rlnForward},
		{"pllm_rln_backward", &l.rlnBackward},
		{"pllm_adam", &l.adam},
		{"pllm_decode", &l.decode},
		{"pllm_gemm", &l.gemm},
		{"pllm_train_create", &l.trainCreate},
		{"pllm_train_params", &l.trainParams},
		{"pllm_train_upload", &l.trainUpload},
		{"pllm_train_epoch", &l.trainEpoch},
		{"pllm_train_kmeans_refresh", &l.trainKMeans},
		{"pllm_train_download", &l.trainDownload},
		{"pllm_train_destroy", &l.trainDestroy},
	}
}

// ErrNoMemory is wrapped by the error of a native call that failed with
// PLLM_ERR_NO_MEMORY (host or device memory exhausted), so that a caller
// can fall back to a way that needs less.
var ErrNoMemory = errors.New("out of memory")

// statusError is a failed call's PLLM_ERR_* code.
type statusError int32

func (e statusError) Error() string { return statusName(int32(e)) }

// Is makes errors.Is(err, ErrNoMemory) hold for PLLM_ERR_NO_MEMORY.
func (e statusError) Is(target error) bool { return target == ErrNoMemory && e == -3 }

// statusName maps the header's PLLM_ERR_* codes to their names.
func statusName(st int32) string {
	switch st {
	case -1:
		return "PLLM_ERR_INVALID_ARG"
	case -2:
		return "PLLM_ERR_INDEX_RANGE"
	case -3:
		return "PLLM_ERR_NO_MEMORY"
	case -4:
		return "PLLM_ERR_DEVICE"
	case -5:
		return "PLLM_ERR_UNSUPPORTED"
	}
	return fmt.Sprintf("status %d", st)
}

// nativeKernels implements Kernels on one context of a native library.
// Calls are serialised by mu: the header allows one thread at a time per
// context, and the error text read after a failed call must be that call's.
type nativeKernels struct {
	lib     *nativeLib
	name    string
	device  string
	mu      sync.Mutex
	ctx     uintptr
	cleanup runtime.Cleanup
	runs    map[uintptr]struct{} // live pllm_train handles, destroyed before ctx
}

// newNativeKernels creates a context on lib. backend is the expected
// pllm_backend_name.
func newNativeKernels(lib *nativeLib, backend string) (*nativeKernels, error) {
	var ctx uintptr
	if st := lib.ctxCreate(&ctx); st != 0 || ctx == 0 {
		return nil, fmt.Errorf("pllm_ctx_create failed with %s", statusName(st))
	}
	k := &nativeKernels{lib: lib, name: backend, ctx: ctx, device: lib.ctxDevice(ctx)}
	// A forgotten Close must not leak device memory for the life of the
	// process; the cleanup holds the handle and the function, not k.
	destroy := lib.ctxDestroy
	k.cleanup = runtime.AddCleanup(k, func(c uintptr) { destroy(c) }, ctx)
	return k, nil
}

// Name is "cpu" or "cuda".
func (k *nativeKernels) Name() string { return k.name }

// Close destroys the context. Later calls return an error. It is safe to
// call more than once.
func (k *nativeKernels) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx != 0 {
		k.cleanup.Stop()
		for h := range k.runs {
			k.lib.trainDestroy(h)
		}
		k.runs = nil
		k.lib.ctxDestroy(k.ctx)
		k.ctx = 0
	}
	return nil
}

// call runs one C function on the context and turns a failure into an
// error carrying the context's message.
func (k *nativeKernels) call(fn string, f func(ctx uintptr) int32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == 0 {
		return fmt.Errorf("bindings: %s %s: kernels used after Close", k.name, fn)
	}
	if st := f(k.ctx); st != 0 {
		return fmt.Errorf("bindings: %s %s: %s (%w)", k.name, fn, k.lib.ctxError(k.ctx), statusError(st))
	}
	return nil
}

// sizeOf multiplies non-negative dimensions, reporting overflow of int64
// (which no real buffer reaches, but a bad argument can).
func sizeOf(dims ...int) (int, bool) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	if n > math.MaxInt {
		return 0, false
	}
	return int(n), true
}

// dim is one size argument and the range the ABI accepts for it.
type dim struct {
	name    string
	v, lo   int
	isCount bool // an int64_t count (n, rows, groups, k); otherwise an int32_t size
}

// size is an int32_t shape argument that must be at least 1.
func size(name string, v int) dim { return dim{name: name, v: v, lo: 1} }

// count is an int64_t count that may be 0.
func count(name string, v int) dim { return dim{name: name, v: v, isCount: true} }

// checkDims refuses sizes outside the ABI's ranges.
func checkDims(kernel string, ds ...dim) error {
	for _, d := range ds {
		hi := math.MaxInt32
		if d.isCount {
			hi = math.MaxInt
		}
		if d.v < d.lo || d.v > hi {
			return fmt.Errorf("bindings: %s: %s = %d is outside [%d, %d]", kernel, d.name, d.v, d.lo, hi)
		}
	}
	return nil
}

// buf is one slice argument to check: it must hold at least the product of
// dims values; nilOK allows a nil slice (an optional output).
type buf struct {
	name  string
	len   int
	isNil bool
	dims  []int
	nilOK bool
}

func f32(name string, s []float32, dims ...int) buf {
	return buf{name: name, len: len(s), isNil: s == nil, dims: dims}
}
func i32(name string, s []int32, dims ...int) buf {
	return buf{name: name, len: len(s), isNil: s == nil, dims: dims}
}
func f64s(name string, s []float64, dims ...int) buf {
	return buf{name: name, len: len(s), isNil: s == nil, dims: dims}
}
func i64s(name string, s []int64, dims ...int) buf {
	return buf{name: name, len: len(s), isNil: s == nil, dims: dims}
}

func optional(b buf) buf { b.nilOK = true; return b }

// checkBufs makes sure no native call can run past the end of a slice.
func checkBufs(kernel string, bufs ...buf) error {
	for _, b := range bufs {
		if b.nilOK && b.isNil {
			continue
		}
		need, ok := sizeOf(b.dims...)
		if !ok {
			return fmt.Errorf("bindings: %s: size of %s overflows (%v)", kernel, b.name, b.dims)
		}
		if b.len < need {
			return fmt.Errorf("bindings: %s: %s holds %d values, need %d", kernel, b.name, b.len, need)
		}
	}
	return nil
}

// ptr returns the address of s's first element, or nil when the call
// needs none of it (the header allows NULL for an empty buffer).
func ptr[T any](s []T, need int) *T {
	if need == 0 || len(s) == 0 {
		return nil
	}
	return &s[0]
}

// elems is the product of dimensions already checked by checkBufs.
func elems(dims ...int) int { n, _ := sizeOf(dims...); return n }

// Assign implements Kernels.Assign.
func (k *nativeKernels) Assign(z []float32, n, dz int, c []float32, kk int, idx []int32, dist []float32) error {
	const kn = "assign"
	if err := checkDims(kn, count("n", n), size("dz", dz), dim{name: "k", v: kk, lo: 1, isCount: true}); err != nil {
		return err
	}
	if err := checkBufs(kn, f32("latents", z, n, dz), f32("codebook", c, kk, dz), i32("idx", idx, n), optional(f32("dist", dist, n))); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.assign(ctx, ptr(z, elems(n, dz)), int64(n), int32(dz), ptr(c, elems(kk, dz)), int64(kk), ptr(idx, n), ptr(dist, n))
	})
	runtime.KeepAlive(z)
	runtime.KeepAlive(c)
	runtime.KeepAlive(idx)
	runtime.KeepAlive(dist)
	return err
}

// CodebookStats implements Kernels.CodebookStats.
func (k *nativeKernels) CodebookStats(z []float32, n, dz int, idx []int32, kk int, sums []float64, counts []int64) error {
	const kn = "codebook stats"
	if err := checkDims(kn, count("n", n), size("dz", dz), dim{name: "k", v: kk, lo: 1, isCount: true}); err != nil {
		return err
	}
	if err := checkBufs(kn, f32("latents", z, n, dz), i32("idx", idx, n), f64s("sums", sums, kk, dz), i64s("counts", counts, kk)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.codebookStats(ctx, ptr(z, elems(n, dz)), int64(n), int32(dz), ptr(idx, n), int64(kk), ptr(sums, elems(kk, dz)), ptr(counts, kk))
	})
	runtime.KeepAlive(z)
	runtime.KeepAlive(idx)
	runtime.KeepAlive(sums)
	runtime.KeepAlive(counts)
	return err
}

func checkMLPShape(kn string, m MLP, rows int) error {
	return checkDims(kn, size("in", m.In), size("hidden", m.Hidden), size("out", m.Out), count("rows", rows))
}

// MLPForward implements Kernels.MLPForward.
func (k *nativeKernels) MLPForward(m MLP, x []float32, rows int, pre, y []float32) error {
	const kn = "mlp forward"
	if err := checkMLPShape(kn, m, rows); err != nil {
		return err
	}
	if err := checkBufs(kn, f32("parameters", m.P, m.NumParams()), f32("x", x, rows, m.In), f32("pre", pre, rows, m.Hidden), f32("y", y, rows, m.Out)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.mlpForward(ctx, int32(m.In), int32(m.Hidden), int32(m.Out), ptr(m.P, 1), ptr(x, elems(rows, m.In)), int64(rows), ptr(pre, elems(rows, m.Hidden)), ptr(y, elems(rows, m.Out)))
	})
	runtime.KeepAlive(m.P)
	runtime.KeepAlive(x)
	runtime.KeepAlive(pre)
	runtime.KeepAlive(y)
	return err
}

// MLPBackward implements Kernels.MLPBackward.
func (k *nativeKernels) MLPBackward(m, g MLP, x, pre, dy []float32, rows int, dx []float32) error {
	const kn = "mlp backward"
	if err := checkMLPShape(kn, m, rows); err != nil {
		return err
	}
	if g.In != m.In || g.Hidden != m.Hidden || g.Out != m.Out {
		return fmt.Errorf("bindings: %s: gradient shape %d->%d->%d differs from the network's %d->%d->%d", kn, g.In, g.Hidden, g.Out, m.In, m.Hidden, m.Out)
	}
	if err := checkBufs(kn, f32("parameters", m.P, m.NumParams()), f32("gradient", g.P, m.NumParams()), f32("x", x, rows, m.In),
		f32("pre", pre, rows, m.Hidden), f32("dy", dy, rows, m.Out), optional(f32("dx", dx, rows, m.In))); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.mlpBackward(ctx, int32(m.In), int32(m.Hidden), int32(m.Out), ptr(m.P, 1), ptr(g.P, 1), ptr(x, elems(rows, m.In)),
			ptr(pre, elems(rows, m.Hidden)), ptr(dy, elems(rows, m.Out)), int64(rows), ptr(dx, elems(rows, m.In)))
	})
	runtime.KeepAlive(m.P)
	runtime.KeepAlive(g.P)
	runtime.KeepAlive(x)
	runtime.KeepAlive(pre)
	runtime.KeepAlive(dy)
	runtime.KeepAlive(dx)
	return err
}

func checkRLNShape(kn string, n RLN, groups int) error {
	return checkDims(kn, size("width", n.Width), count("groups", groups))
}

// RLNForward implements Kernels.RLNForward.
func (k *nativeKernels) RLNForward(n RLN, x []float32, groups int, y, mean, rstd []float32) error {
	const kn = "rln forward"
	if err := checkRLNShape(kn, n, groups); err != nil {
		return err
	}
	w := n.Width
	if err := checkBufs(kn, f32("parameters", n.P, 2, w), f32("x", x, groups, w), f32("y", y, groups, w), f32("mean", mean, groups), f32("rstd", rstd, groups)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.rlnForward(ctx, int32(w), ptr(n.P, 1), ptr(x, elems(groups, w)), int64(groups), ptr(y, elems(groups, w)), ptr(mean, groups), ptr(rstd, groups))
	})
	runtime.KeepAlive(n.P)
	runtime.KeepAlive(x)
	runtime.KeepAlive(y)
	runtime.KeepAlive(mean)
	runtime.KeepAlive(rstd)
	return err
}

// RLNBackward implements Kernels.RLNBackward.
func (k *nativeKernels) RLNBackward(n, g RLN, x, dy []float32, groups int, mean, rstd, dx []float32) error {
	const kn = "rln backward"
	if err := checkRLNShape(kn, n, groups); err != nil {
		return err
	}
	if g.Width != n.Width {
		return fmt.Errorf("bindings: %s: gradient width %d differs from %d", kn, g.Width, n.Width)
	}
	w := n.Width
	if err := checkBufs(kn, f32("parameters", n.P, 2, w), f32("gradient", g.P, 2, w), f32("x", x, groups, w), f32("dy", dy, groups, w),
		f32("mean", mean, groups), f32("rstd", rstd, groups), f32("dx", dx, groups, w)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.rlnBackward(ctx, int32(w), ptr(n.P, 1), ptr(g.P, 1), ptr(x, elems(groups, w)), ptr(dy, elems(groups, w)), int64(groups),
			ptr(mean, groups), ptr(rstd, groups), ptr(dx, elems(groups, w)))
	})
	runtime.KeepAlive(n.P)
	runtime.KeepAlive(g.P)
	runtime.KeepAlive(x)
	runtime.KeepAlive(dy)
	runtime.KeepAlive(mean)
	runtime.KeepAlive(rstd)
	runtime.KeepAlive(dx)
	return err
}

// Adam implements Kernels.Adam.
func (k *nativeKernels) Adam(p, g, m, v []float32, lr, b1, b2, eps float32, step int) error {
	const kn = "adam"
	if step < 1 {
		return fmt.Errorf("bindings: %s: step %d, must count from 1", kn, step)
	}
	n := len(p)
	if err := checkBufs(kn, f32("g", g, n), f32("m", m, n), f32("v", v, n)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.adam(ctx, ptr(p, n), ptr(g, n), ptr(m, n), ptr(v, n), int64(n), lr, b1, b2, eps, int64(step))
	})
	runtime.KeepAlive(p)
	runtime.KeepAlive(g)
	runtime.KeepAlive(m)
	runtime.KeepAlive(v)
	return err
}

// Decode implements Kernels.Decode. The codebook size is len(c)/Latent, as
// in the pure-Go kernels; index range is checked by the library.
func (k *nativeKernels) Decode(dec Decoder, c []float32, idx []int32, rows int, out []float32) error {
	const kn = "decode"
	if err := checkDims(kn, size("E", dec.E), size("dim", dec.Dim), size("latent", dec.Latent), size("hidden", dec.Hidden), count("rows", rows)); err != nil {
		return err
	}
	if len(c) == 0 || len(c)%dec.Latent != 0 {
		return fmt.Errorf("bindings: %s: codebook of %d values is not whole codewords of %d", kn, len(c), dec.Latent)
	}
	kk := len(c) / dec.Latent
	width, ok := sizeOf(dec.E, dec.Latent)
	if !ok || width > math.MaxInt32 {
		return fmt.Errorf("bindings: %s: row width E*latent = %d*%d too large", kn, dec.E, dec.Latent)
	}
	if err := checkBufs(kn, f32("decoder parameters", dec.P, DecoderParams(dec.E, dec.Dim, dec.Latent, dec.Hidden)),
		i32("idx", idx, rows, dec.E), f32("out", out, rows, dec.E, dec.Dim)); err != nil {
		return err
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.decode(ctx, int32(dec.E), int32(dec.Dim), int32(dec.Latent), int32(dec.Hidden), ptr(dec.P, 1), ptr(c, 1), int64(kk),
			ptr(idx, elems(rows, dec.E)), int64(rows), ptr(out, elems(rows, dec.E, dec.Dim)))
	})
	runtime.KeepAlive(dec.P)
	runtime.KeepAlive(c)
	runtime.KeepAlive(idx)
	runtime.KeepAlive(out)
	return err
}

// Gemm implements Kernels.Gemm. The flags cross as int32 (0 or 1): purego
// does not promise how a Go bool is laid out in a C int argument.
func (k *nativeKernels) Gemm(transA, transB bool, m, n, kk int, alpha float32, a, b []float32, beta float32, c []float32) error {
	const kn = "gemm"
	if err := checkGemm(m, n, kk, a, b, c); err != nil {
		return err
	}
	flag := func(v bool) int32 {
		if v {
			return 1
		}
		return 0
	}
	err := k.call(kn, func(ctx uintptr) int32 {
		return k.lib.gemm(ctx, flag(transA), flag(transB), int64(m), int64(n), int64(kk), alpha,
			ptr(a, elems(m, kk)), ptr(b, elems(kk, n)), beta, ptr(c, elems(m, n)))
	})
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
	return err
}
