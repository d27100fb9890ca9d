package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/internal/demomodel"
	"pocketllm-native/internal/sharedtest"
)

// TestMessagesNameTheCauseAndStage checks that an error names what the user
// got wrong (the flag value, the input file) and the stage that failed, not
// a consequence further down.
func TestMessagesNameTheCauseAndStage(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if err := demomodel.Write(model, demomodel.Config, 1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.pllm")
	cases := []struct {
		args    []string
		want    []string
		notWant string
	}{
		// A bits target that is not a positive number below 16 is named as
		// such, never turned into a sub-vector length of 0.
		{[]string{"--bits", "0"}, []string{"--bits", "target 0 bits"}, "sub-vector"},
		{[]string{"--bits", "-3"}, []string{"--bits", "target -3 bits"}, "sub-vector"},
		{[]string{"--bits", "nan"}, []string{"--bits", "target NaN bits"}, "sub-vector"},
		// At 16 bits or more the file cannot be smaller than FP16.
		{[]string{"--bits", "100"}, []string{"--bits", "target 100 bits", "FP16"}, ""},
		{[]string{"--bits", "16"}, []string{"target 16 bits"}, ""},
		// A target the planner cannot meet names the input file.
		{[]string{"--bits", "0.5", "--share", "none"}, []string{model + ": ", "cannot reach"}, ""},
	}
	for _, c := range cases {
		args := append([]string{"compress", "--in", model, "--out", out, "--backend", "go", "-q"}, c.args...)
		code, _, stderr := run(args...)
		if code == 0 {
			t.Errorf("%v: exit code 0", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr %q lacks %q", c.args, stderr, w)
			}
		}
		if c.notWant != "" && strings.Contains(stderr, c.notWant) {
			t.Errorf("%v: stderr %q blames %q", c.args, stderr, c.notWant)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: wrote %s", c.args, out)
		}
	}
}

func TestMessagesNameTheStageOfTextAndGeneration(t *testing.T) {
	stories, tok := sharedtest.Stories260K(t), sharedtest.Tokenizer(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.txt")
	cases := []struct {
		args          []string
		want, notWant string
	}{
		{[]string{"compress", "--in", stories, "--out", filepath.Join(dir, "a.pllm"), "--share", "kind", "--bits", "4", "--calibration", missing, "--tokenizer", tok},
			"calibration: open " + missing, "eval:"},
		{[]string{"eval", "--model", stories, "--compressed", stories, "--tokenizer", tok, "--text", missing},
			"pocketllm-native: eval: open " + missing, ""},
		{[]string{"generate", "--model", stories, "--tokenizer", tok, "--steps", "1000000", "--backend", "go"},
			"pocketllm-native: generate: ", "eval:"},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want one line with %q", c.args[0], code, stderr, c.want)
		}
		if c.notWant != "" && strings.Contains(stderr, c.notWant) {
			t.Errorf("%v: stderr %q names the wrong stage %q", c.args[0], stderr, c.notWant)
		}
	}
}

// TestNotATerminal: /dev/null is a character device but no terminal, and
// neither are files and pipes; progress lines meant for a terminal must not
// go to any of them.
func TestNotATerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{null, file, r, w} {
		if isTerminal(f) {
			t.Errorf("%s counts as a terminal", f.Name())
		}
	}
}

// TestPackageCommentListsEveryCommand keeps the package comment's list of
// commands in step with the application.
func TestPackageCommentListsEveryCommand(t *testing.T) {
	src, err := os.ReadFile("app.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(src), "package cli")
	for _, c := range New().Commands {
		if !strings.Contains(doc, "//   - "+c.Name+": ") {
			t.Errorf("the package comment does not list command %q", c.Name)
		}
	}
}

func TestSizeVersusSaysLarger(t *testing.T) {
	for ratio, want := range map[float64]string{4: "4.00x smaller than", 1: "1.00x smaller than", 0.8: "1.25x larger than"} {
		if got := sizeVersus(ratio); got != want {
			t.Errorf("sizeVersus(%v) = %q, want %q", ratio, got, want)
		}
	}
}
