package cli

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/compress/pllm"
	"pocketllm-native/internal/demomodel"
)

// compressOneTensor compresses one small matrix of the demo model with the
// extra flags and returns the exit code, stderr and the output path.
func compressOneTensor(t *testing.T, dir string, extra ...string) (int, string, string) {
	t.Helper()
	model := filepath.Join(dir, "model")
	if err := demomodel.Write(model, demomodel.Config, 1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.pllm")
	args := append([]string{"compress", "--in", model, "--out", out, "--include", `layers\.0\.self_attn\.k_proj`,
		"--dim", "4", "--codebook", "16", "--share", "none", "--epochs", "2", "--backend", "go", "--quiet"}, extra...)
	code, _, stderr := run(args...)
	return code, stderr, out
}

// `compress --lr 1e30` fails in one line naming the group and the epoch,
// and writes no file.
func TestDivergedCompressWritesNothing(t *testing.T) {
	dir := t.TempDir()
	code, stderr, out := compressOneTensor(t, dir, "--lr", "1e30")
	if code == 0 || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q: want one error line", code, stderr)
	}
	for _, want := range []string{"model", "group model.layers.0.self_attn.k_proj.weight", "diverged at epoch 1"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a file was written")
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("left behind: %v", es)
	}
}

// A NaN in a stored codebook, behind valid checksums, is refused by
// decompress and inspect in one line naming the array; inspect's byte
// figures of a good file add up to its size.
func TestNonFiniteCodebookRefused(t *testing.T) {
	dir := t.TempDir()
	code, stderr, file := compressOneTensor(t, dir)
	if code != 0 {
		t.Fatal(stderr)
	}
	code, js, stderr := run("inspect", file, "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var rep struct {
		FileBytes       int64 `json:"file_bytes"`
		CompressedBytes int64 `json:"compressed_bytes"`
		RawBytes        int64 `json:"raw_bytes"`
		SideBytes       int64 `json:"side_bytes"`
		FramingBytes    int64 `json:"framing_bytes"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	if sum := rep.CompressedBytes + rep.RawBytes + rep.SideBytes + rep.FramingBytes; rep.FileBytes == 0 || sum != rep.FileBytes {
		t.Errorf("inspect's bytes add up to %d, the file has %d", sum, rep.FileBytes)
	}

	r, err := pllm.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Layout()
	r.Close()
	b, _ := os.ReadFile(file)
	for _, s := range l.Sections {
		for _, a := range s.Arrays {
			if a.Name == "codebook" {
				binary.LittleEndian.PutUint16(b[a.Offset+6:], 0x7e00) // f16 NaN as value 3
				end := s.Offset + s.Size - pllm.SectionCRCSize
				binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[s.Offset:end], crc32.MakeTable(crc32.Castagnoli)))
			}
		}
	}
	bad := filepath.Join(dir, "nan.pllm")
	os.WriteFile(bad, b, 0o644)
	for _, args := range [][]string{{"decompress", "--in", bad, "--out", filepath.Join(dir, "rebuilt")}, {"inspect", bad}} {
		code, _, stderr := run(args...)
		if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `nan.pllm`) || !strings.Contains(stderr, `array "codebook": value 3`) {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rebuilt")); err == nil {
		t.Error("decompress wrote an output")
	}
}
