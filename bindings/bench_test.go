package bindings

import (
	"testing"
	"time"
)

// Benchmark ladders: every usable backend side by side (and the naive
// loop for assignment), reporting GFLOP/s and items/s. For ratios measured
// in one run, use RunBench (the CLI's bench command).
//
//	go test ./bindings -run '^$' -bench . -benchtime 3x

func usableBackends(b *testing.B) []Kernels {
	var ks []Kernels
	for _, name := range []string{BackendGo, BackendCPU, BackendCUDA} {
		k, _, err := Select(name)
		if err != nil {
			b.Logf("%s: %v", name, err)
			continue
		}
		ks = append(ks, k)
	}
	b.Cleanup(func() {
		for _, k := range ks {
			Close(k)
		}
	})
	return ks
}

func benchKernel(b *testing.B, kernel string) {
	ks := usableBackends(b)
	for _, c := range BenchLadder(false) {
		if c.Kernel != kernel {
			continue
		}
		for _, k := range ks {
			b.Run(c.Shape()+"/"+k.Name(), func(b *testing.B) {
				op, err := newBenchOp(k, c)
				if err != nil {
					b.Fatal(err)
				}
				runOp(b, c, op, c.N)
			})
		}
		if kernel == BenchAssign {
			b.Run(c.Shape()+"/"+BenchNaive, func(b *testing.B) {
				nc := c
				nc.N = min(c.N, naiveMaxN)
				runOp(b, nc, newNaiveAssign(nc), nc.N)
			})
		}
	}
}

func runOp(b *testing.B, c BenchCase, op func() error, items int) {
	if err := op(); err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPUSeconds()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	cpuSec := (processCPUSeconds() - cpu0) / float64(b.N)
	if f := c.FLOPs(); f > 0 { // a reduction like codebook statistics has no FLOP figure worth stating
		b.ReportMetric(f/sec/1e9, "GFLOP/s")
		// On a shared machine wall time includes waiting for a core; the
		// work per CPU-second spent (spin-waiting threads included) does not.
		if cpuSec > 0 {
			b.ReportMetric(f/cpuSec/1e9, "GFLOP/CPU-s")
		}
	}
	b.ReportMetric(float64(items)/sec, "items/s")
}

func BenchmarkAssign(b *testing.B)        { benchKernel(b, BenchAssign) }
func BenchmarkCodebookStats(b *testing.B) { benchKernel(b, BenchStats) }
func BenchmarkDecode(b *testing.B)        { benchKernel(b, BenchDecode) }
func BenchmarkMLPForward(b *testing.B)    { benchKernel(b, BenchMLPForward) }
func BenchmarkMLPBackward(b *testing.B)   { benchKernel(b, BenchMLPBackward) }
func BenchmarkGemm(b *testing.B)          { benchKernel(b, BenchGemm) }

// RunBench on tiny cases: every row present, in order, with its figures
// filled and the naive ratio attached to the assignment rows. (Correctness
// of the harness only; no timing is asserted.)
func TestRunBench(t *testing.T) {
	cases := []BenchCase{
		{Kernel: BenchAssign, N: 64, K: 16, Dim: 8},
		{Kernel: BenchDecode, N: 32, K: 16, Dim: 8, Hidden: 16, E: 8},
		{Kernel: BenchMLPForward, N: 40, Dim: 8, Hidden: 16},
		{Kernel: BenchMLPBackward, N: 40, Dim: 8, Hidden: 16},
		{Kernel: BenchGemm, N: 9},
	}
	rows, err := RunBench([]Kernels{Go()}, cases, time.Millisecond, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ kernel, backend string }{
		{BenchAssign, "go"}, {BenchAssign, BenchNaive}, {BenchDecode, "go"}, {BenchMLPForward, "go"}, {BenchMLPBackward, "go"}, {BenchGemm, "go"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.Kernel != w.kernel || r.Backend != w.backend || r.Shape == "" {
			t.Errorf("row %d = %s/%s %q, want %s/%s", i, r.Kernel, r.Backend, r.Shape, w.kernel, w.backend)
		}
		if !(r.Seconds > 0 && r.GFLOPS > 0 && r.ItemsPerSec > 0) {
			t.Errorf("row %d has empty figures: %+v", i, r)
		}
	}
	if rows[0].VsNaive <= 0 || rows[1].VsNaive != 1 || rows[2].VsNaive != 0 {
		t.Errorf("naive ratios = %v %v %v, want >0, 1, 0", rows[0].VsNaive, rows[1].VsNaive, rows[2].VsNaive)
	}
	if _, err := RunBench([]Kernels{Go()}, []BenchCase{{Kernel: BenchDecode, N: 30, K: 4, Dim: 8, Hidden: 4, E: 8}}, time.Millisecond, false); err == nil {
		t.Error("decode with N not whole rows accepted")
	}
	if _, err := RunBench([]Kernels{Go()}, []BenchCase{{Kernel: "sort"}}, time.Millisecond, false); err == nil {
		t.Error("unknown kernel accepted")
	}
}

func TestBenchFLOPs(t *testing.T) {
	for _, tc := range []struct {
		c    BenchCase
		want float64
	}{
		{BenchCase{Kernel: BenchAssign, N: 16384, K: 256, Dim: 8}, 2 * 16384 * 256 * 8},
		{BenchCase{Kernel: BenchMLPForward, N: 10, Dim: 8, Hidden: 16}, 2 * 10 * (8*16 + 16*8)},
		{BenchCase{Kernel: BenchMLPBackward, N: 10, Dim: 8, Hidden: 16}, 4 * 10 * (8*16 + 16*8)},
		// D1 and D2 (8->16->8) and D0 (8->16->8): 3 MLPs of 2*(8*16+16*8).
		{BenchCase{Kernel: BenchDecode, N: 10, Dim: 8, Hidden: 16, E: 2, K: 4}, 10 * 3 * 2 * (8*16 + 16*8)},
		{BenchCase{Kernel: BenchGemm, N: 64}, 2 * 64 * 64 * 64},
	} {
		if got := tc.c.FLOPs(); got != tc.want {
			t.Errorf("%s %s: FLOPs %v, want %v", tc.c.Kernel, tc.c.Shape(), got, tc.want)
		}
	}
}
