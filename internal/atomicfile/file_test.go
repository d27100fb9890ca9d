package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"pocketllm-native/internal/testfs"
)

// Both ways of making a file: unnamed (where the system has it) and hidden.
func eachKind(t *testing.T, f func(t *testing.T)) {
	t.Run("default", f)
	t.Run("hidden_name", func(t *testing.T) {
		unnamedAllowed = false
		t.Cleanup(func() { unnamedAllowed = true })
		f(t)
	})
}

func hasUnnamed(t *testing.T, dir string) bool {
	f, ok := createUnnamed(dir)
	if ok {
		f.Close()
	}
	return ok
}

func TestFileCommitAbortAndNoClobber(t *testing.T) {
	eachKind(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.pllm")
		a, err := Create(path, false)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Create(path, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		if unnamedAllowed && hasUnnamed(t, dir) {
			if got := testfs.Names(t, dir); len(got) != 0 {
				t.Errorf("unnamed files in progress, but the folder holds %q", got)
			}
		}
		b.Write([]byte("second"))
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		// b started before a finished: its publish must not replace a's file.
		if err := b.Commit(); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second writer without overwrite: %v, want fs.ErrExist", err)
		}
		if data, _ := os.ReadFile(path); string(data) != "first" {
			t.Errorf("file holds %q, want the first writer's", data)
		}
		if _, err := Create(path, false); !errors.Is(err, fs.ErrExist) {
			t.Errorf("Create over an existing file: %v, want fs.ErrExist", err)
		}
		c, err := Create(path, true)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("third"))
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); string(data) != "third" {
			t.Errorf("overwrite left %q", data)
		}
		d, err := Create(filepath.Join(dir, "aborted"), false)
		if err != nil {
			t.Fatal(err)
		}
		d.Write([]byte("x"))
		d.Abort()
		if got := testfs.Names(t, dir); !slices.Equal(got, []string{"out.pllm"}) {
			t.Errorf("folder holds %q, want only out.pllm", got)
		}
		if len(live.names) != 0 {
			t.Errorf("registry still lists %v", live.names)
		}
	})
}

func TestDirReplace(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "hf")
	for i, force := range []bool{false, true} {
		d, err := CreateDir(out, force)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.Path(), "model"), []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.Commit(); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(out, "model")); string(data) != string(rune('a'+i)) {
			t.Errorf("round %d: model holds %q", i, data)
		}
	}
	if _, err := CreateDir(out, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateDir over an existing folder: %v, want fs.ErrExist", err)
	}
	d, err := CreateDir(out, true)
	if err != nil {
		t.Fatal(err)
	}
	d.Abort()
	if got := testfs.Names(t, dir); !slices.Equal(got, []string{"hf"}) {
		t.Errorf("folder holds %q, want only hf", got)
	}
}

// What a run killed between the two renames of a folder replacement
// leaves: the old folder aside and the new one under its hidden name. The
// next run puts the old one back and removes the unfinished one; a folder
// aside whose owner is alive (holds the lock) is left alone.
func TestLeftoversOfAKilledReplacement(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "hf")
	old := filepath.Join(dir, ".hf"+oldTag+"0123456789ab")
	unfinished := filepath.Join(dir, ".hf"+tmpTag+"ba9876543210")
	for _, p := range []string{old, unfinished} {
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "model"), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Another output's leftovers and look-alikes are not ours to touch.
	other := filepath.Join(dir, ".hf2"+tmpTag+"000000000000")
	mustWrite(t, other)
	mustWrite(t, filepath.Join(dir, ".hf.tmp-123"))

	holder, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock(holder); err != nil {
		t.Fatal(err)
	}
	RemoveLeftovers(out)
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("a folder aside held by a live run was touched: %v", err)
	}
	holder.Close()

	RemoveLeftovers(out)
	if data, err := os.ReadFile(filepath.Join(out, "model")); err != nil || string(data) != old {
		t.Fatalf("the old folder was not put back: %q, %v", data, err)
	}
	want := []string{".hf.tmp-123", filepath.Base(other), "hf"}
	if got := testfs.Names(t, dir); !slices.Equal(got, want) {
		t.Errorf("after the sweep the folder holds %q, want %q", got, want)
	}

	// With the output present, a folder aside is removed instead.
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	RemoveLeftovers(out)
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a folder aside beside an existing output stays: %v", err)
	}
}

