//go:build !((darwin || freebsd || linux || netbsd) && !android)

package bindings

import (
	"fmt"
	"runtime"
)

// openLibrary refuses: purego offers dlopen only on the Unix systems above,
// so the native backends are not available here and the pure-Go kernels run.
func openLibrary(path string) (*nativeLib, error) {
	return nil, fmt.Errorf("native libraries are not loaded on %s/%s", runtime.GOOS, runtime.GOARCH)
}
