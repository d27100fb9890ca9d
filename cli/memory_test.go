//go:build linux

package cli

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/synthmodel"
)

// memoryBound is the most a compress or decompress may hold at its peak:
// three times the largest group's fp32 size plus 300 MB (BENCHMARKS.md,
// "Memory"), whatever the model's size.
func memoryBound(largestGroup int64) int64 { return 3*largestGroup + 300e6 }

// TestMemoryBoundedByGroup compresses and decompresses (both formats) a
// 0.75 GB synthetic model in child processes and checks each one's peak
// resident set against memoryBound of the model's largest group (11.5 MB).
// The model is made so that growing with it fails: its kept embedding
// (0.33 GB) is more than the bound allows on its own, and so are the four
// compressed layers' weights rebuilt together (0.2 GB) with it.
func TestMemoryBoundedByGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 2 GB and trains four layers")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if err := synthmodel.Write(model, synthmodel.Medium, 1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.pllm")
	// Cheap training (one epoch, K=256, no refinement): memory, not
	// quality, is measured; k-means initialisation stays on.
	peak := runMeasured(t, "compress", "--in", model, "--out", out, "--include", `layers\.[0-3]\..*_proj\.weight$`,
		"--share", "none", "--dim", "8", "--codebook", "256", "--epochs", "1", "--refine", "0", "-q")
	rep, err := pipeline.Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	var largest int64
	for _, g := range rep.Groups {
		largest = max(largest, 4*g.Weights)
	}
	if want := int64(4 * synthmodel.Medium.IntermediateSize * synthmodel.Medium.HiddenSize); largest != want || len(rep.Groups) != 28 {
		t.Fatalf("%d groups, the largest %d bytes at fp32; want 28, %d", len(rep.Groups), largest, want)
	}
	bound := memoryBound(largest)
	check := func(what string, peak int64) {
		t.Logf("%s: peak RSS %.0f MB, bound %.0f MB (largest group %.1f MB at fp32)", what, mb(peak), mb(bound), mb(largest))
		if peak > bound {
			t.Errorf("%s: peak RSS %.0f MB exceeds 3 x %.1f MB + 300 MB = %.0f MB", what, mb(peak), mb(largest), mb(bound))
		}
	}
	check("compress", peak)

	hf := filepath.Join(dir, "hf")
	check("decompress to safetensors", runMeasured(t, "decompress", "--in", out, "--out", hf, "-q"))
	// The kept embedding went through compress and decompress as streams.
	emb := "model.embed_tokens.weight"
	if a, b := tensorHash(t, filepath.Join(model, checkpoint.SingleFileName), emb), tensorHash(t, filepath.Join(hf, checkpoint.SingleFileName), emb); a != b {
		t.Errorf("%s differs after the round trip", emb)
	}

	bin := filepath.Join(dir, "m.bin")
	check("decompress to llama2c", runMeasured(t, "decompress", "--in", out, "--out", bin, "--format", "llama2c", "-q"))
	f, err := llama2c.Open(bin) // checks the size against the header
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a, b := tensorHash(t, filepath.Join(model, checkpoint.SingleFileName), emb), streamHash(t, f, emb); a != b {
		t.Errorf("%s differs in the llama2c file", emb)
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// runMeasured runs the command (the test binary as the CLI) and returns its
// peak resident set in bytes.
func runMeasured(t *testing.T, args ...string) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOMEMLIMIT=") && !strings.HasPrefix(e, "GOGC=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, envRunMain+"=1")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", args[0], err, stderr.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("%s: no resource usage", args[0])
	}
	return ru.Maxrss << 10 // kilobytes on Linux
}

// tensorHash hashes one tensor's bytes of a safetensors file.
func tensorHash(t *testing.T, path, name string) string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return streamHash(t, f, name)
}

// streamHash hashes one tensor's bytes, read as a stream.
func streamHash(t *testing.T, f interface {
	Stream(string) (io.Reader, int64, error)
}, name string) string {
	t.Helper()
	src, _, err := f.Stream(name)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
