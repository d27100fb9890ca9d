package bindings

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestLibraryCandidates(t *testing.T) {
	const f = "libpocketllm_cpu.so"
	sep := string(filepath.ListSeparator)
	j := filepath.Join
	for _, tc := range []struct {
		name string
		in   SearchDirs
		want []string
	}{
		{"nothing known", SearchDirs{}, []string{f}},
		{"all inputs, in order",
			SearchDirs{Env: "/opt/pl", ExeDir: "/usr/local/bin"},
			[]string{j("/opt/pl", f), j("/usr/local/bin", f), j("/usr/local/lib", f), f}},
		{"env list, empty entries skipped",
			SearchDirs{Env: sep + "/a" + sep + sep + "/b" + sep},
			[]string{j("/a", f), j("/b", f), f}},
		{"relative env dir kept relative",
			SearchDirs{Env: "lib"},
			[]string{j("lib", f), f}},
		{"executable in the build tree: ../lib is the build folder",
			SearchDirs{ExeDir: "/repo/build/bin"},
			[]string{j("/repo/build/bin", f), j("/repo/build/lib", f), f}},
		{"env dir equal to ../lib of the executable is not repeated",
			SearchDirs{Env: "/repo/build/lib", ExeDir: "/repo/build/bin"},
			[]string{j("/repo/build/lib", f), j("/repo/build/bin", f), f}},
		{"executable only (an installed binary): nothing from the working directory",
			SearchDirs{ExeDir: "/usr/bin"},
			[]string{j("/usr/bin", f), j("/usr/lib", f), f}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LibraryCandidates(f, tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("LibraryCandidates(%+v)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLibraryFile(t *testing.T) {
	got := LibraryFile("cuda")
	want := map[string]string{"darwin": "libpocketllm_cuda.dylib", "windows": "pocketllm_cuda.dll"}[runtime.GOOS]
	if want == "" {
		want = "libpocketllm_cuda.so"
	}
	if got != want {
		t.Fatalf("LibraryFile(cuda) = %q on %s, want %q", got, runtime.GOOS, want)
	}
}

// The working directory takes no part in the search: a process started
// inside a checkout of this module (with a built build/lib) gets the same
// candidates as anywhere else.
func TestCurrentSearchDirsIgnoresWorkingDirectory(t *testing.T) {
	t.Setenv(EnvLibDir, "/from/env")
	checkout := t.TempDir()
	if err := os.WriteFile(filepath.Join(checkout, "go.mod"), []byte("module pocketllm-native\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(checkout, "build", "lib")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	before := CurrentSearchDirs()
	t.Chdir(checkout)
	d := CurrentSearchDirs()
	if d != before || d.Env != "/from/env" || d.ExeDir == "" {
		t.Errorf("CurrentSearchDirs in a checkout = %+v, elsewhere %+v", d, before)
	}
	for _, p := range LibraryCandidates(LibraryFile("cpu"), d) {
		if strings.HasPrefix(p, checkout) {
			t.Errorf("candidate %s lies in the working directory's checkout", p)
		}
	}
}
