package bindings

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// EnvLibDir names the environment variable that points at the directory (or
// a list of directories, separated as in PATH) holding the native libraries.
// It is searched first.
const EnvLibDir = "POCKETLLM_LIB_DIR"

// moduleName is the module path whose checkout is searched for build/lib.
const moduleName = "pocketllm-native"

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
type SearchDirs struct {
	Env        string // value of POCKETLLM_LIB_DIR: one directory or a PATH-style list; "" when unset
	ExeDir     string // directory of the running executable; "" when unknown
	ModuleRoot string // root of the pocketllm-native checkout the process runs in (the directory of go.mod); "" when none
}

// LibraryCandidates lists, best first and without duplicates, the paths at
// which to look for a library file:
//
//  1. each directory of Env;
//  2. next to the executable (an unpacked release);
//  3. ../lib relative to the executable (an installed prefix: bin/ and lib/);
//  4. build/lib under the module root (a checkout built with CMake, and
//     every `go test` inside it);
//  5. the bare file name, so the system loader applies its own search
//     (LD_LIBRARY_PATH, rpath, ld.so.cache).
//
// Relative directories are kept relative; empty ones are skipped.
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
	if d.ModuleRoot != "" {
		add(filepath.Join(d.ModuleRoot, "build", "lib", file))
	}
	add(file)
	return out
}

// CurrentSearchDirs reads the search inputs from this process: the
// environment, the executable's directory, and the module root found by
// walking up from the working directory (then from the executable's
// directory) to a go.mod declaring module pocketllm-native.
func CurrentSearchDirs() SearchDirs {
	d := SearchDirs{Env: os.Getenv(EnvLibDir)}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		d.ExeDir = filepath.Dir(exe)
	}
	if wd, err := os.Getwd(); err == nil {
		d.ModuleRoot = findModuleRoot(wd)
	}
	if d.ModuleRoot == "" && d.ExeDir != "" {
		d.ModuleRoot = findModuleRoot(d.ExeDir)
	}
	return d
}

// findModuleRoot walks up from dir to the first directory whose go.mod
// declares this module; "" if there is none.
func findModuleRoot(dir string) string {
	for {
		if moduleOf(filepath.Join(dir, "go.mod")) == moduleName {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// moduleOf returns the module path declared in a go.mod file, or "".
func moduleOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line, _, _ := strings.Cut(s.Text(), "//")
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
