package cli

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/sweep"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/sharedtest"
)

func runApp(args ...string) (string, error) {
	var out bytes.Buffer
	app := New()
	app.Writer, app.ErrWriter = &out, io.Discard
	err := app.Run(append([]string{"pocketllm-native"}, args...))
	return out.String(), err
}

func TestSweepStories260K(t *testing.T) {
	model := sharedtest.Stories260K(t)
	tokPath := sharedtest.Tokenizer(t)
	sample := sharedtest.ValidText(t)

	// Two stories keep the scoring short.
	dir := t.TempDir()
	lines, err := eval.ReadLines(sample)
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "two.txt")
	if err := os.WriteFile(text, []byte(strings.Join(lines[:2], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sweep out")
	args := []string{"sweep", "--model", model, "--tokenizer", tokPath, "--text", text, "--out-dir", out,
		"--methods", "pocketllm,vq,rtn", "--bits", "0.1,3,4", "--rtn", "2:32,4:64",
		"--epochs", "1", "--dims", "2,4", "--backend", "go", "--json",
		"--calibration-samples", "3", "--tune-steps", "2", "--index-update=false", "--block-steps", "1", "--e2e-steps", "2", "--stages"}
	stdout, err := runApp(args...)
	if err != nil {
		t.Fatal(err)
	}

	js, err := os.ReadFile(filepath.Join(out, sweep.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(js) {
		t.Errorf("--json printed something other than %s", sweep.JSONFile)
	}
	var res sweep.Results
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatalf("%s: %v", sweep.JSONFile, err)
	}
	var raw struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	wantCmd := "pocketllm-native sweep --model " + model + " --tokenizer " + tokPath + " --text " + text +
		" --out-dir '" + out + "' --methods pocketllm,vq,rtn --bits 0.1,3,4 --rtn 2:32,4:64 --epochs 1 --dims 2,4 --backend go --json" +
		" --calibration-samples 3 --tune-steps 2 --index-update=false --block-steps 1 --e2e-steps 2 --stages"
	if res.Command != wantCmd {
		t.Errorf("command recorded as\n%s\nwant\n%s", res.Command, wantCmd)
	}

	// The original's score is the convention's, computed on its own.
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := llama.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	base, err := eval.Perplexity(orig, tok, lines[:2], eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OriginalPPL != base.PPL || res.Tokens != base.Tokens || res.Sequences != 2 {
		t.Errorf("original: ppl %v over %d tokens, want %v over %d", res.OriginalPPL, res.Tokens, base.PPL, base.Tokens)
	}

	// pocketllm and vq: 0.1 bits is below any setting's cost; 3 and 4 run,
	// each with a row per tuning stage before the file's.
	var wantRows []string
	for _, m := range []string{"pocketllm", "vq"} {
		wantRows = append(wantRows, m+" bits 0.1")
		for _, b := range []string{"3", "4"} {
			for _, st := range []string{" (after trained)", " (after output)", " (after block)", ""} {
				wantRows = append(wantRows, m+" bits "+b+st)
			}
		}
	}
	wantRows = append(wantRows, "rtn 2-bit g32", "rtn 4-bit g64")
	if len(res.Rows) != len(wantRows) {
		t.Fatalf("%d rows, want %d", len(res.Rows), len(wantRows))
	}
	ppl := map[string]float64{}
	for i, r := range res.Rows {
		name := r.Method + " " + r.Setting
		if r.Stage != "" {
			name += " (after " + r.Stage + ")"
		}
		if name != wantRows[i] {
			t.Errorf("row %d is %s, want %s", i, name, wantRows[i])
		}
		if r.Skipped != strings.HasSuffix(name, "bits 0.1") {
			t.Errorf("%s: skipped %v (%s)", name, r.Skipped, r.Reason)
		}
		if r.Skipped {
			if !strings.Contains(r.Reason, "cannot reach") || r.File != "" {
				t.Errorf("%s: skipped with reason %q, file %q", name, r.Reason, r.File)
			}
			continue
		}
		if r.Stage != "" {
			// A stage is measured in memory at the size of the file that follows it.
			if next := res.Rows[i+1]; r.BitsPerWeight != next.BitsPerWeight || r.File != "" || !(r.PPL >= 1) {
				t.Errorf("%s: %.6f bits per weight (file row %.6f), file %q, ppl %v", name, r.BitsPerWeight, next.BitsPerWeight, r.File, r.PPL)
			}
			continue
		}
		for _, key := range []string{"method", "setting", "target", "groups", "file", "bits_per_weight", "file_bytes",
			"ppl", "nll", "kl_mean", "top1_agreement", "nmse_mean", "seconds"} {
			if _, ok := raw.Rows[i][key]; !ok {
				t.Errorf("%s: no %q in the JSON row", name, key)
			}
		}
		// The recorded rate is the file's, as inspect reports it.
		rep, err := pipeline.Inspect(filepath.Join(out, r.File))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var nmse float64
		n := 0
		for _, tr := range rep.Tensors {
			if tr.NMSE != nil {
				nmse += *tr.NMSE
				n++
			}
		}
		nmse /= float64(n)
		if r.BitsPerWeight != rep.BitsPerWeight || r.FileBytes != rep.FileBytes || math.Abs(r.NMSEMean-nmse) > 1e-12 {
			t.Errorf("%s: recorded %.6f bits/weight, %d bytes, NMSE %.6g; inspect says %.6f, %d, %.6g",
				name, r.BitsPerWeight, r.FileBytes, r.NMSEMean, rep.BitsPerWeight, rep.FileBytes, nmse)
		}
		if r.Method != pipeline.MethodRTN && r.BitsPerWeight > r.Target {
			t.Errorf("%s: %.3f bits per weight over the target", name, r.BitsPerWeight)
		}
		if !(r.PPL >= 1) || math.IsInf(r.PPL, 0) || math.Abs(math.Log(r.PPL)-r.NLL) > 1e-9 ||
			!(r.KLMean >= 0) || !(r.Top1Agreement >= 0 && r.Top1Agreement <= 1) {
			t.Errorf("%s: ppl %v, nll %v, KL %v, top-1 %v", name, r.PPL, r.NLL, r.KLMean, r.Top1Agreement)
		}
		ppl[name] = r.PPL
	}
	if !(ppl["rtn 4-bit g64"] < ppl["rtn 2-bit g32"]) {
		t.Errorf("rtn 4-bit perplexity %v not below 2-bit's %v", ppl["rtn 4-bit g64"], ppl["rtn 2-bit g32"])
	}

	md, err := os.ReadFile(filepath.Join(out, sweep.TableFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "```\n"+wantCmd+"\n```") {
		t.Errorf("%s does not start with the command line", sweep.TableFile)
	}
	var tableRows []string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| method") {
			tableRows = append(tableRows, l)
		}
	}
	if len(tableRows) != len(res.Rows) {
		t.Errorf("%d table rows for %d runs", len(tableRows), len(res.Rows))
	}
	for i, l := range tableRows {
		if r := res.Rows[i]; !strings.HasPrefix(l, "| "+r.Method+" | "+r.Setting) {
			t.Errorf("table row %d %q is not %s %s", i, l, r.Method, r.Setting)
		}
	}
	f, err := os.Open(filepath.Join(out, sweep.PlotFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", sweep.PlotFile, err)
	}

	// A second sweep into the same folder is refused, before any work,
	// and leaves the results as they were.
	if _, err := runApp(args...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second sweep without --force: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(out, sweep.JSONFile)); !bytes.Equal(again, js) {
		t.Error("a refused sweep changed the results")
	}
}

func TestSweepRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "t.txt")
	if err := os.WriteFile(text, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"sweep", "--model", "m.bin", "--tokenizer", "t.bin", "--text", text, "--out-dir", dir, "--backend", "go"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--methods", "pocketllm,gptq"}, "--methods"},
		{[]string{"--bits", "3,-1"}, "--bits"},
		{[]string{"--rtn", "4x32"}, "--rtn"},
		{[]string{"--share", "all"}, "--share"},
		{[]string{"--epochs", "0"}, "epochs"},
		{[]string{"--calibration", text}, "is the evaluation text"},
	} {
		_, err := runApp(append(append([]string{}, base...), c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