func mustWrite(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// envChild makes the test binary act as a writer that another test kills.
const envChild = "ATOMICFILE_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChild); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// child starts one unnamed-if-possible file, one hidden-name file and one
// folder under dir, reports "ready" and waits to be killed; with
// ATOMICFILE_TEST_REMOVE it removes its temporaries itself and exits.
func child(dir string) int {
	a, err := Create(filepath.Join(dir, "a.pllm"), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	a.Write([]byte("partial"))
	unnamedAllowed = false
	b, err := Create(filepath.Join(dir, "b.pllm"), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	b.Write([]byte("partial"))
	d, err := CreateDir(filepath.Join(dir, "hf"), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	os.WriteFile(filepath.Join(d.Path(), "model.safetensors"), []byte("partial"), 0o644)
	if os.Getenv("ATOMICFILE_TEST_REMOVE") != "" {
		fmt.Println(strings.Join(RemoveTemporaries(), " "))
		return 0
	}
	fmt.Println("ready")
	// Reachable while waiting: an unreachable os.File is closed by the
	// collector, and its lock goes with it.
	held = []any{a, b, d}
	for { // not select {}: with nothing else to run, that is a fatal deadlock
		time.Sleep(time.Hour)
	}
}

var held []any

func startChild(t *testing.T, dir string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, envChild+"="+dir)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out)
}

// hiddenCount is how many named temporaries the child makes in dir: the
// folder and the file forced to a hidden name, and the first file too where
// the system has no unnamed files.
func hiddenCount(t *testing.T, dir string) int {
	if hasUnnamed(t, dir) {
		return 2
	}
	return 3
}

// SIGKILL: nothing can run, so an unnamed file leaves nothing and what has
// a hidden name stays, locked while its owner lives, until the next run
// for the same output removes it.
func TestKilledWriterLeavesNothingForLong(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	cmd, out := startChild(t, dir)
	line, err := out.ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	// While the writer lives, the next run leaves its files alone.
	for _, p := range []string{"a.pllm", "b.pllm", "hf"} {
		RemoveLeftovers(filepath.Join(dir, p))
	}
	during := testfs.Names(t, dir)
	if want := hiddenCount(t, dir); len(during) != want {
		t.Errorf("a live writer's temporaries: %q, want %d", during, want)
	}
	cmd.Process.Kill()
	cmd.Wait()
	after := testfs.Names(t, dir)
	if !slices.Equal(after, during) {
		t.Errorf("after SIGKILL the folder holds %q, want %q", after, during)
	}
	for _, n := range after {
		if strings.Contains(n, "a.pllm") && hasUnnamed(t, dir) {
			t.Errorf("the unnamed file left %s", n)
		}
	}
	for _, p := range []string{"a.pllm", "b.pllm", "hf"} {
		RemoveLeftovers(filepath.Join(dir, p))
	}
	if got := testfs.Names(t, dir); len(got) != 0 {
		t.Errorf("the next run left %q", got)
	}
}

func TestRemoveTemporaries(t *testing.T) {
	dir := t.TempDir()
	cmd, out := startChild(t, dir, "ATOMICFILE_TEST_REMOVE=1")
	line, _ := out.ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v (%q)", err, line)
	}
	if n, want := len(strings.Fields(line)), hiddenCount(t, dir); n != want {
		t.Errorf("removed %q, want %d names", line, want)
	}
	if got := testfs.Names(t, dir); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}
