package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"pocketllm-native/compress/pipeline"
	"pocketllm-native/internal/demomodel"
	"pocketllm-native/internal/faultpoint"
	"pocketllm-native/internal/testfs"
)

// calibratedModel writes the built-in two-layer model with a tokenizer, so
// that the default (tuned) settings calibrate and tune.
func calibratedModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	if err := demomodel.Write(dir, demomodel.Calibrated, 11); err != nil {
		t.Fatal(err)
	}
	if err := demomodel.WriteByteTokenizer(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// jobCase is a small job: one group per matrix (14 groups), a short
// schedule; tuned cases keep the default stages with few steps.
type jobCase struct {
	name string
	args []string
}

var jobCases = []jobCase{
	{"untuned-pocketllm", []string{"--no-calibration"}},
	{"tuned-pocketllm", []string{"--calibration-samples", "6", "--tune-steps", "3", "--e2e-steps", "2", "--e2e-batch", "2"}},
	{"tuned-vq", []string{"--method", "vq", "--calibration-samples", "6", "--tune-steps", "3", "--e2e-steps", "2", "--e2e-batch", "2"}},
}

const jobGroups = 14

func jobArgs(c jobCase, model, out string, extra ...string) []string {
	args := []string{"compress", "--in", model, "--out", out, "--dim", "2", "--codebook", "16", "--share", "none",
		"--epochs", "3", "--decay-every", "2", "--backend", "go", "--progress-json"}
	return append(append(args, c.args...), extra...)
}

// runChild runs the command in a child process (so that it can be killed
// for real) with extra environment.
func runChild(t *testing.T, env []string, args ...string) (code int, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), envRunMain+"=1"), env...)
	var e bytes.Buffer
	cmd.Stderr = &e
	err := cmd.Run()
	return exitCode(err), e.String()
}

