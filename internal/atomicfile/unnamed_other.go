//go:build !(linux && (386 || amd64 || arm || arm64 || loong64 || ppc64 || ppc64le || riscv64 || s390x))

package atomicfile

import (
	"errors"
	"os"
)

// createUnnamed is Linux only; elsewhere every output has a hidden name.
func createUnnamed(string) (*os.File, bool) { return nil, false }

func linkUnnamed(*os.File, string) error { return errors.New("unnamed files are Linux only") }
