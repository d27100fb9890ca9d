package bindings

import (
	"os"
	"path/filepath"
	"runtime"
)

// EnvLibDir names the environment variable that points at the directory (or
// a list of directories, separated as in PATH) holding the native libraries.
// It is searched first. `make` and the tests set it to the build folder of
// the checkout; nothing else ties a process to a checkout.
const EnvLibDir = "POCKETLLM_LIB_DIR"

// LibraryFile is the file name of a native backend's shared library on this
// operating system, for backend "cpu" or "cuda": libpocketllm_cpu.so on
// Linux, libpocketllm_cpu.dylib on macOS.
func LibraryFile(backend string) string {
	switch runtime.GOOS {
	case "darwin", "ios":
		return "libpocketllm_" + backend + ".dylib"
	case "windows":
		return "pocketllm_" + backend + ".dll"
	}
	return "libpocketllm_" + backend + ".so"
}

// SearchDirs is everything the library search depends on. It is gathered
// from the process by CurrentSearchDirs and turned into paths by
// LibraryCandidates, which is a pure function so that the order can be
// tested as a table.
//
// The working directory is deliberately not an input: a binary run inside
// somebody else's checkout (or any directory an attacker can write) must not
// load native code from there.
type SearchDirs struct {
	Env    string // value of POCKETLLM_LIB_DIR: one directory or a PATH-style list; "" when unset
	ExeDir string // directory of the running executable, symbolic links resolved; "" when unknown
}

// LibraryCandidates lists, best first and without duplicates, the paths at
// which to look for a library file:
//
//  1. each directory of Env;
//  2. next to the executable (an unpacked release);
//  3. ../lib relative to the executable (an installed prefix: bin/ and lib/);
//  4. the bare file name, so the system loader applies its own search
//     (LD_LIBRARY_PATH, rpath, ld.so.cache).
//
// Relative directories of Env are kept relative (the user chose them);
// empty ones are skipped.
func LibraryCandidates(file string, d SearchDirs) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, dir := range filepath.SplitList(d.Env) {
		if dir != "" {
			add(filepath.Join(dir, file))
		}
	}
	if d.ExeDir != "" {
		add(filepath.Join(d.ExeDir, file))
		add(filepath.Join(d.ExeDir, "..", "lib", file))
	}
	add(file)
	return out
}

// CurrentSearchDirs reads the search inputs from this process: the
// environment and the executable's directory.
func CurrentSearchDirs() SearchDirs {
	d := SearchDirs{Env: os.Getenv(EnvLibDir)}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		d.ExeDir = filepath.Dir(exe)
	}
	return d
}
