package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// A missing file must skip the caller, not fail it, so a checkout without
// ../shared still passes.
func TestMissingSkips(t *testing.T) {
	var sub *testing.T
	ok := t.Run("missing", func(t *testing.T) {
		sub = t
		Path(t, "no such folder", "no such file")
		t.Error("Path returned for a missing file")
	})
	if !ok || !sub.Skipped() {
		t.Fatalf("missing file: passed=%v skipped=%v, want a skip", ok, sub.Skipped())
	}
}

// The path is resolved from the module root, not the package directory.
func TestFromModuleRoot(t *testing.T) {
	p := Path(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s is not the module root: %v", root, err)
	}
	want := filepath.Join(root, "..", "shared")
	if p != want {
		t.Fatalf("Path() = %s, want %s", p, want)
	}
}
