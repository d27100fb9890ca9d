package nativetest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUseCheckoutBuild(t *testing.T) {
	t.Setenv(EnvLibDir, "/already/set")
	if got := UseCheckoutBuild(); got != "/already/set" || os.Getenv(EnvLibDir) != "/already/set" {
		t.Errorf("an explicit %s was replaced by %q", EnvLibDir, got)
	}
	t.Setenv(EnvLibDir, "")
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module pocketllm-native\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)
	want := filepath.Join(root, "build", "lib")
	if got := UseCheckoutBuild(); got != want || os.Getenv(EnvLibDir) != want {
		t.Errorf("UseCheckoutBuild() = %q, env %q, want %q", got, os.Getenv(EnvLibDir), want)
	}
}
