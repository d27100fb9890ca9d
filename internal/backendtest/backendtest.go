// Package backendtest opens, for tests, every kernel backend this machine
// can run (go, cpu, the CPU library with each SIMD path forced, cuda) and
// runs a test once per backend as subtests named after it, so every
// package checks its backend-dependent code on the same set.
//
// A backend that cannot be opened is skipped, unless it is named in
// POCKETLLM_REQUIRE_BACKENDS (comma-separated; CI sets go,cpu,
// scripts/gpu-check go,cpu,cuda), where it is a failure that prints the
// selection report.
package backendtest

import (
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/nativetest"
)

// EnvRequire names the backends that must open.
const EnvRequire = "POCKETLLM_REQUIRE_BACKENDS"

// EnvCPUISA is read by the CPU library when a context is created
// (pocketllm.h): it forces one SIMD path.
const EnvCPUISA = "PLLM_CPU_ISA"

// CPUISAs are the CPU library's SIMD paths. Each runs as a backend of its
// own (cpu_generic, ...), so a path the auto choice does not pick on this
// machine is still checked; a path the processor cannot run is skipped.
var CPUISAs = []string{"generic", "avx2", "avx512"}

// Order is the order of the per-backend subtests: the reference first.
var Order = func() []string {
	names := []string{bindings.BackendGo, bindings.BackendCPU}
	for _, isa := range CPUISAs {
		names = append(names, bindings.BackendCPU+"_"+isa)
	}
	return append(names, bindings.BackendCUDA)
}()

type opened struct {
	k   bindings.Kernels
	isa string
	rep *bindings.Report
	err error
}

var (
	mu   sync.Mutex
	open = map[string]*opened{}
)

// Required reports the backends EnvRequire names.
func Required() map[string]bool {
	req := map[string]bool{}
	for _, name := range strings.Split(os.Getenv(EnvRequire), ",") {
		if name = strings.TrimSpace(name); name != "" {
			req[name] = true
		}
	}
	return req
}

// Known reports an error for a name in EnvRequire that is no backend.
func Known(t *testing.T) {
	for name := range Required() {
		if !slices.Contains(bindings.Backends, name) {
			t.Errorf("%s names %q; backends are %v", EnvRequire, name, bindings.Backends)
		}
	}
}

// Backend opens (once per test binary) the named backend of Order, or
// skips the test, or fails it when the backend is required.
func Backend(t *testing.T, name string) bindings.Kernels {
	t.Helper()
	// The native libraries read these in C, where go test's result cache
	// cannot see them; reading them here makes them part of the cache key.
	os.Getenv(EnvCPUISA)
	os.Getenv("OMP_NUM_THREADS")
	base, isa, variant := strings.Cut(name, "_")
	mu.Lock()
	o := open[name]
	if o == nil {
		o = &opened{isa: isa}
		if variant {
			old, had := os.LookupEnv(EnvCPUISA)
			os.Setenv(EnvCPUISA, isa)
			o.k, o.rep, o.err = bindings.Select(base)
			if had {
				os.Setenv(EnvCPUISA, old)
			} else {
				os.Unsetenv(EnvCPUISA)
			}
		} else {
			o.k, o.rep, o.err = bindings.Select(base)
		}
		open[name] = o
	}
	mu.Unlock()
	if o.err != nil {
		if variant && strings.Contains(o.err.Error(), "PLLM_ERR_UNSUPPORTED") {
			t.Skipf("this processor cannot run the %s path: %v", isa, o.err)
		}
		if Required()[base] {
			t.Fatalf("backend %s is required (%s) but not usable: %v\n%s", name, EnvRequire, o.err, o.rep)
		}
		t.Skipf("backend %s not usable here: %v", name, o.err)
	}
	t.Logf("%s on %s", name, o.rep.Device)
	return o.k
}

// ISA is the SIMD path a cpu variant of Order was opened with ("" for
// auto and for other backends).
func ISA(k bindings.Kernels) string {
	mu.Lock()
	defer mu.Unlock()
	for _, o := range open {
		if o.k == k {
			return o.isa
		}
	}
	return ""
}

// Each runs fn once per backend of Order, as subtests named after it.
func Each(t *testing.T, fn func(t *testing.T, k bindings.Kernels)) {
	for _, name := range Order {
		t.Run(name, func(t *testing.T) { fn(t, Backend(t, name)) })
	}
}

// Main runs the tests and then closes every backend opened: call it from
// TestMain.
func Main(m *testing.M) {
	// The library search never looks at the working directory; point it at
	// this checkout's build unless the caller (make) already has.
	nativetest.UseCheckoutBuild()
	code := m.Run()
	mu.Lock()
	for _, o := range open {
		if o.k != nil {
			bindings.Close(o.k)
		}
	}
	mu.Unlock()
	os.Exit(code)
}

// CheckNMSE fails t when got is not want within the normalised squared
// error tol (sum (got-want)^2 / sum want^2; the plain squared error when
// want is all zero), naming the worst element.
func CheckNMSE(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var num, den float64
	worst, at := 0.0, 0
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
		if math.Abs(d) > worst {
			worst, at = math.Abs(d), i
		}
	}
	if den > 0 {
		num /= den
	}
	if !(num <= tol) {
		t.Errorf("%s: NMSE %.3g > %.3g; worst at [%d]: got %v, want %v", what, num, tol, at, got[at], want[at])
	}
}

// CheckRel fails t when got is not want within the relative tolerance tol.
func CheckRel(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if !(math.Abs(got-want) <= tol*math.Abs(want)) {
		t.Errorf("%s = %.10g, want %.10g (relative tolerance %.1g)", what, got, want, tol)
	}
}

// CheckIndices fails t when got differs from want anywhere.
func CheckIndices(t *testing.T, what string, got []int32, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d indices, want %d", what, len(got), len(want))
	}
	for i, j := range got {
		if int64(j) != want[i] {
			t.Fatalf("%s: position %d holds %d, want %d", what, i, j, want[i])
		}
	}
}
