package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/internal/atomicfile"
)

// resumeCase is a job small enough to run many times: a plain (untuned)
// run and tuned runs of both trained methods, one group per matrix so that
// there are groups to share out.
type resumeCase struct {
	name string
	opts func(in, out string) CompressOptions
}

func resumeCases() []resumeCase {
	untuned := func(method string) func(in, out string) CompressOptions {
		return func(in, out string) CompressOptions {
			o := tunedOptions(in, out, method)
			o.Share, o.Force = plan.ShareNone, false
			o.Calibration, o.Tuning = Calibration{Off: true}, Tuning{}
			return o
		}
	}
	tuned := func(method string) func(in, out string) CompressOptions {
		return func(in, out string) CompressOptions {
			o := tunedOptions(in, out, method)
			o.Share, o.Force = plan.ShareNone, false
			o.Tuning.OutputSteps, o.Tuning.BlockSteps, o.Tuning.E2ESteps = 3, 0, 2
			return o
		}
	}
	rtnJob := func(in, out string) CompressOptions {
		o := untuned(MethodRTN)(in, out)
		o.Dim, o.K, o.RTN = 0, 0, rtn.Settings{Bits: 3, GroupSize: 16}
		return o
	}
	return []resumeCase{
		{"untuned-pocketllm", untuned(MethodPocketLLM)},
		{"untuned-vq", untuned(MethodVQ)},
		{"rtn", rtnJob},
		{"tuned-pocketllm", tuned(MethodPocketLLM)},
		{"tuned-vq", tuned(MethodVQ)},
	}
}

// errCrash stands for a crash in the middle of training.
var errCrash = errors.New("crash")

// compressCrashing runs o and stops it (by a panic out of the progress
// callback, as abrupt as the pipeline can see in-process) when group
// number stopAt (from 1) starts training.
func compressCrashing(t *testing.T, o CompressOptions, stopAt int) {
	t.Helper()
	o.Events = func(e Event) {
		if e.Kind == "group" && e.Index == stopAt {
			panic(errCrash)
		}
	}
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("the run did not stop at group %d: %v", stopAt, r)
		}
	}()
	Compress(o)
}

func reference(t *testing.T, c resumeCase, in string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.pllm")
	if _, err := Compress(c.opts(in, out)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEqualFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the uninterrupted run's %d", path, len(got), len(want))
	}
}

// A run stopped part way and run again reuses what was trained and writes
// the bytes of an uninterrupted run; a damaged record is retrained; the
// work folder is gone afterwards.
func TestResumeMatchesUninterruptedRun(t *testing.T) {
	in := tinyModel(t)
	for _, c := range resumeCases() {
		t.Run(c.name, func(t *testing.T) {
			want := reference(t, c, in)
			dir := t.TempDir()
			out := filepath.Join(dir, "m.pllm")
			o := c.opts(in, out)
			o.WorkDir = out + ".work"
			compressCrashing(t, o, 5)
			recs, _ := filepath.Glob(filepath.Join(o.WorkDir, "group-*.rec"))
			if len(recs) != 4 {
				t.Fatalf("after a stop at group 5: %d records, want 4", len(recs))
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("the stopped run left an output")
			}
			// Damage one record: it must be retrained, not used.
			damaged := filepath.Join(o.WorkDir, recordName(1))
			b, err := os.ReadFile(damaged)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(damaged, b, 0o644); err != nil {
				t.Fatal(err)
			}
			var notices []string
			trainedNow := 0
			o.Events = func(e Event) {
				switch e.Kind {
				case "notice":
					notices = append(notices, e.Stage)
				case "group":
					trainedNow++
				}
			}
			if _, err := Compress(o); err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, out, want)
			all := strings.Join(notices, "\n")
			if !strings.Contains(all, "reusing 3 of") || !strings.Contains(all, "CRC-32C mismatch") {
				t.Errorf("notices do not report 3 groups reused and the damaged record:\n%s", all)
			}
			if planned := countGroups(t, want); trainedNow != planned-3 {
				t.Errorf("trained %d groups on resuming, want %d of %d", trainedNow, planned-3, planned)
			}
			if _, err := os.Stat(o.WorkDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the work folder is still there after the output was written: %v", err)
			}
		})
	}
}

func countGroups(t *testing.T, file []byte) int {
	t.Helper()
	p := filepath.Join(t.TempDir(), "count.pllm")
	if err := os.WriteFile(p, file, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	return len(rep.Groups)
}

// Shards trained separately and merged give the bytes of one process.
func TestShardsMergeToTheSingleRun(t *testing.T) {
	in := tinyModel(t)
	for _, c := range resumeCases() {
		t.Run(c.name, func(t *testing.T) {
			want := reference(t, c, in)
			dir := t.TempDir()
			out := filepath.Join(dir, "m.pllm")
			const n = 3
			var parts []string
			seen := 0
			for i := n - 1; i >= 0; i-- { // any order
				o := c.opts(in, PartPath(out, Shard{i, n}))
				o.Shard = Shard{i, n}
				rep, err := CompressShard(o)
				if err != nil {
					t.Fatal(err)
				}
				seen += len(rep.Groups)
				parts = append(parts, rep.File)
			}
			if want := countGroups(t, want); seen != want {
				t.Fatalf("the shards trained %d groups, the job has %d", seen, want)
			}
			if _, err := Merge(MergeOptions{Parts: parts, Out: out, Kernels: c.opts(in, "").Kernels}); err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, out, want)

			// A missing part names the groups it held; a part given twice, both files.
			_, err := Merge(MergeOptions{Parts: parts[1:], Out: out + "2.pllm", Kernels: c.opts(in, "").Kernels})
			if err == nil || !strings.Contains(err.Error(), "no part holds group") {
				t.Errorf("merging without %s: %v", parts[0], err)
			}
			_, err = Merge(MergeOptions{Parts: append(parts, parts[0]), Out: out + "3.pllm", Kernels: c.opts(in, "").Kernels})
			if err == nil || !strings.Contains(err.Error(), "is in both") {
				t.Errorf("merging %s twice: %v", parts[0], err)
			}
			// A damaged part is refused, naming it, and nothing is written.
			b, err := os.ReadFile(parts[0])
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-8] ^= 0x10
			if err := os.WriteFile(parts[0], b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Merge(MergeOptions{Parts: parts, Out: out + "4.pllm", Kernels: c.opts(in, "").Kernels})
			if err == nil || !strings.Contains(err.Error(), parts[0]) || !strings.Contains(err.Error(), "CRC-32C") {
				t.Errorf("merging a damaged part: %v", err)
			}
			if _, err := os.Stat(out + "4.pllm"); err == nil {
				t.Error("a merge of a damaged part wrote its output")
			}
		})
	}
}

