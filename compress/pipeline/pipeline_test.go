package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/internal/demomodel"
	"pocketllm-native/internal/sharedtest"
)

// fastOptions keeps the round trip quick: a short schedule, same method.
func fastOptions(in, out string, bits float64, share string) CompressOptions {
	st := pocketllm.DefaultSettings(0, 0)
	st.Epochs, st.DecayEvery = 2, 1
	return CompressOptions{
		In: in, Out: out, Bits: bits, Dims: []int{4, 8}, Share: share,
		Include: plan.DefaultInclude, Method: st, Kernels: bindings.Go(),
	}
}

// forEachModel runs f as a subtest on the demo's built-in model (its small
// size), which every checkout has, and on stories260K, a real model that
// only a checkout with ../shared has (that subtest skips without it).
func forEachModel(t *testing.T, f func(t *testing.T, src string)) {
	t.Run("demo", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "demo")
		if err := demomodel.Write(src, demomodel.Small, 1); err != nil {
			t.Fatal(err)
		}
		f(t, src)
	})
	t.Run("stories260K", func(t *testing.T) { f(t, sharedtest.Stories260K(t)) })
}

func TestRoundTrip(t *testing.T) { forEachModel(t, testRoundTrip) }

func testRoundTrip(t *testing.T, src string) {
	dir := t.TempDir()
	orig, err := checkpoint.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()

	for _, bits := range []float64{3, 4} {
		out := filepath.Join(dir, "s.pllm")
		rep, err := Compress(func() CompressOptions { o := fastOptions(src, out, bits, plan.ShareKind); o.Force = true; return o }())
		if err != nil {
			t.Fatalf("--bits %v: %v", bits, err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if rep.FileBytes != st.Size() {
			t.Fatalf("report says %d bytes, file has %d", rep.FileBytes, st.Size())
		}
		if got := rep.CompressedBytes + rep.RawBytes + rep.SideBytes + rep.FramingBytes; got != st.Size() {
			t.Fatalf("byte accounting adds up to %d, file has %d", got, st.Size())
		}
		if rep.BitsPerWeight > bits || rep.BitsPerWeight < bits-1.2 {
			t.Errorf("--bits %v gave %.3f bits per weight", bits, rep.BitsPerWeight)
		}
		for _, g := range rep.Groups {
			if g.BitsPerWeight > bits {
				t.Errorf("group %s: %.3f bits per weight over the %v target", g.Name, g.BitsPerWeight, bits)
			}
		}
		if len(rep.Groups) != 7 || len(rep.Tensors) != len(orig.Tensors) {
			t.Fatalf("%d groups, %d tensors; want 7 kinds and all %d tensors", len(rep.Groups), len(rep.Tensors), len(orig.Tensors))
		}

		// The source's format: same structure, every compressed matrix
		// replaced, the rest identical.
		rebuilt := filepath.Join(dir, "rebuilt")
		if err := Decompress(DecompressOptions{In: out, Out: rebuilt, Kernels: bindings.Go(), Force: true}); err != nil {
			t.Fatal(err)
		}
		checkReconstruction(t, orig, rebuilt, rep)
		if orig.Format == checkpoint.FormatLlama2c {
			if a, b := fileSize(t, src), fileSize(t, rebuilt); a != b {
				t.Fatalf("llama2.c reconstruction is %d bytes, the original %d", b, a)
			}
			if _, err := llama2c.Open(rebuilt); err != nil {
				t.Fatal(err)
			}
		} else {
			// A Hugging Face source also converts to llama2.c.
			bin := filepath.Join(dir, "rebuilt.bin")
			if err := Decompress(DecompressOptions{In: out, Out: bin, Format: FormatLlama2c, Kernels: bindings.Go(), Force: true}); err != nil {
				t.Fatal(err)
			}
			checkReconstruction(t, orig, bin, rep)
			if _, err := llama2c.Open(bin); err != nil {
				t.Fatal(err)
			}
		}

		// safetensors output in bf16.
		hf := filepath.Join(dir, "hf")
		if err := Decompress(DecompressOptions{In: out, Out: hf, Format: FormatSafetensors, DType: "bf16", Kernels: bindings.Go(), Force: true}); err != nil {
			t.Fatal(err)
		}
		h, err := checkpoint.Open(hf)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range h.Tensors {
			if ti.DType != "BF16" {
				t.Errorf("%s is %s, asked for bf16", ti.Name, ti.DType)
			}
		}
		if h.Config == nil || h.Config.HiddenSize != orig.Config.HiddenSize || h.Config.NumHiddenLayers != orig.Config.NumHiddenLayers {
			t.Errorf("reconstructed folder's config.json: %+v, the original's %+v", h.Config, orig.Config)
		}
		h.Close()
	}
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// checkReconstruction compares every tensor of a reconstruction with the
// original: shapes equal, kept tensors bit-identical, compressed ones
// changed and with the NMSE the report states.
func checkReconstruction(t *testing.T, orig *checkpoint.Source, path string, rep *Report) {
	t.Helper()
	got, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	nmse := map[string]float64{}
	for _, tr := range rep.Tensors {
		if tr.NMSE != nil {
			nmse[tr.Name] = *tr.NMSE
		}
	}
	for _, ti := range orig.Tensors {
		gi, ok := got.Info(ti.Name)
		if !ok || len(gi.Shape) != len(ti.Shape) || gi.NumElements() != ti.NumElements() {
			t.Fatalf("%s: %s missing or reshaped", path, ti.Name)
		}
		a, _ := orig.Float32(ti.Name)
		b, err := got.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		e := matrix.NMSE(a, b)
		want, compressed := nmse[ti.Name]
		switch {
		case !compressed && e != 0:
			t.Errorf("kept tensor %s changed", ti.Name)
		case compressed && (e == 0 || e > 1):
			t.Errorf("%s: NMSE %g", ti.Name, e)
		case compressed && (e-want > 1e-6 || want-e > 1e-6):
			t.Errorf("%s: NMSE %g, report says %g", ti.Name, e, want)
		}
	}
}

func TestCompressIsDeterministic(t *testing.T) { forEachModel(t, testCompressIsDeterministic) }

func testCompressIsDeterministic(t *testing.T, src string) {
	dir := t.TempDir()
	var files [][]byte
	for i := 0; i < 2; i++ {
		out := filepath.Join(dir, "d"+string(rune('0'+i))+".pllm")
		o := fastOptions(src, out, 4, plan.ShareKind)
		o.Include = `self_attn\.q_proj`
		if _, err := Compress(o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("two runs with the same seed wrote different bytes")
	}
}

func TestBadInputLeavesNothing(t *testing.T) {
	src := sharedtest.Stories260K(t)
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.bin")
	b, _ := os.ReadFile(src)
	os.WriteFile(truncated, b[:len(b)-100], 0o644)
	nan := filepath.Join(dir, "nan.bin")
	c := append([]byte(nil), b...)
	// The first weight of layer 0's wq (after the header, embedding and rms_att).
	off := 28 + 4*(512*64+5*64)
	copy(c[off:], []byte{0x00, 0x00, 0xc0, 0x7f})
	os.WriteFile(nan, c, 0o644)

	existing := filepath.Join(dir, "existing.pllm")
	os.WriteFile(existing, []byte("keep me"), 0o644)

	cases := []struct {
		name string
		o    CompressOptions
		want string
	}{
		{"missing input", fastOptions(filepath.Join(dir, "nope.bin"), filepath.Join(dir, "a.pllm"), 4, plan.ShareKind), "nope.bin"},
		{"truncated input", fastOptions(truncated, filepath.Join(dir, "b.pllm"), 4, plan.ShareKind), "truncated.bin"},
		{"nan weight", fastOptions(nan, filepath.Join(dir, "c.pllm"), 4, plan.ShareKind), "non-finite"},
		{"impossible target", fastOptions(src, filepath.Join(dir, "d.pllm"), 1, plan.ShareNone), "cannot reach"},
		{"existing output", fastOptions(src, existing, 4, plan.ShareKind), "exists"},
		{"bad regexp", func() CompressOptions {
			o := fastOptions(src, filepath.Join(dir, "e.pllm"), 4, plan.ShareKind)
			o.Include = "("
			return o
		}(), "--include"},
	}
	for _, c := range cases {
		_, err := Compress(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", c.name, err)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Fatal("an existing output was overwritten without --force")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch e.Name() {
		case "truncated.bin", "nan.bin", "existing.pllm":
		default:
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestDecompressRefusesCorruptContainer(t *testing.T) {
	forEachModel(t, testDecompressRefusesCorruptContainer)
}

func testDecompressRefusesCorruptContainer(t *testing.T, src string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "s.pllm")
	o := fastOptions(src, out, 4, plan.ShareKind)
	o.Include = `layers\.0\.self_attn\.q_proj`
	o.Bits = 8
	if _, err := Compress(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	for _, at := range []int{20, len(b) / 3, len(b) / 2, len(b) - 30} {
		c := append([]byte(nil), b...)
		c[at] ^= 0x10
		bad := filepath.Join(dir, "bad.pllm")
		os.WriteFile(bad, c, 0o644)
		target := filepath.Join(dir, "rebuilt")
		err := Decompress(DecompressOptions{In: bad, Out: target, Kernels: bindings.Go(), Format: FormatSafetensors})
		if err == nil || !strings.Contains(err.Error(), "bad.pllm") {
			t.Errorf("flipped byte %d: error %v", at, err)
		}
		if _, err := Inspect(bad); err == nil {
			t.Errorf("flipped byte %d: inspect accepted the file", at)
		}
		if _, err := os.Stat(target); err == nil {
			t.Errorf("flipped byte %d: output left behind", at)
		}
	}
}

func TestPaperExampleBits(t *testing.T) {
	// METHOD.md: Llama 2-7B up_proj 11008x4096 at d=8, K=2^15 is about 1.97
	// bits per weight (16.4x against FP32).
	g := plan.Group{Name: "up", Members: []plan.Matrix{{Name: "model.layers.3.mlp.up_proj.weight", Rows: 11008, Cols: 4096, DType: "F16"}}}
	bpw := 8 * float64(pocketllmBytes(g, plan.Setting{Dim: 8, K: 1 << 15}, 16, false, false)) / float64(g.Weights())
	if bpw < 1.96 || bpw > 1.98 {
		t.Fatalf("%.4f bits per weight, the paper's accounting gives about 1.97", bpw)
	}
}

func TestMethodsRoundTripAndPlanTheirBytes(t *testing.T) {
	forEachModel(t, testMethodsRoundTripAndPlanTheirBytes)
}

func testMethodsRoundTripAndPlanTheirBytes(t *testing.T, src string) {
	dir := t.TempDir()
	orig, err := checkpoint.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	for _, variant := range []string{MethodPocketLLM, MethodPocketLLM + "-kmeans-init", MethodVQ, MethodRTN} {
		method, kmeansInit := strings.CutSuffix(variant, "-kmeans-init")
		o := fastOptions(src, filepath.Join(dir, variant+".pllm"), 4, plan.ShareKind)
		o.MethodName = method
		o.Method.KMeansInit = kmeansInit
		if method == MethodRTN {
			o.Share, o.Bits = plan.ShareNone, 0
			o.RTN.Bits, o.RTN.GroupSize = 3, 64
		}
		var planned []float64
		o.Events = func(e Event) {
			if e.Kind == "done" {
				planned = append(planned, e.PlannedBPW)
			}
		}
		rep, err := Compress(o)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		for i, g := range rep.Groups {
			// The planner counts the longest measurements the descriptor can
			// hold, so it may overstate a group by a few bytes, never understate it.
			over := (planned[i] - g.BitsPerWeight) * float64(g.Weights) / 8
			if over < 0 || over > 64 {
				t.Errorf("%s group %s: planned %.4f bits per weight, wrote %.4f", method, g.Name, planned[i], g.BitsPerWeight)
			}
		}
		bin := filepath.Join(dir, variant+"-rebuilt")
		if err := Decompress(DecompressOptions{In: o.Out, Out: bin, Kernels: bindings.Go()}); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		checkReconstruction(t, orig, bin, rep)
	}
}

// envAgree names the two backends TestBackendsAgree compares (default
// go,cpu); scripts/gpu-check sets cpu,cuda.
const envAgree = "POCKETLLM_AGREE_BACKENDS"

// TestBackendsAgree compresses each model on two backends and requires the
// same bits per weight and mean NMSE within 1% (BENCHMARKS.md's bound: the
// backends round differently, so training takes different paths).
func TestBackendsAgree(t *testing.T) { forEachModel(t, testBackendsAgree) }

func testBackendsAgree(t *testing.T, src string) {
	pair := bindings.BackendGo + "," + bindings.BackendCPU
	if v := os.Getenv(envAgree); v != "" {
		pair = v
	}
	names := strings.Split(pair, ",")
	if len(names) != 2 {
		t.Fatalf("%s=%q: want two backends, comma-separated", envAgree, pair)
	}
	var ks [2]bindings.Kernels
	for i, name := range names {
		name = strings.TrimSpace(name)
		names[i] = name
		k, _, err := bindings.Select(name)
		if err != nil {
			if slices.Contains(strings.Split(os.Getenv("POCKETLLM_REQUIRE_BACKENDS"), ","), name) {
				t.Fatalf("the %s backend is required: %v", name, err)
			}
			t.Skipf("%s backend not available: %v", name, err)
		}
		defer bindings.Close(k)
		ks[i] = k
	}
	dir := t.TempDir()
	mean := func(k bindings.Kernels) (float64, float64) {
		o := fastOptions(src, filepath.Join(dir, k.Name()+".pllm"), 4, plan.ShareKind)
		o.Method.Epochs, o.Method.DecayEvery = 8, 3
		o.Kernels = k
		rep, err := Compress(o)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		n := 0
		for _, tr := range rep.Tensors {
			if tr.NMSE != nil {
				s += *tr.NMSE
				n++
			}
		}
		return rep.BitsPerWeight, s / float64(n)
	}
	ba, na := mean(ks[0])
	bb, nb := mean(ks[1])
	if d := (bb - ba) / ba; d > 0.01 || d < -0.01 {
		t.Errorf("bits per weight: %s %.4f, %s %.4f", names[0], ba, names[1], bb)
	}
	if d := (nb - na) / na; d > 0.01 || d < -0.01 {
		t.Errorf("mean NMSE: %s %.5f, %s %.5f", names[0], na, names[1], nb)
	}
	t.Logf("%s: %.4f bits/weight, mean NMSE %.5f; %s: %.4f, %.5f", names[0], ba, na, names[1], bb, nb)
}
