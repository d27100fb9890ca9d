//go:build unix

package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/testfs"
)

// smallPLLM writes a one-tensor safetensors model and compresses it with
// rtn (no training: quick), returning the .pllm path.
func smallPLLM(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "m.safetensors")
	const rows, cols = 8, 64
	w, err := safetensors.Create(src, []checkpoint.TensorInfo{{Name: "model.layers.0.self_attn.q_proj.weight", DType: "F32", Shape: []int{rows, cols}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, rows*cols)
	for i := range vals {
		vals[i] = float32(i%13) - 6
	}
	raw, _ := checkpoint.EncodeFloat32("F32", vals)
	if err := w.Write("model.layers.0.self_attn.q_proj.weight", raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.pllm")
	o := CompressOptions{In: src, Out: out, Include: ".*", Share: plan.ShareNone, MethodName: MethodRTN, RTN: rtn.Settings{Bits: 4, GroupSize: 32}, Kernels: bindings.Go()}
	if _, err := Compress(o); err != nil {
		t.Fatal(err)
	}
	return out
}

// The rebuilt folder gets the mode any folder the user makes gets: 0755
// less the umask (it used to be 0700 whatever the umask).
func TestDecompressFolderModeFollowsUmask(t *testing.T) {
	dir := t.TempDir()
	in := smallPLLM(t, dir)
	for umask, want := range map[int]os.FileMode{0o022: 0o755, 0o027: 0o750} {
		old := syscall.Umask(umask)
		out := filepath.Join(dir, "hf")
		err := Decompress(DecompressOptions{In: in, Out: out, Format: FormatSafetensors, Force: true, Kernels: bindings.Go()})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("umask %03o: folder mode %v, want %v", umask, fi.Mode().Perm(), want)
		}
	}
}

// A decompress --force killed between its two renames leaves the old
// folder aside (and perhaps an unfinished one). The next run puts the old
// folder back before anything else, so without --force it is refused as
// existing and nothing is lost; with --force it is replaced; either way no
// hidden folder remains.
func TestDecompressRecoversAKilledReplacement(t *testing.T) {
	dir := t.TempDir()
	in := smallPLLM(t, dir)
	out := filepath.Join(dir, "hf")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "mine.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(out, filepath.Join(dir, ".hf.pocketllm-old-00000000aaaa")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".hf.pocketllm-tmp-00000000bbbb"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := []string{"m.pllm", "m.safetensors"}

	err := Decompress(DecompressOptions{In: in, Out: out, Format: FormatSafetensors, Kernels: bindings.Go()})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("without --force: %v, want the restored folder refused as existing", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "mine.txt")); err != nil || string(b) != "keep" {
		t.Errorf("the old folder was not put back: %q %v", b, err)
	}
	if got := testfs.Names(t, dir); !slices.Equal(got, append([]string{"hf"}, before...)) {
		t.Errorf("after the refused run: %q", got)
	}

	if err := Decompress(DecompressOptions{In: in, Out: out, Format: FormatSafetensors, Force: true, Kernels: bindings.Go()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
		t.Errorf("not replaced: %v", err)
	}
	if got := testfs.Names(t, dir); !slices.Equal(got, append([]string{"hf"}, before...)) {
		t.Errorf("after the forced run: %q", got)
	}
}
