package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	if err := Write(path, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	if err := Write(path, []byte("two"), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing file without force: %v, want an error naming --force", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("refused write changed the file to %q", b)
	}
	if err := Write(path, []byte("two"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Errorf("forced write left %q, want %q", b, "two")
	}
	// A rename onto a directory fails after the data is written: the
	// temporary file must not stay behind.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, []byte("three"), true); err == nil || !strings.HasPrefix(err.Error(), sub+": ") {
		t.Errorf("rename onto a non-empty directory: %v, want an error naming %s", err, sub)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "out.txt" && e.Name() != "sub" {
			t.Errorf("left behind %s", e.Name())
		}
	}
}
