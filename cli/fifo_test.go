//go:build unix

package cli

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"pocketllm-native/internal/demomodel"
)

// writeTokenizer writes a valid llama2.c tokenizer: <unk>, <s>, </s>, the
// 256 byte tokens, and a few more.
func writeTokenizer(t *testing.T, path string) {
	t.Helper()
	vocab := []string{"<unk>", "<s>", "</s>"}
	for b := 0; b < 256; b++ {
		vocab = append(vocab, fmt.Sprintf("<0x%02X>", b))
	}
	vocab = append(vocab, " a", " b", "ab")
	data := binary.LittleEndian.AppendUint32(nil, 8)
	for _, s := range vocab {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(0))
		data = binary.LittleEndian.AppendUint32(data, uint32(len(s)))
		data = append(data, s...)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Every command that reads a file refuses a FIFO at once with one line
// naming it, instead of waiting forever for a writer. The other inputs are
// valid, so that each case reaches the FIFO.
func TestFIFOInputsAreRefused(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if err := demomodel.Write(model, demomodel.Config, 1); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "tok.bin")
	writeTokenizer(t, tok)
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, []byte("a b ab\nb a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, pllmF, binF, stF, txtF := fifo("fifo"), fifo("fifo.pllm"), fifo("fifo.bin"), fifo("fifo.safetensors"), fifo("fifo.txt")
	// A model folder whose weights file is a FIFO.
	folder := filepath.Join(dir, "pipe-model")
	if err := demomodel.Write(folder, demomodel.Config, 1); err != nil {
		t.Fatal(err)
	}
	weights := filepath.Join(folder, "model.safetensors")
	os.Remove(weights)
	if err := syscall.Mkfifo(weights, 0o644); err != nil {
		t.Fatal(err)
	}
	out := func(name string) string { return filepath.Join(dir, "out", name) }
	os.Mkdir(filepath.Join(dir, "out"), 0o755)
	quick := []string{"--bits", "4", "--share", "kind", "--epochs", "1", "--backend", "go"}
	cases := []struct {
		fifo string
		args []string
	}{
		{plain, []string{"compress", "--in", plain, "--out", out("a.pllm")}},
		{binF, []string{"compress", "--in", binF, "--out", out("b.pllm")}},
		{stF, []string{"compress", "--in", stF, "--out", out("c.pllm")}},
		{weights, []string{"compress", "--in", folder, "--out", out("d.pllm")}},
		{txtF, append([]string{"compress", "--in", model, "--out", out("e.pllm"), "--calibration", txtF, "--tokenizer", tok}, quick...)},
		{binF, append([]string{"compress", "--in", model, "--out", out("f.pllm"), "--calibration", text, "--tokenizer", binF}, quick...)},
		{pllmF, []string{"decompress", "--in", pllmF, "--out", out("hf")}},
		{pllmF, []string{"inspect", pllmF}},
		{binF, []string{"eval", "--model", model, "--compressed", model, "--tokenizer", binF, "--text", text}},
		{txtF, []string{"eval", "--model", model, "--compressed", model, "--tokenizer", tok, "--text", txtF}},
		{plain, []string{"eval", "--model", plain, "--compressed", model, "--tokenizer", tok, "--text", text}},
		{pllmF, []string{"eval", "--model", model, "--compressed", pllmF, "--tokenizer", tok, "--text", text}},
		{pllmF, []string{"generate", "--model", pllmF, "--tokenizer", tok}},
		{binF, []string{"generate", "--model", model, "--tokenizer", binF}},
		{plain, []string{"sweep", "--model", plain, "--tokenizer", tok, "--text", text, "--out-dir", out("s1")}},
		{binF, []string{"sweep", "--model", model, "--tokenizer", binF, "--text", text, "--out-dir", out("s2")}},
		{txtF, []string{"sweep", "--model", model, "--tokenizer", tok, "--text", txtF, "--out-dir", out("s3")}},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.fifo+": not a regular file (a named pipe)") {
			t.Errorf("%s: exit %d, stderr %q; want one line refusing %s as a named pipe", strings.Join(c.args, " "), code, stderr, c.fifo)
		}
	}
}