// A work folder or part of another job is refused with what differs.
func TestMismatchNamesWhatDiffers(t *testing.T) {
	in := tinyModel(t)
	c := resumeCases()[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "m.pllm")
	o := c.opts(in, out)
	o.WorkDir = out + ".work"
	compressCrashing(t, o, 3)

	other := o
	other.Method.Epochs++
	_, err := Compress(other)
	if err == nil || !strings.Contains(err.Error(), "training.Epochs was 3, now 4") {
		t.Fatalf("another epoch count on the same work folder: %v", err)
	}
	other.Fresh = true
	if _, err := Compress(other); err != nil {
		t.Fatalf("--fresh: %v", err)
	}

	// A part made from another input.
	in2 := tinyModel(t)
	b, err := os.ReadFile(filepath.Join(in2, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.WriteFile(filepath.Join(in2, "model.safetensors"), b, 0o644)
	po := c.opts(in, PartPath(out, Shard{0, 1}))
	po.Shard = Shard{0, 1}
	if _, err := CompressShard(po); err != nil {
		t.Fatal(err)
	}
	_, err = Merge(MergeOptions{Parts: []string{po.Out}, Out: filepath.Join(dir, "x.pllm"), In: in2, Kernels: po.Kernels})
	if err == nil || !strings.Contains(err.Error(), "the input changed") {
		t.Fatalf("merging against a changed input: %v", err)
	}
}

// Shards are balanced by work (weights x epochs x K), not by count.
func TestAssignShardsBalancesWork(t *testing.T) {
	group := func(name string, rows, k int) plannedGroup {
		return plannedGroup{
			Group:  plan.Group{Name: name, Members: []plan.Matrix{{Name: name, Rows: rows, Cols: 8}}},
			method: MethodPocketLLM, set: pocketllm.Settings{Dim: 4, K: k},
		}
	}
	// One big group and six small ones of a sixth of its work each.
	planned := []plannedGroup{group("big", 600, 16)}
	for i := range 6 {
		planned = append(planned, group(fmt.Sprint("small", i), 100, 16))
	}
	o := CompressOptions{Method: pocketllm.Settings{Epochs: 2}}
	got := assignShards(planned, o, 2)
	if len(got[0]) != 1 || got[0][0] != 0 || len(got[1]) != 6 {
		t.Fatalf("shards %v: want the big group alone and the six small ones together", got)
	}
	again := assignShards(planned, o, 2)
	if g, a := fmt.Sprint(got), fmt.Sprint(again); g != a {
		t.Fatalf("assignment not deterministic: %s, then %s", g, a)
	}
}

// The settings diff names nested settings by their path.
func TestSettingsDiff(t *testing.T) {
	a, _ := json.Marshal(jobSettings{Bits: 3, Tuning: Tuning{E2ESteps: 5}})
	b, _ := json.Marshal(jobSettings{Bits: 3.5, Tuning: Tuning{E2ESteps: 5}})
	if got := settingsDiff(a, b); got != "settings changed: bits was 3, now 3.5" {
		t.Fatalf("diff: %q", got)
	}
}

// A second live run of the same job is refused at once, naming the work
// folder, rather than training the same groups again; once the first run
// is gone its folder is resumed as usual, and the lock file goes with it.
func TestLiveWorkFolderIsRefused(t *testing.T) {
	in := tinyModel(t)
	c := resumeCases()[0]
	want := reference(t, c, in)
	out := filepath.Join(t.TempDir(), "m.pllm")
	o := c.opts(in, out)
	o.WorkDir = out + ".work"
	compressCrashing(t, o, 3)
	// Another process holding the lock: an open of the lock file with its
	// own flock, as a live run has.
	live, err := os.OpenFile(filepath.Join(o.WorkDir, "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the stopped run left no lock file: %v", err)
	}
	if err := atomicfile.TryLock(live); err != nil {
		t.Fatal(err)
	}
	_, err = Compress(o)
	if err == nil || !strings.Contains(err.Error(), "work folder "+o.WorkDir+" is in use by another live run") {
		t.Fatalf("a second live run: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the refused run wrote an output")
	}
	o.Fresh = true
	if _, err := Compress(o); err == nil || !strings.Contains(err.Error(), "in use by another live run") {
		t.Fatalf("--fresh under a live run: %v", err)
	}
	live.Close()
	o.Fresh = false
	if _, err := Compress(o); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, out, want)
	if _, err := os.Stat(o.WorkDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the work folder is still there after the output was written: %v", err)
	}
}
