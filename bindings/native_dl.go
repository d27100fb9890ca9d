//go:build (darwin || freebsd || linux || netbsd) && !android

package bindings

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// openLibrary loads one native library and binds every function of the C
// ABI. Each symbol is resolved with Dlsym first and only then registered,
// because purego.RegisterLibFunc panics on a missing symbol and a panic
// cannot fall back to the next backend. A library is never unloaded: a CUDA
// runtime that has been initialised does not survive dlclose reliably, and
// the mapping costs nothing once refused.
func openLibrary(path string) (*nativeLib, error) {
	if filepath.IsAbs(path) || strings.ContainsRune(path, filepath.Separator) {
		if _, err := os.Stat(path); err != nil {
			return nil, errNotFound
		}
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		// glibc's wording when the bare name is nowhere on the loader's
		// path; a missing dependency names the dependency instead.
		if strings.HasPrefix(err.Error(), path+": cannot open shared object file") {
			return nil, errNotFound
		}
		return nil, fmt.Errorf("dlopen: %v", err)
	}
	lib := &nativeLib{path: path}
	// The version comes first: a library of another ABI may lack symbols
	// this build binds (or have them with other signatures), and "ABI 1,
	// this build needs 2" says what is wrong where a missing symbol would not.
	addr, err := purego.Dlsym(h, abiSymbol)
	if err != nil || addr == 0 {
		return nil, fmt.Errorf("missing symbol %s: not a pocketllm library", abiSymbol)
	}
	purego.RegisterFunc(&lib.abiVersion, addr)
	if err := checkABI(lib.abiVersion()); err != nil {
		return nil, err
	}
	var missing []string
	for _, s := range lib.symbols() {
		if s.name == abiSymbol {
			continue
		}
		addr, err := purego.Dlsym(h, s.name)
		if err != nil || addr == 0 {
			missing = append(missing, s.name)
			continue
		}
		purego.RegisterFunc(s.fn, addr)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing symbol %s", strings.Join(missing, ", "))
	}
	return lib, nil
}
