//go:build unix

package regularfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		if b, err := ReadFile(p); err != nil || string(b) != "data" {
			t.Errorf("ReadFile(%s) = %q, %v", p, b, err)
		}
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{dir: "a directory", fifo: "a named pipe", "/dev/null": "a character device"}
	for p, want := range cases {
		// A FIFO without a writer would block a plain open forever.
		_, err := ReadFile(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": not a regular file") || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s): %v, want a refusal naming %s", p, err, want)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
