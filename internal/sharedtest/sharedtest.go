// Package sharedtest finds, for tests, the real model and text that the
// project keeps in ../shared beside the repository root. They are never
// copied into the repository, so a checkout without them must still pass:
// every lookup skips the calling test, naming the missing path, instead of
// failing it.
package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvShared names a folder to use instead of ../shared: where a test
// binary runs on another machine (scripts/gpu-check carries a copy of the
// files it needs), there is no ../shared beside the checkout.
const EnvShared = "POCKETLLM_SHARED"

// Path returns ../shared/<rel...> seen from the module root (the first
// directory above the working directory that holds go.mod; go test runs in
// the package directory), or $POCKETLLM_SHARED/<rel...> when that is set. It
// skips t when there is no module root or the path does not exist.
func Path(t testing.TB, rel ...string) string {
	t.Helper()
	if root := os.Getenv(EnvShared); root != "" {
		p := filepath.Join(root, filepath.Join(rel...))
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not found (%s=%s): %v", p, EnvShared, root, err)
		}
		return p
	}
	sub := filepath.Join(rel...)
	p := filepath.Join(ModuleRoot(t), "..", "shared", sub)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not found (the shared models and data live in ../shared beside the repository): %v", p, err)
	}
	return p
}

// ModuleRoot returns the module root: the first directory above the
// working directory (go test runs in the package directory) that holds
// go.mod. It skips t when there is none.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no go.mod above the test directory; cannot locate the module root")
		}
		dir = parent
	}
}

// Stories260K returns the path of the stories260K llama2.c checkpoint.
func Stories260K(t testing.TB) string {
	t.Helper()
	return Path(t, "models", "stories260K", "stories260K.bin")
}

// Tokenizer returns the path of tok512.bin, the llama2.c tokenizer that
// goes with Stories260K.
func Tokenizer(t testing.TB) string {
	t.Helper()
	return Path(t, "models", "stories260K", "tok512.bin")
}

// ValidText returns the path of the TinyStories validation sample used
// for scoring.
func ValidText(t testing.TB) string {
	t.Helper()
	return Path(t, "data", "tinystories-valid-sample.txt")
}