func referenceFile(t *testing.T, c jobCase, model string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.pllm")
	if code, _, stderr := run(append(jobArgs(c, model, out), "-q")...); code != 0 {
		t.Fatalf("reference run: %s", stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBytes(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: not the bytes of the uninterrupted run (%d vs %d bytes)", path, len(got), len(want))
	}
}

// reusedCount is what the run said it reused (0 when it said nothing).
func reusedCount(stderr string) int {
	for _, line := range strings.Split(stderr, "\n") {
		if i := strings.Index(line, "reusing "); i >= 0 {
			var n, of int
			fmt.Sscanf(line[i:], "reusing %d of %d", &n, &of)
			return n
		}
	}
	return 0
}

// A compress killed (SIGKILL) before, during and after group records and
// while writing the file, then run again each time with the same
// arguments, ends with the bytes of an uninterrupted run; every rerun
// reuses at least what the killed one finished.
func TestKilledCompressResumesToTheSameBytes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	model := calibratedModel(t)
	for _, c := range jobCases {
		t.Run(c.name, func(t *testing.T) {
			want := referenceFile(t, c, model)
			dir := t.TempDir()
			out := filepath.Join(dir, "m.pllm")
			work := out + ".work"
			records := func() int { n, _ := filepath.Glob(filepath.Join(work, "group-*.rec")); return len(n) }
			had := 0
			for _, point := range []string{"record-before:1", "record-during:3", "record-after:2", "record-before:5", "container-group:3"} {
				code, stderr := runChild(t, []string{faultpoint.Env + "=" + point}, jobArgs(c, model, out)...)
				if code != -1 {
					t.Fatalf("%s: exit code %d, want killed; stderr:\n%s", point, code, stderr)
				}
				if got := reusedCount(stderr); got != had {
					t.Errorf("%s: reused %d groups, the work folder held %d", point, got, had)
				}
				if _, err := os.Stat(out); err == nil {
					t.Fatalf("%s: a killed run left %s", point, out)
				}
				now := records()
				if now < had {
					t.Fatalf("%s: %d records after the kill, %d before", point, now, had)
				}
				had = now
			}
			// Killed once the file is in place, before the work folder goes:
			// the file is complete, and a rerun names the file.
			code, stderr := runChild(t, []string{faultpoint.Env + "=container-written"}, jobArgs(c, model, out)...)
			if code != -1 {
				t.Fatalf("container-written: exit code %d; stderr:\n%s", code, stderr)
			}
			if got := reusedCount(stderr); got != had || had == 0 {
				t.Errorf("container-written: reused %d groups, the work folder held %d", got, had)
			}
			sameBytes(t, out, want)
			code, stderr = runChild(t, nil, jobArgs(c, model, out)...)
			if code != 1 || !strings.Contains(stderr, "already exists; pass --force") {
				t.Errorf("rerun over the finished file: exit %d, stderr %q", code, stderr)
			}
			code, stderr = runChild(t, nil, jobArgs(c, model, out, "--force")...)
			if code != 0 {
				t.Fatalf("final run: %s", stderr)
			}
			if got := reusedCount(stderr); got != jobGroups {
				t.Errorf("final run reused %d groups, want %d", got, jobGroups)
			}
			sameBytes(t, out, want)
			if names := testfs.Names(t, dir); len(names) != 1 || names[0] != "m.pllm" {
				t.Errorf("left beside the output: %q", names)
			}
		})
	}
}

// Shards (one of them killed and rerun, two told their index by a
// scheduler's environment) and merge give the single run's bytes; merge
// refuses an incomplete set, naming the missing groups.
func TestShardsKilledAndMergedGiveTheSameBytes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	model := calibratedModel(t)
	for _, c := range jobCases {
		t.Run(c.name, func(t *testing.T) {
			want := referenceFile(t, c, model)
			dir := t.TempDir()
			out := filepath.Join(dir, "m.pllm")
			const n = 3
			envs := [n][]string{
				{"SLURM_ARRAY_TASK_ID=5", "SLURM_ARRAY_TASK_MIN=5", "SLURM_ARRAY_TASK_COUNT=3"},
				{"JOB_COMPLETION_INDEX=1"},
				nil,
			}
			shardArg := [n][]string{{"--shard", "auto"}, {"--shard", "auto", "--shards", "3"}, {"--shard", "2/3"}}
			for i := range n {
				if i == 2 {
					// Killed twice: while training, then while writing the part.
					for _, point := range []string{"record-after:1", "part-record:1"} {
						code, stderr := runChild(t, []string{faultpoint.Env + "=" + point}, jobArgs(c, model, out, shardArg[i]...)...)
						if code != -1 {
							t.Fatalf("shard %d at %s: exit %d; stderr:\n%s", i, point, code, stderr)
						}
					}
				}
				code, stderr := runChild(t, envs[i], jobArgs(c, model, out, shardArg[i]...)...)
				if code != 0 {
					t.Fatalf("shard %d: exit %d: %s", i, code, stderr)
				}
			}
			var parts []string
			for i := range n {
				parts = append(parts, pipeline.PartPath(out, pipeline.Shard{Index: i, Count: n}))
			}
			code, _, stderr := run("merge", "--out", filepath.Join(dir, "short.pllm"), "--backend", "go", parts[0], parts[2])
			if code != 1 || !strings.Contains(stderr, "no part holds group") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("merge without part 1: exit %d, stderr %q", code, stderr)
			}
			// Parts first, then flags, as merge is naturally written.
			if code, _, stderr := run("merge", parts[2], parts[0], parts[1], "--out", out, "--backend", "go", "-q"); code != 0 {
				t.Fatalf("merge: %s", stderr)
			}
			sameBytes(t, out, want)
			for _, name := range testfs.Names(t, dir) {
				if strings.HasSuffix(name, ".work") || strings.HasPrefix(name, ".") {
					t.Errorf("left behind: %s", name)
				}
			}
		})
	}
}

