package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Run(append([]string{"pocketllm-native"}, args...), &o, &e)
	return code, o.String(), e.String()
}

// TestErrorsAreOneLineAndLeaveNothing runs the commands on bad input: each
// must exit non-zero with one line naming the file and the problem, and
// write nothing.
func TestErrorsAreOneLineAndLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pllm")
	os.WriteFile(garbage, []byte("this is not a container"), 0o644)
	truncated := filepath.Join(dir, "model.safetensors")
	os.WriteFile(truncated, []byte{200, 0, 0, 0, 0, 0, 0, 0, '{', '"'}, 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"compress", "--in", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "a.pllm")}, "missing"},
		{[]string{"compress", "--in", truncated, "--out", filepath.Join(dir, "b.pllm")}, "model.safetensors"},
		{[]string{"compress", "--in", truncated, "--out", filepath.Join(dir, "c.pllm"), "--bits", "3", "--dim", "4", "--codebook", "16"}, "either --bits"},
		{[]string{"compress", "--in", truncated, "--out", filepath.Join(dir, "d.bin")}, ".pllm"},
		{[]string{"compress", "--in", truncated, "--out", filepath.Join(dir, "e.pllm"), "--epochs", "0"}, "epochs"},
		{[]string{"decompress", "--in", garbage, "--out", filepath.Join(dir, "out")}, "garbage.pllm"},
		{[]string{"decompress", "--in", garbage, "--out", filepath.Join(dir, "out2"), "--dtype", "int8"}, "--dtype"},
		{[]string{"inspect", garbage}, "garbage.pllm"},
		{[]string{"inspect"}, "one .pllm file"},
		{[]string{"compress", "--in", truncated, "--out", filepath.Join(dir, "f.pllm"), "--backend", "tpu"}, "tpu"},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code == 0 {
			t.Errorf("%v: exit code 0", c.args)
			continue
		}
		if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q, want one line mentioning %q", c.args, stderr, c.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("left behind: %v", names)
	}
}

// TestDemoRunsEndToEnd is the README's first command, shortened.
func TestDemoRunsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := run("demo", "--dir", dir, "--epochs", "1", "--backend", "go")
	if code != 0 {
		t.Fatalf("demo failed: %s", stderr)
	}
	for _, want := range []string{"compressed tensors", "match their reported NMSE", "bit-identical"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	code, js, stderr := run("inspect", filepath.Join(dir, "model.pllm"), "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"file_bytes", "bits_per_weight", "compression_ratio_fp16", "compression_ratio_fp32", "tensors"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("inspect --json lacks %q", k)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "model.pllm"))
	if int64(rep["file_bytes"].(float64)) != st.Size() {
		t.Errorf("file_bytes %v, file has %d", rep["file_bytes"], st.Size())
	}
}

// bench --case measures the sizes asked for (commas inside a value do not
// split it), and --epoch-count 2 gives the first epoch and the next.
func TestBenchCasesAndEpochs(t *testing.T) {
	code, out, errOut := run("bench", "--backends", "go", "--ladder=false", "--naive=false", "--min-time", "1ms",
		"--case", "assign:n=64,k=8,dz=4", "--case", "decode:n=16,k=8,dim=4,hidden=3,e=4",
		"--epoch-rows", "8", "--epoch-cols", "16", "--epoch-k", "4", "--epoch-count", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rows []benchRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		if !(r.Seconds > 0) {
			t.Errorf("%s %s: %v seconds", r.Kernel, r.Shape, r.Seconds)
		}
		got = append(got, r.Kernel+" "+r.Shape)
	}
	want := []string{"assign dz4_K8_N64", "decode dim4_h3_E4_K8_N16", "epoch 8x16_d8_K4", "epoch_next 8x16_d8_K4"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("rows %q, want %q", got, want)
	}
	if code, _, errOut := run("bench", "--backends", "go", "--ladder=false", "--case", "assign:n=64"); code == 0 || !strings.Contains(errOut, "k= is missing") {
		t.Errorf("incomplete --case: exit %d, %q", code, errOut)
	}
}
