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
	t.Setenv(EnvShared, "")
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

// POCKETLLM_SHARED replaces ../shared.
func TestEnvShared(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "models", "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvShared, dir)
	if p, want := Path(t, "models", "m"), filepath.Join(dir, "models", "m"); p != want {
		t.Fatalf("Path = %s, want %s", p, want)
	}
	var sub *testing.T
	t.Run("missing", func(t *testing.T) {
		sub = t
		Path(t, "models", "absent")
	})
	if !sub.Skipped() {
		t.Fatal("a path missing under POCKETLLM_SHARED did not skip")
	}
}
