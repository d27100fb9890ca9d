package testvectors

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"pocketllm-native/internal/atomicfile"
)

var update = flag.Bool("update", false, "regenerate testvectors/data from the oracle")

func TestMain(m *testing.M) {
	flag.Parse()
	if *update {
		if err := writeAll(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// writeAll replaces every data file, each whole (package atomicfile), so an
// interrupted update leaves whole files.
func writeAll() error {
	for _, f := range Generate() {
		if err := atomicfile.Write(filepath.Join("data", f.Kernel+".json"), Format(f), true); err != nil {
			return err
		}
	}
	return nil
}

func readDisk(t *testing.T, kernel string) ([]byte, File) {
	t.Helper()
	path := filepath.Join("data", kernel+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test ./testvectors -update)", path, err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b, f
}

// TestFilesMatchGenerator fails when gen.go or the oracle changed without
// the data being regenerated: the stored inputs must be the generator's
// exactly and the stored outputs the oracle's to far within any kernel
// tolerance (not bit for bit: float64 libm and FMA fusion differ by
// platform).
func TestFilesMatchGenerator(t *testing.T) {
	gen := Generate()
	if len(gen) != len(Files) {
		t.Fatalf("Generate makes %d files, Files lists %d", len(gen), len(Files))
	}
	for i, want := range gen {
		if want.Kernel != Files[i] {
			t.Fatalf("file %d is %q, Files says %q", i, want.Kernel, Files[i])
		}
		t.Run(want.Kernel, func(t *testing.T) {
			_, got := readDisk(t, want.Kernel)
			if got.Kernel != want.Kernel || len(got.Cases) != len(want.Cases) {
				t.Fatalf("stored file has kernel %q with %d cases, generator %q with %d: run go test ./testvectors -update",
					got.Kernel, len(got.Cases), want.Kernel, len(want.Cases))
			}
			for ci, w := range want.Cases {
				compareCase(t, got.Cases[ci], w)
			}
		})
	}
}

func compareCase(t *testing.T, got, want Case) {
	t.Helper()
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf("case %q: %s (run go test ./testvectors -update if the change is intended)", want.Name, fmt.Sprintf(format, a...))
	}
	if got.Name != want.Name || got.Error != want.Error {
		fail("stored name %q error %q, generator gives %q %q", got.Name, got.Error, want.Name, want.Error)
		return
	}
	if !mapsEqual(got.Ints, want.Ints, func(a, b int) bool { return a == b }) ||
		!mapsEqual(got.Scalars, want.Scalars, func(a, b float64) bool { return float32(a) == float32(b) }) ||
		!mapsEqual(got.F32, want.F32, slices.Equal[[]float32]) ||
		!mapsEqual(got.I32, want.I32, slices.Equal[[]int32]) ||
		!mapsEqual(got.WantInt, want.WantInt, slices.Equal[[]int64]) {
		fail("stored inputs or integer outputs differ from the generator's")
		return
	}
	if len(got.Want) != len(want.Want) {
		fail("stored outputs %d arrays, generator %d", len(got.Want), len(want.Want))
		return
	}
	for k, w := range want.Want {
		g := got.Want[k]
		if len(g) != len(w) {
			fail("output %s has %d values, generator %d", k, len(g), len(w))
			continue
		}
		scale := 0.0
		for _, v := range w {
			scale = max(scale, math.Abs(v))
		}
		for i := range w {
			if math.Abs(g[i]-w[i]) > 1e-10*(math.Abs(w[i])+scale) {
				fail("output %s[%d] stored %v, oracle %v", k, i, g[i], w[i])
				break
			}
		}
	}
}

func mapsEqual[V any](a, b map[string]V, eq func(V, V) bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !eq(v, w) {
			return false
		}
	}
	return true
}

// TestCanonical checks that each stored file is in canonical form and that
// the embedded copy is the file on disk.
func TestCanonical(t *testing.T) {
	for _, k := range Files {
		b, f := readDisk(t, k)
		if again := Format(f); !bytes.Equal(again, b) {
			t.Errorf("data/%s.json is not in canonical form (run go test ./testvectors -update)", k)
		}
		if *update {
			continue // the binary embeds the files as they were before the update
		}
		emb, err := Load(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(Format(File{Kernel: k, Cases: emb}), b) {
			t.Errorf("embedded %s differs from data/%s.json", k, k)
		}
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	if _, err := Parse([]byte(`{"kernel":"x","cases":[{"name":"a","bogus":1}]}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
}

// numGrad is the central difference of f at x along every coordinate.
func numGrad(x []float64, f func([]float64) float64) []float64 {
	const h = 1e-6
	g := make([]float64, len(x))
	for i := range x {
		keep := x[i]
		x[i] = keep + h
		fp := f(x)
		x[i] = keep - h
		fm := f(x)
		x[i] = keep
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func checkGrad(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 0.0
	for _, v := range want {
		scale = max(scale, math.Abs(v))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6*(scale+1e-3) {
			t.Errorf("%s[%d] = %v, finite difference %v", what, i, got[i], want[i])
			return
		}
	}
}

// The oracle's gradients are checked against finite differences of its own
// forward passes: this is what makes it an oracle rather than a second
// opinion.
func TestOracleGradients(t *testing.T) {
	r := &rng{42}
	t.Run("gelu", func(t *testing.T) {
		for _, a := range []float64{-3, -1.2, -0.3, 0, 0.4, 1, 2.5} {
			fd := (Gelu(a+1e-6) - Gelu(a-1e-6)) / 2e-6
			if math.Abs(fd-GeluGrad(a)) > 1e-8 {
				t.Errorf("GeluGrad(%v) = %v, finite difference %v", a, GeluGrad(a), fd)
			}
		}
	})
	t.Run("mlp", func(t *testing.T) {
		l := newMLPLayout(3, 4, 2)
		rows := 5
		p, x, dy := f64(r.vec(l.np, 0, 0.5)), f64(r.vec(rows*3, 0, 1)), f64(r.vec(rows*2, 0, 1))
		g, dx := mlpBackward64(l, p, x, dy, rows)
		checkGrad(t, "g", g, numGrad(p, func(p []float64) float64 { _, y := mlpForward64(l, p, x, rows); return dot(y, dy) }))
		checkGrad(t, "dx", dx, numGrad(x, func(x []float64) float64 { _, y := mlpForward64(l, p, x, rows); return dot(y, dy) }))
	})
	t.Run("rln", func(t *testing.T) {
		w, groups := 6, 3
		p := f64(append(r.vec(w, 1, 0.2), r.vec(w, 0, 0.2)...))
		x, dy := f64(r.vec(w*groups, 0.3, 1)), f64(r.vec(w*groups, 0, 1))
		g, dx := rlnBackward64(p, w, x, dy, groups)
		checkGrad(t, "g", g, numGrad(p, func(p []float64) float64 { y, _, _ := rlnForward64(p, w, x, groups); return dot(y, dy) }))
		checkGrad(t, "dx", dx, numGrad(x, func(x []float64) float64 { y, _, _ := rlnForward64(p, w, x, groups); return dot(y, dy) }))
	})
	s := netShape{"t", 3, 4, 3, 5, 2, 0}
	t.Run("encoder", func(t *testing.T) {
		l := newEncoderLayout(s.e, s.dim, s.latent, s.hidden)
		p32 := encoderParams(r, s)
		x32 := r.vec(s.rows*s.e*s.dim, 0, 1)
		dz32 := r.vec(s.rows*s.e*s.latent, 0, 1)
		g, dx := EncoderBackward(p32, s.e, s.dim, s.latent, s.hidden, x32, dz32, s.rows)
		p, x, dz := f64(p32), f64(x32), f64(dz32)
		loss := func(p, x []float64) float64 { z, _ := encoderForward64(l, p, x, s.rows); return dot(z, dz) }
		checkGrad(t, "g", g, numGrad(p, func(p []float64) float64 { return loss(p, x) }))
		checkGrad(t, "dx", dx, numGrad(x, func(x []float64) float64 { return loss(p, x) }))
	})
	t.Run("decoder", func(t *testing.T) {
		l := newDecoderLayout(s.e, s.dim, s.latent, s.hidden)
		p32 := decoderParams(r, s)
		y32 := r.vec(s.rows*s.e*s.latent, 0, 1)
		do32 := r.vec(s.rows*s.e*s.dim, 0, 1)
		g, dy0 := DecoderBackward(p32, s.e, s.dim, s.latent, s.hidden, y32, do32, s.rows)
		p, y0, dout := f64(p32), f64(y32), f64(do32)
		loss := func(p, y []float64) float64 { o, _ := decoderForward64(l, p, y, s.rows); return dot(o, dout) }
		checkGrad(t, "g", g, numGrad(p, func(p []float64) float64 { return loss(p, y0) }))
		checkGrad(t, "dy0", dy0, numGrad(y0, func(y []float64) float64 { return loss(p, y) }))
	})
}

// Decode must agree with the decoder network's forward pass on gathered
// codewords, and refuse an index outside the codebook.
func TestOracleDecode(t *testing.T) {
	r := &rng{7}
	s := netShape{"t", 2, 3, 2, 4, 3, 5}
	p := decoderParams(r, s)
	c := r.vec(s.k*s.latent, 0, 1)
	idx := []int32{4, 0, 1, 1, 3, 2}
	out, err := Decode(p, s.e, s.dim, s.latent, s.hidden, c, s.k, idx, s.rows)
	if err != nil {
		t.Fatal(err)
	}
	var y0 []float32
	for _, j := range idx {
		y0 = append(y0, c[int(j)*s.latent:(int(j)+1)*s.latent]...)
	}
	want, _ := decoderForward64(newDecoderLayout(s.e, s.dim, s.latent, s.hidden), f64(p), f64(y0), s.rows)
	if !slices.Equal(out, want) {
		t.Fatalf("Decode differs from the decoder forward pass")
	}
	idx[3] = 5
	if _, err := Decode(p, s.e, s.dim, s.latent, s.hidden, c, s.k, idx, s.rows); err == nil {
		t.Fatal("index 5 of a 5-entry codebook accepted")
	}
}

func TestOracleAssignTies(t *testing.T) {
	c := []float32{1, 0, -1, 0, 1, 0}
	idx, dist := Assign([]float32{0, 0, 1, 0}, 2, 2, c, 3)
	if !slices.Equal(idx, []int32{0, 0}) || dist[0] != 1 || dist[1] != 0 {
		t.Fatalf("Assign = %v %v, want [0 0] [1 0]", idx, dist)
	}
}

// Gemm with transposed storage must equal Gemm on the transposes stored
// plainly, and a hand-computed 2x2 product must come out exactly.
func TestOracleGemm(t *testing.T) {
	got := Gemm(false, false, 2, 2, 2, 1, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}, 0, nil)
	if !slices.Equal(got, []float64{19, 22, 43, 50}) {
		t.Fatalf("[[1 2] [3 4]] x [[5 6] [7 8]] = %v", got)
	}
	r := &rng{9}
	const m, n, k = 3, 4, 5
	a, b, c := r.vec(m*k, 0, 1), r.vec(k*n, 0, 1), r.vec(m*n, 0, 1)
	transpose := func(x []float32, rows, cols int) []float32 {
		y := make([]float32, len(x))
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				y[j*rows+i] = x[i*cols+j]
			}
		}
		return y
	}
	want := Gemm(false, false, m, n, k, 0.5, a, b, 2, c)
	if got := Gemm(true, true, m, n, k, 0.5, transpose(a, m, k), transpose(b, k, n), 2, c); !slices.Equal(got, want) {
		t.Fatalf("transposed storage: %v, want %v", got, want)
	}
}

// The oracle's training step against finite differences of the function
// whose gradient it claims to be: with the assignment fixed, the
// reconstruction loss through the decoder at y0 = C[idx], plus
// Lambda*MSE(C[idx], z) with z held, plus the straight-through term
// dot(dL/dy0, z) and Beta*MSE(z, C[idx]) with C held, where dL/dy0 is
// itself a finite difference. Forms with and without identity paths.
func TestOracleTrainStep(t *testing.T) {
	for _, skip := range []bool{false, true} {
		s := trainShape{name: "fd", e: 3, dim: 4, latent: 4, hidden: 5, k: 9, rows: 3, pad: 1, skip: skip}
		const lambda, beta = 0.4, 0.3
		l := s.layout()
		p32, x32, rowW := trainInputs(&rng{77}, s)
		p, x, wts := f64(p32), f64(x32), repeatRow(rowW, s.rows)
		got := trainStep64(l, p, x, wts, s.rows, lambda, beta)
		lat := s.latent
		enc := func(q []float64) []float64 { z, _ := encoderForward64(l.enc, q[:l.enc.np], x, s.rows); return z }
		gatherIdx := func(c []float64) []float64 {
			y := make([]float64, 0, len(got.idx)*lat)
			for _, j := range got.idx {
				y = append(y, c[int(j)*lat:(int(j)+1)*lat]...)
			}
			return y
		}
		mse := func(a, b []float64) float64 {
			s := 0.0
			for i := range a {
				s += (a[i] - b[i]) * (a[i] - b[i])
			}
			return s / float64(len(a))
		}
		recon := func(pdec, y0 []float64) float64 {
			out, _ := decoderForward64(l.dec, pdec, y0, s.rows)
			se, sw := 0.0, 0.0
			for i, w := range wts {
				se += w * (out[i] - x[i]) * (out[i] - x[i])
				sw += w
			}
			return se / sw
		}
		z0, y00 := enc(p), gatherIdx(p[l.cb:])
		if r := recon(p[l.enc.np:l.cb], y00); math.Abs(r-got.recon) > 1e-12*r {
			t.Errorf("skip=%v: reconstruction term %v, recomputed %v", skip, got.recon, r)
		}
		if c := mse(y00, z0); math.Abs(c-got.codebook) > 1e-12*c {
			t.Errorf("skip=%v: codebook term %v, recomputed %v", skip, got.codebook, c)
		}
		dy0 := numGrad(slices.Clone(y00), func(y []float64) float64 { return recon(p[l.enc.np:l.cb], y) })
		surrogate := func(q []float64) float64 {
			z := enc(q)
			return recon(q[l.enc.np:l.cb], y00) + lambda*mse(gatherIdx(q[l.cb:]), z0) + dot(dy0, z) + beta*mse(z, y00)
		}
		checkGrad(t, fmt.Sprintf("skip=%v step gradient", skip), got.grad, numGrad(p, surrogate))
	}
}
