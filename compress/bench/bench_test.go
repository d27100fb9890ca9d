package bench

import (
	"testing"
	"time"

	"pocketllm-native/bindings"
)

// Benchmark ladders: every usable backend side by side (and the naive
// loop for assignment), reporting GFLOP/s and items/s. For ratios measured
// in one run, use Run (the CLI's bench command).
//
//	go test ./compress/bench -run '^$' -bench . -benchtime 3x

func usableBackends(b *testing.B) []bindings.Kernels {
	var ks []bindings.Kernels
	for _, name := range []string{bindings.BackendGo, bindings.BackendCPU, bindings.BackendCUDA} {
		k, _, err := bindings.Select(name)
		if err != nil {
			b.Logf("%s: %v", name, err)
			continue
		}
		ks = append(ks, k)
	}
	b.Cleanup(func() {
		for _, k := range ks {
			bindings.Close(k)
		}
	})
	return ks
}

func benchKernel(b *testing.B, kernel string) {
	ks := usableBackends(b)
	for _, c := range Ladder(false) {
		if c.Kernel != kernel {
			continue
		}
		for _, k := range ks {
			b.Run(c.Shape()+"/"+k.Name(), func(b *testing.B) {
				op, err := newOp(k, c)
				if err != nil {
					b.Fatal(err)
				}
				runOp(b, c, op, c.N)
			})
		}
		if kernel == Assign {
			b.Run(c.Shape()+"/"+Naive, func(b *testing.B) {
				nc := c
				nc.N = min(c.N, naiveMaxN)
				runOp(b, nc, newNaiveAssign(nc), nc.N)
			})
		}
	}
}

func runOp(b *testing.B, c Case, op func() error, items int) {
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

func BenchmarkAssign(b *testing.B)        { benchKernel(b, Assign) }
func BenchmarkCodebookStats(b *testing.B) { benchKernel(b, Stats) }
func BenchmarkDecode(b *testing.B)        { benchKernel(b, Decode) }
func BenchmarkMLPForward(b *testing.B)    { benchKernel(b, MLPForward) }
func BenchmarkMLPBackward(b *testing.B)   { benchKernel(b, MLPBackward) }
func BenchmarkGemm(b *testing.B)          { benchKernel(b, Gemm) }

// Run on tiny cases: every row present, in order, with its figures
// filled and the naive ratio attached to the assignment rows. (Correctness
// of the harness only; no timing is asserted.)
func TestRunBench(t *testing.T) {
	cases := []Case{
		{Kernel: Assign, N: 64, K: 16, Dim: 8},
		{Kernel: Decode, N: 32, K: 16, Dim: 8, Hidden: 16, E: 8},
		{Kernel: MLPForward, N: 40, Dim: 8, Hidden: 16},
		{Kernel: MLPBackward, N: 40, Dim: 8, Hidden: 16},
		{Kernel: Gemm, N: 9},
	}
	rows, err := Run([]bindings.Kernels{bindings.Go()}, cases, time.Millisecond, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ kernel, backend string }{
		{Assign, "go"}, {Assign, Naive}, {Decode, "go"}, {MLPForward, "go"}, {MLPBackward, "go"}, {Gemm, "go"},
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
	if _, err := Run([]bindings.Kernels{bindings.Go()}, []Case{{Kernel: Decode, N: 30, K: 4, Dim: 8, Hidden: 4, E: 8}}, time.Millisecond, false); err == nil {
		t.Error("decode with N not whole rows accepted")
	}
	if _, err := Run([]bindings.Kernels{bindings.Go()}, []Case{{Kernel: "sort"}}, time.Millisecond, false); err == nil {
		t.Error("unknown kernel accepted")
	}
}

func TestBenchFLOPs(t *testing.T) {
	for _, tc := range []struct {
		c    Case
		want float64
	}{
		{Case{Kernel: Assign, N: 16384, K: 256, Dim: 8}, 2 * 16384 * 256 * 8},
		{Case{Kernel: MLPForward, N: 10, Dim: 8, Hidden: 16}, 2 * 10 * (8*16 + 16*8)},
		{Case{Kernel: MLPBackward, N: 10, Dim: 8, Hidden: 16}, 4 * 10 * (8*16 + 16*8)},
		// D1 and D2 (8->16->8) and D0 (8->16->8): 3 MLPs of 2*(8*16+16*8).
		{Case{Kernel: Decode, N: 10, Dim: 8, Hidden: 16, E: 2, K: 4}, 10 * 3 * 2 * (8*16 + 16*8)},
		{Case{Kernel: Gemm, N: 64}, 2 * 64 * 64 * 64},
	} {
		if got := tc.c.FLOPs(); got != tc.want {
			t.Errorf("%s %s: FLOPs %v, want %v", tc.c.Kernel, tc.c.Shape(), got, tc.want)
		}
	}
}

func TestParseCase(t *testing.T) {
	c, err := ParseCase("assign:n=16777216,k=32768,dz=8")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Case{Kernel: Assign, N: 16777216, K: 32768, Dim: 8}); c != want {
		t.Errorf("assign parsed as %+v, want %+v", c, want)
	}
	c, err = ParseCase("decode:n=1024,k=256,dim=8,hidden=16,e=512")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Case{Kernel: Decode, N: 1024, K: 256, Dim: 8, Hidden: 16, E: 512}); c != want {
		t.Errorf("decode parsed as %+v, want %+v", c, want)
	}
	for _, bad := range []string{
		"", "assign", "gemm:n=1", "assign:n=1,k=2", "assign:n=1,k=2,dz=0", "assign:n=1,k=2,dz=8,e=3",
		"assign:n=1,n=2,k=2,dz=8", "assign:n=x,k=2,dz=8", "decode:n=1000,k=256,dim=8,hidden=16,e=512",
	} {
		if _, err := ParseCase(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Epochs on a tiny matrix: one row per backend, named and filled; with
// two epochs, a second row for the later one.
func TestEpochs(t *testing.T) {
	go1 := []bindings.Kernels{bindings.Go()}
	rows, err := Epochs(go1, 32, 20, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Kernel != Epoch || r.Backend != "go" || r.Shape != "32x20_d8_K4" {
		t.Errorf("row = %s/%s %q, want %s/go 32x20_d8_K4", r.Kernel, r.Backend, r.Shape, Epoch)
	}
	// 20 columns are 3 sub-vectors of 8 (the last padded) per row.
	if !(r.Seconds > 0) || r.ItemsPerSec != 32*3/r.Seconds || r.GFLOPS != 0 {
		t.Errorf("figures: %+v", r)
	}
	rows, err = Epochs(go1, 32, 20, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Kernel != Epoch || rows[1].Kernel != EpochNext || rows[1].Shape != r.Shape {
		t.Fatalf("two epochs gave %+v, want an %s and an %s row of %s", rows, Epoch, EpochNext, r.Shape)
	}
	if n := rows[1]; !(n.Seconds > 0) || n.ItemsPerSec != 32*3/n.Seconds {
		t.Errorf("%s figures: %+v", EpochNext, n)
	}
	if _, err := Epochs(go1, 32, 20, 0, 1); err == nil {
		t.Error("a codebook of 0 accepted")
	}
	if _, err := Epochs(go1, 32, 20, 4, 0); err == nil {
		t.Error("0 epochs accepted")
	}
}
