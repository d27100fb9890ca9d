package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/metanet"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/testfs"
)

// tinyMatrices writes a small safetensors file of Llama-named matrices (two
// q_proj layers sharing a group under plan.ShareKind, one up_proj) and
// returns its path. zeroQ1 makes layer 1's q_proj all zeros.
func tinyMatrices(t *testing.T, dir string, zeroQ1 bool) string {
	t.Helper()
	type mat struct {
		name       string
		rows, cols int
	}
	mats := []mat{
		{"model.layers.0.self_attn.q_proj.weight", 16, 32},
		{"model.layers.1.self_attn.q_proj.weight", 16, 32},
		{"model.layers.0.mlp.up_proj.weight", 24, 32},
	}
	infos := make([]checkpoint.TensorInfo, len(mats))
	for i, m := range mats {
		infos[i] = checkpoint.TensorInfo{Name: m.name, DType: "F32", Shape: []int{m.rows, m.cols}}
	}
	path := filepath.Join(dir, "tiny.safetensors")
	w, err := safetensors.Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for i, m := range mats {
		v := make([]float32, m.rows*m.cols)
		if !(zeroQ1 && i == 1) {
			for j := range v {
				v[j] = float32(rng.NormFloat64() * 0.05)
			}
		}
		if err := w.WriteFloat32(m.name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyOptions compresses tinyMatrices quickly at a fixed setting.
func tinyOptions(in, out, method string, k bindings.Kernels) CompressOptions {
	st := pocketllm.DefaultSettings(4, 16)
	st.Epochs, st.DecayEvery = 2, 1
	o := CompressOptions{
		In: in, Out: out, Dim: 4, K: 16, Share: plan.ShareKind, Include: plan.DefaultInclude,
		MethodName: method, Method: st, Kernels: k,
	}
	if method == MethodRTN {
		o.Share, o.RTN = plan.ShareNone, rtn.Settings{Bits: 3, GroupSize: 16}
	}
	return o
}

// backends are the pure-Go kernels and, where the library loads, the
// native CPU ones (their resident training path, and per call).
func backends(t *testing.T) map[string]bindings.Kernels {
	ks := map[string]bindings.Kernels{"go": bindings.Go()}
	if k, _, err := bindings.Select(bindings.BackendCPU); err == nil {
		ks["cpu"] = k
		t.Cleanup(func() { bindings.Close(k) })
	}
	return ks
}

// A learning rate that makes training diverge stops the run with an error
// naming the file, the group and the epoch, and leaves no file: neither a
// new one nor a change to an existing one (with Force).
func TestDivergedTrainingWritesNothing(t *testing.T) {
	for name, k := range backends(t) {
		for _, perCall := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/per-call=%v", name, perCall), func(t *testing.T) {
				dir := t.TempDir()
				in := tinyMatrices(t, dir, false)
				out := filepath.Join(dir, "out.pllm")
				o := tinyOptions(in, out, MethodPocketLLM, k)
				o.Method.LR, o.Method.PerCall = 1e30, perCall
				_, err := Compress(o)
				if err == nil {
					t.Fatal("a diverged run succeeded")
				}
				for _, want := range []string{"tiny.safetensors", "group model.layers.*.self_attn.q_proj.weight", "diverged at epoch 1 of 2"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if names := testfs.Names(t, dir); !slices.Equal(names, []string{"tiny.safetensors"}) {
					t.Errorf("left behind: %v", names)
				}
				os.WriteFile(out, []byte("keep me"), 0o644)
				o.Force = true
				if _, err := Compress(o); err == nil {
					t.Fatal("a diverged run succeeded with --force")
				}
				if b, _ := os.ReadFile(out); string(b) != "keep me" {
					t.Error("a diverged run replaced the existing output")
				}
			})
		}
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// poison overwrites value i of array name in group 0 of the .pllm file at
// path with v (in the array's encoding) and fixes the section's CRC: a file
// the container accepts whose content the method must refuse.
func poison(t *testing.T, path, name string, i int, v float32) {
	t.Helper()
	r, err := pllm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Layout()
	r.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Sections {
		if s.Kind != pllm.KindGroup {
			continue
		}
		for _, a := range s.Arrays {
			if a.Name != name {
				continue
			}
			switch a.Encoding {
			case pllm.F32:
				binary.LittleEndian.PutUint32(b[a.Offset+4*int64(i):], math.Float32bits(v))
			case pllm.F16:
				binary.LittleEndian.PutUint16(b[a.Offset+2*int64(i):], fp16.FromFloat32(v))
			default:
				t.Fatalf("array %s is %s", name, a.Encoding)
			}
			end := s.Offset + s.Size - pllm.SectionCRCSize
			binary.LittleEndian.PutUint32(b[end:], crc32c(b[s.Offset:end]))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s: no group array %s", path, name)
}

// Every stored float array of every method is checked: a NaN or an
// infinity in it, behind valid checksums, is refused by decompress and
// inspect with the file, group and array named, and nothing is written.
func TestNonFiniteStoredFloatsRefused(t *testing.T) {
	dir := t.TempDir()
	in := tinyMatrices(t, dir, false)
	arrays := map[string][]string{
		MethodPocketLLM: {"codebook", "decoder_mlp", "decoder_rln", "scales"},
		MethodVQ:        {"codebook", "scales"},
		MethodRTN:       {"scales", "offsets"},
	}
	for method, names := range arrays {
		good := filepath.Join(dir, method+".pllm")
		if _, err := Compress(tinyOptions(in, good, method, bindings.Go())); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		orig, _ := os.ReadFile(good)
		for j, name := range names {
			v := float32(math.NaN())
			if j%2 == 1 {
				v = float32(math.Inf(-1))
			}
			bad := filepath.Join(dir, "bad.pllm")
			os.WriteFile(bad, orig, 0o644)
			poison(t, bad, name, 1, v)
			if _, err := pllm.Open(bad); err != nil {
				t.Fatalf("%s %s: the container itself refused the file: %v", method, name, err)
			}
			out := filepath.Join(dir, "rebuilt")
			derr := Decompress(DecompressOptions{In: bad, Out: out, Kernels: bindings.Go()})
			_, ierr := Inspect(bad)
			for what, err := range map[string]error{"decompress": derr, "inspect": ierr} {
				if err == nil {
					t.Errorf("%s %s %v: %s accepted it", method, name, v, what)
					continue
				}
				for _, want := range []string{"bad.pllm", "group model.layers.", fmt.Sprintf("array %q: value 1 ", name), fmt.Sprint(v)} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s %s: %s error %q lacks %q", method, name, what, err, want)
					}
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s %s: output written", method, name)
			}
		}
	}
}

// Finite stored values whose reconstruction overflows are refused too:
// float32 overflow always, fp16 overflow when the output dtype is f16 (the
// same file decompresses fine as f32).
func TestReconstructionOverflowRefused(t *testing.T) {
	dir := t.TempDir()
	in := tinyMatrices(t, dir, false)
	good := filepath.Join(dir, "p.pllm")
	if _, err := Compress(tinyOptions(in, good, MethodPocketLLM, bindings.Go())); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(good)
	cases := []struct {
		scale float32
		dtype string
		want  string // "" for success
	}{
		{math.MaxFloat32, "", "overflow float32"},
		{1e6, "f16", "does not fit f16"},
		{1e6, "f32", ""},
	}
	for _, c := range cases {
		bad := filepath.Join(dir, "big.pllm")
		os.WriteFile(bad, orig, 0o644)
		poison(t, bad, "scales", 0, c.scale)
		out := filepath.Join(dir, "rebuilt")
		err := Decompress(DecompressOptions{In: bad, Out: out, DType: c.dtype, Kernels: bindings.Go(), Force: true})
		if c.want == "" {
			if err != nil {
				t.Errorf("scale %g, dtype %q: %v", c.scale, c.dtype, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "big.pllm") {
			t.Errorf("scale %g, dtype %q: error %v, want one mentioning %q", c.scale, c.dtype, err, c.want)
		}
	}
}

// An all-zero matrix is stored with scale 0 and rebuilt as exact zeros, so
// its NMSE is 0 (not an infinity the container's JSON could not hold).
func TestAllZeroMemberRoundTrips(t *testing.T) {
	dir := t.TempDir()
	in := tinyMatrices(t, dir, true)
	const zero = "model.layers.1.self_attn.q_proj.weight"
	for _, method := range []string{MethodPocketLLM, MethodVQ} {
		out := filepath.Join(dir, method+".pllm")
		rep, err := Compress(tinyOptions(in, out, method, bindings.Go()))
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		for _, tr := range rep.Tensors {
			if tr.Name == zero && (tr.NMSE == nil || *tr.NMSE != 0) {
				t.Errorf("%s: the all-zero member's NMSE is %v, want 0", method, tr.NMSE)
			}
		}
		_, tensors, err := LoadModel(out, bindings.Go(), &checkpoint.LlamaConfig{HiddenSize: 1})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		for i, v := range tensors[zero] {
			if v != 0 {
				t.Fatalf("%s: rebuilt all-zero member has %v at %d", method, v, i)
			}
		}
	}
}

// The planner's size of a group is an upper bound of what is written, also
// for a group of many members whose measurements take Go's longest number
// forms (an NMSE of 1.2345678901234567e-05 is 23 bytes of JSON), and it
// exceeds the written size exactly by the longer numbers it assumed: both
// count the group's section and its section table entry.
func TestPlannedSizeBoundsManyTinyNMSE(t *testing.T) {
	const members, rows, cols, dim, k = 300, 2, 8, 4, 16
	g := plan.Group{Name: "many"}
	for i := range members {
		g.Members = append(g.Members, plan.Matrix{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", i), Rows: rows, Cols: cols, DType: "F16"})
	}
	st := pocketllm.DefaultSettings(dim, k)
	e := cols / dim
	res := &pocketllm.Result{
		Shape:     metanet.Shape{E: e, Dim: dim, Latent: dim, Hidden: st.Hidden, K: k},
		Decoder:   make([]float32, bindings.DecoderParams(e, dim, dim, st.Hidden)),
		Codebook:  make([]float32, k*dim),
		Indices:   make([]int32, members*rows*e),
		Scales:    make([]float32, members),
		NMSE:      make([]float64, members),
		BestEpoch: 7,
		ReconMSE:  1.2345678901234567e-05,
	}
	for i := range res.NMSE {
		res.NMSE[i] = 1.2345678901234567e-05 * float64(1+i%7)
	}
	grp, err := encodeGroup(g, res, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "many.pllm")
	w, err := pllm.Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WriteMeta(pllm.Meta{Tool: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteGroup(grp); err != nil {
		t.Fatal(err)
	}
	var rep *Report
	if err := w.CloseVerified(func(r *pllm.Reader) error { rep, err = inspect(r, path); return err }); err != nil {
		t.Fatal(err)
	}
	planned := pocketllmBytes(g, plan.Setting{Dim: dim, K: k}, st.Hidden, false, false)
	written := rep.Groups[0].Bytes
	jsonLen := func(v any) int64 {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(b))
	}
	slack := jsonLen(longestFloat) - jsonLen(res.ReconMSE) + jsonLen(longestEpoch) - jsonLen(res.BestEpoch)
	for _, x := range res.NMSE {
		slack += jsonLen(longestFloat) - jsonLen(x)
	}
	if planned < written || planned-written != slack {
		t.Fatalf("planned %d bytes, wrote %d: want planned = written + %d (the longer numbers it assumed)", planned, written, slack)
	}
	if bpw := 8 * float64(planned) / float64(g.Weights()); rep.Groups[0].BitsPerWeight > bpw {
		t.Fatalf("inspect reports %.4f bits per weight, the plan %.4f", rep.Groups[0].BitsPerWeight, bpw)
	}
}

// longestFloat is at least as long in JSON as any finite float64.
func TestLongestFloatIsLongest(t *testing.T) {
	b, _ := json.Marshal(longestFloat)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		x := math.Float64frombits(rng.Uint64())
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		// Also draw magnitudes near 1, where the non-exponent forms lie.
		for _, v := range []float64{x, (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(44)-22))} {
			if c, _ := json.Marshal(v); len(c) > len(b) {
				t.Fatalf("%v takes %d bytes of JSON (%s), longestFloat %d", v, len(c), c, len(b))
			}
		}
	}
}
