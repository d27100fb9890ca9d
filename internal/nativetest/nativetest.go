// Package nativetest points tests at the native libraries built in this
// checkout. The library search of package bindings never looks at the
// working directory (an installed binary must not load code from whatever
// checkout it runs in), so a test package that wants the native backends
// calls UseCheckoutBuild from its TestMain.
package nativetest

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvLibDir is bindings.EnvLibDir, repeated because package bindings' own
// tests use this package and an import would be a cycle.
const EnvLibDir = "POCKETLLM_LIB_DIR"

// UseCheckoutBuild sets POCKETLLM_LIB_DIR to build/lib under the module
// root (the first directory above the working directory that holds go.mod;
// go test runs in the package directory), unless it is already set, as
// `make test` does. It returns the directory in use, "" when there is none.
func UseCheckoutBuild() string {
	if dir := os.Getenv(EnvLibDir); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			lib := filepath.Join(dir, "build", "lib")
			os.Setenv(EnvLibDir, lib)
			return lib
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Main is a TestMain for packages whose tests want the native backends:
// UseCheckoutBuild, then the tests.
func Main(m *testing.M) {
	UseCheckoutBuild()
	os.Exit(m.Run())
}
