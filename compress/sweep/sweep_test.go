package sweep

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/rtn"
)

func TestParseLadders(t *testing.T) {
	m, err := ParseMethods(" pocketllm, rtn ")
	if err != nil || !cmp.Equal(m, []string{"pocketllm", "rtn"}) {
		t.Fatalf("ParseMethods: %v, %v", m, err)
	}
	b, err := ParseBits("2, 2.5,4")
	if err != nil || !cmp.Equal(b, []float64{2, 2.5, 4}) {
		t.Fatalf("ParseBits: %v, %v", b, err)
	}
	r, err := ParseRTN("3:64, 4:32")
	if err != nil || !cmp.Equal(r, []rtn.Settings{{Bits: 3, GroupSize: 64}, {Bits: 4, GroupSize: 32}}) {
		t.Fatalf("ParseRTN: %v, %v", r, err)
	}
	for _, bad := range []struct {
		what string
		err  error
	}{
		{"methods gptq", func() error { _, err := ParseMethods("pocketllm,gptq"); return err }()},
		{"methods twice", func() error { _, err := ParseMethods("vq,vq"); return err }()},
		{"methods empty", func() error { _, err := ParseMethods(""); return err }()},
		{"bits zero", func() error { _, err := ParseBits("0,3"); return err }()},
		{"bits text", func() error { _, err := ParseBits("3,x"); return err }()},
		{"bits NaN", func() error { _, err := ParseBits("NaN"); return err }()},
		{"bits twice", func() error { _, err := ParseBits("3,3.0"); return err }()},
		{"rtn no group", func() error { _, err := ParseRTN("4"); return err }()},
		{"rtn 9 bits", func() error { _, err := ParseRTN("9:32"); return err }()},
		{"rtn group 0", func() error { _, err := ParseRTN("4:0"); return err }()},
		{"rtn twice", func() error { _, err := ParseRTN("4:32,4:32"); return err }()},
	} {
		if bad.err == nil {
			t.Errorf("%s: accepted", bad.what)
		}
	}
}

func TestLadderLabelsAndFiles(t *testing.T) {
	l := Ladder([]string{"rtn", "vq"}, []float64{2.5, 3}, []rtn.Settings{{Bits: 3, GroupSize: 64}})
	var got []string
	for _, s := range l {
		got = append(got, s.Method+"|"+s.Label()+"|"+s.FileName())
	}
	want := []string{"rtn|3-bit g64|rtn-3bit-g64.pllm", "vq|bits 2.5|vq-bits2.5.pllm", "vq|bits 3|vq-bits3.pllm"}
	if !cmp.Equal(got, want) {
		t.Fatalf("ladder %v, want %v", got, want)
	}
	if tg := l[0].Target(); tg != 3.5 {
		t.Errorf("rtn 3:64 target %v, want 3 + 32/64", tg)
	}
	if tg := l[1].Target(); tg != 2.5 {
		t.Errorf("vq bits 2.5 target %v", tg)
	}
}

// The skip decision reads the planner's words, so this fails if the
// planner's message changes.
func TestIsUnreachableMatchesPlanner(t *testing.T) {
	g := plan.Group{Name: "g", Members: []plan.Matrix{{Name: "w", Rows: 8, Cols: 8, DType: "F32"}}}
	cost := func(plan.Group, plan.Setting) int64 { return 1000 } // more than the 64 weights can pay for
	_, _, err := plan.Choose(g, 2, plan.Options{Dims: []int{2}, MaxLog2K: 4, Cost: cost})
	if err == nil {
		t.Fatal("the planner met an impossible target")
	}
	if !IsUnreachable(err) {
		t.Fatalf("planner error not recognised as unreachable: %v", err)
	}
	if IsUnreachable(os.ErrNotExist) || IsUnreachable(nil) {
		t.Fatal("other errors recognised as unreachable")
	}
}