func TestShardFromTheScheduler(t *testing.T) {
	env := func(vars ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for _, v := range vars {
				if name, val, _ := strings.Cut(v, "="); name == k {
					return val, true
				}
			}
			return "", false
		}
	}
	cases := []struct {
		arg    string
		shards int
		env    []string
		want   string // "I/N" or an error fragment
	}{
		{"2/4", 0, nil, "2/4"},
		{"4/4", 0, nil, "want I/N"},
		{"1/3", 4, nil, "disagree"},
		{"auto", 0, []string{"SLURM_ARRAY_TASK_ID=3", "SLURM_ARRAY_TASK_COUNT=4"}, "3/4"},
		{"auto", 0, []string{"SLURM_ARRAY_TASK_ID=7", "SLURM_ARRAY_TASK_MIN=4", "SLURM_ARRAY_TASK_COUNT=4"}, "3/4"},
		{"auto", 0, []string{"SLURM_ARRAY_TASK_ID=9", "SLURM_ARRAY_TASK_COUNT=4"}, "contiguous"},
		{"auto", 0, []string{"SLURM_ARRAY_TASK_ID=1"}, "SLURM_ARRAY_TASK_COUNT is not"},
		{"auto", 5, []string{"JOB_COMPLETION_INDEX=4"}, "4/5"},
		{"auto", 0, []string{"JOB_COMPLETION_INDEX=4"}, "needs --shards"},
		{"auto", 0, nil, "neither SLURM_ARRAY_TASK_ID"},
	}
	for _, c := range cases {
		s, err := shardOf(c.arg, c.shards, env(c.env...))
		got := s.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("--shard %s --shards %d %v: %q, want %q", c.arg, c.shards, c.env, got, c.want)
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a new folder (root only).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 || runtime.GOOS != "linux" {
		t.Skip("a small tmpfs needs root on Linux")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func remountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
}

// pagesOf is what files take on a tmpfs: whole pages.
func pagesOf(t *testing.T, paths ...string) int64 {
	t.Helper()
	page := int64(os.Getpagesize())
	var n int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += (fi.Size() + page - 1) / page * page
	}
	return n
}

// A full disk, while group records are written or while the file is, is a
// one-line error that leaves no partial output; once there is space, the
// next run resumes from the records that were written and ends with the
// bytes of an uninterrupted run.
func TestFullDiskResumesOnceThereIsSpace(t *testing.T) {
	model := calibratedModel(t)
	c := jobCases[0]
	want := referenceFile(t, c, model)
	// How much the work folder takes: a run stopped after the file is in
	// place leaves every record.
	probe := filepath.Join(t.TempDir(), "probe.pllm")
	if code, stderr := runChild(t, []string{faultpoint.Env + "=container-written"}, jobArgs(c, model, probe)...); code != -1 {
		t.Fatalf("probe run: exit %d: %s", code, stderr)
	}
	recs, _ := filepath.Glob(filepath.Join(probe+".work", "*"))
	work := pagesOf(t, recs...)
	page := int64(os.Getpagesize())
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"while-records", work / 2 / page * page},
		{"while-writing-the-file", work + (int64(len(want))/2+page-1)/page*page},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t, tc.size)
			out := filepath.Join(dir, "m.pllm")
			code, _, stderr := run(jobArgs(c, model, out)...)
			var said []string // what is not progress (JSON lines)
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if !strings.HasPrefix(line, "{") {
					said = append(said, line)
				}
			}
			if code != 1 || len(said) != 1 || !strings.Contains(said[0], "no space left on device") {
				t.Fatalf("on a full disk: exit %d, said %q; want one line saying the disk is full", code, said)
			}
			names := testfs.Names(t, dir)
			if len(names) != 1 || names[0] != "m.pllm.work" {
				t.Fatalf("after the full disk: %q, want only the work folder", names)
			}
			kept, _ := filepath.Glob(filepath.Join(out+".work", "group-*.rec"))
			if len(kept) == 0 {
				t.Fatal("no group record survived the full disk")
			}
			remountTmpfs(t, dir, 4*(work+int64(len(want))))
			code, stderr = runChild(t, nil, jobArgs(c, model, out)...)
			if code != 0 {
				t.Fatalf("with space: %s", stderr)
			}
			if got := reusedCount(stderr); got != len(kept) {
				t.Errorf("reused %d groups, %d were kept", got, len(kept))
			}
			sameBytes(t, out, want)
		})
	}
}
