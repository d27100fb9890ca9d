package cli

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"pocketllm-native/internal/atomicfile"
	"pocketllm-native/internal/demomodel"
	"pocketllm-native/internal/testfs"
)

// exitCode is the process's exit status, -1 when a signal killed it.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Each cancelling signal removes the unfinished folder and file and exits
// with 128 plus the signal number and one line on stderr.
func TestSignalsRemoveUnfinishedOutputs(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX signals")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envHold+"="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			if line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("holder: %q", line)
			}
			if len(testfs.Names(t, dir)) == 0 {
				t.Fatal("the holder has no temporary folder to remove")
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			if code := exitCode(err); code != 128+int(sig) {
				t.Errorf("exit code %d (%v), want %d", code, err, 128+int(sig))
			}
			if msg := stderr.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "interrupted") {
				t.Errorf("stderr %q, want one line saying it was interrupted", msg)
			}
			if got := testfs.Names(t, dir); len(got) != 0 {
				t.Errorf("left behind %q", got)
			}
		})
	}
}

// startCompress runs the real command on the demo model, long enough to be
// interrupted, and returns once its first group is training.
func startCompress(t *testing.T) (cmd *exec.Cmd, dir, out string, stderr *bytes.Buffer) {
	t.Helper()
	dir = t.TempDir()
	model := filepath.Join(dir, "model")
	if err := os.Mkdir(model, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := demomodel.Write(model, demomodel.Config, 1); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "s.pllm")
	cmd = exec.Command(os.Args[0], "compress", "--in", model, "--out", out, "--bits", "4", "--share", "kind",
		"--epochs", "100000", "--backend", "go", "--progress-json")
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("compress ended before training: %v", err)
		}
		if strings.Contains(line, `"epoch"`) {
			break
		}
	}
	stderr = &bytes.Buffer{}
	go func() { stderr.ReadFrom(r) }()
	return cmd, dir, out, stderr
}

func TestInterruptedCompressLeavesNothing(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX signals")
	}
	cmd, dir, _, _ := startCompress(t)
	cmd.Process.Signal(syscall.SIGINT)
	if code := exitCode(cmd.Wait()); code != 130 {
		t.Errorf("exit code %d after SIGINT, want 130", code)
	}
	if got := testfs.Names(t, dir); !slices.Equal(got, []string{"model"}) {
		t.Errorf("left behind %q", got)
	}
}

// SIGKILL runs no handler: what survives must be nothing (an unnamed file)
// or a hidden name that the next run for the same output removes.
func TestKilledCompressLeavesNothingAfterTheNextRun(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	cmd, dir, out, _ := startCompress(t)
	cmd.Process.Kill()
	cmd.Wait()
	for _, n := range testfs.Names(t, dir) {
		if n != "model" && !strings.HasPrefix(n, ".s.pllm.pocketllm-tmp-") {
			t.Errorf("SIGKILL left %s, which no run recognises", n)
		}
	}
	atomicfile.RemoveLeftovers(out) // what the next run does first
	if got := testfs.Names(t, dir); !slices.Equal(got, []string{"model"}) {
		t.Errorf("after the next run's sweep: %q", got)
	}
}