func TestLogTicks(t *testing.T) {
	labels := func(lo, hi float64) []string {
		var out []string
		for _, tk := range (logTicks{}).Ticks(lo, hi) {
			if tk.Value < lo || tk.Value > hi {
				t.Errorf("tick %v outside [%v, %v]", tk.Value, lo, hi)
			}
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		return out
	}
	if got, want := labels(4.6, 12000), []string{"5", "10", "20", "50", "100", "200", "500", "1000", "2000", "5000", "10000"}; !cmp.Equal(got, want) {
		t.Errorf("4.6..12000: %v, want %v", got, want)
	}
	if got, want := labels(5.5, 9.5), []string{"6", "7", "8", "9"}; !cmp.Equal(got, want) {
		t.Errorf("5.5..9.5: %v, want %v", got, want)
	}
}

func syntheticResults() *Results {
	return &Results{
		Command: "pocketllm-native sweep --model m.bin", Model: "m.bin", Tokenizer: "t.bin", Text: "x.txt",
		Sequences: 3, Tokens: 100, Backend: "go", Share: "kind", OriginalPPL: 5.5, OriginalNLL: math.Log(5.5),
		Rows: []Row{
			{Method: "pocketllm", Setting: "bits 2", Target: 2, Skipped: true, Reason: "group a|b: cannot reach 2.00 bits per weight"},
			{Method: "pocketllm", Setting: "bits 3", Target: 3, BitsPerWeight: 2.9, PPL: 8, NLL: math.Log(8), File: "pllm/pocketllm-bits3.pllm"},
			{Method: "vq", Setting: "bits 3", Target: 3, BitsPerWeight: 2.7, PPL: 70, NLL: math.Log(70), File: "pllm/vq-bits3.pllm"},
			{Method: "rtn", Setting: "4-bit g32", Target: 5, BitsPerWeight: 5.5, PPL: 5.7, NLL: math.Log(5.7), File: "pllm/rtn-4bit-g32.pllm"},
		},
	}
}

func TestOutputs(t *testing.T) {
	r := syntheticResults()
	md := string(r.Markdown())
	if !strings.Contains(md, "```\n"+r.Command+"\n```") {
		t.Errorf("table lacks the command line:\n%s", md)
	}
	var rows []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| method") {
			rows = append(rows, l)
		}
	}
	if len(rows) != len(r.Rows) {
		t.Fatalf("%d table rows for %d runs:\n%s", len(rows), len(r.Rows), md)
	}
	if !strings.Contains(rows[0], `skipped: group a\|b`) {
		t.Errorf("skipped row %q does not give the escaped reason", rows[0])
	}

	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*r, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	bad := syntheticResults()
	bad.Rows[1].PPL = math.Inf(1)
	if _, err := bad.JSON(); err == nil {
		t.Error("an infinite perplexity was written as JSON")
	}

	img, err := r.Plot()
	if err != nil {
		t.Fatal(err)
	}
	pic, err := png.Decode(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := pic.Bounds(); b.Dx() < 400 || b.Dy() < 250 {
		t.Errorf("plot is %dx%d pixels", b.Dx(), b.Dy())
	}

	// Every run skipped still gives a plot (the original alone).
	skipped := syntheticResults()
	skipped.Rows = skipped.Rows[:1]
	if _, err := skipped.Plot(); err != nil {
		t.Errorf("plot with every run skipped: %v", err)
	}
}

func TestSortRows(t *testing.T) {
	rows := []Row{
		{Method: "rtn", BitsPerWeight: 3.5},
		{Method: "vq", BitsPerWeight: 2.7},
		{Method: "pocketllm", Skipped: true, Target: 4},
		{Method: "vq", BitsPerWeight: 1.7},
		{Method: "pocketllm", BitsPerWeight: 2.9},
	}
	sortRows(rows, map[string]int{"pocketllm": 0, "vq": 1, "rtn": 2})
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %g", r.Method, rowBits(r)))
	}
	want := []string{"pocketllm 2.9", "pocketllm 4", "vq 1.7", "vq 2.7", "rtn 3.5"}
	if !cmp.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestWriteRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	r := syntheticResults()
	if err := r.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	r.OriginalPPL = 6
	err := r.Write(dir, false)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second write without force: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if !bytes.Equal(before, after) {
		t.Fatal("refused write changed the file")
	}
	if err := r.Write(dir, true); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("%d entries in the folder, want the 3 result files (no temporaries)", len(ents))
	}
}

func TestRunRefusesBeforeWork(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, PLLMDir), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Setting{Method: pipeline.MethodVQ, Bits: 3}
	stale := filepath.Join(dir, PLLMDir, s.FileName())
	if err := os.WriteFile(stale, []byte("earlier"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The model does not exist: the overwrite check must come first.
	o := Options{Model: filepath.Join(dir, "absent.bin"), OutDir: dir, Settings: []Setting{s}}
	o.Base.Kernels = bindings.Go()
	_, err := Run(o)
	if err == nil || !strings.Contains(err.Error(), stale) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Run over an existing .pllm: %v", err)
	}
	o.Settings = []Setting{s, s}
	o.Force = true
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("Run with a repeated setting: %v", err)
	}
}
