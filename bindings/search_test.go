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
			SearchDirs{Env: "/opt/pl", ExeDir: "/usr/local/bin", ModuleRoot: "/src/pocketllm-native"},
			[]string{j("/opt/pl", f), j("/usr/local/bin", f), j("/usr/local/lib", f), j("/src/pocketllm-native/build/lib", f), f}},
		{"env list, empty entries skipped",
			SearchDirs{Env: sep + "/a" + sep + sep + "/b" + sep},
			[]string{j("/a", f), j("/b", f), f}},
		{"relative env dir kept relative",
			SearchDirs{Env: "lib"},
			[]string{j("lib", f), f}},
		{"executable in the build tree: ../lib is the build folder, listed once",
			SearchDirs{ExeDir: "/repo/build/bin", ModuleRoot: "/repo"},
			[]string{j("/repo/build/bin", f), j("/repo/build/lib", f), f}},
		{"env dir equal to the build folder is not repeated",
			SearchDirs{Env: "/repo/build/lib", ModuleRoot: "/repo"},
			[]string{j("/repo/build/lib", f), f}},
		{"module root only (go test in a checkout)",
			SearchDirs{ModuleRoot: "/repo"},
			[]string{j("/repo/build/lib", f), f}},
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

func TestFindModuleRoot(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "go.mod"), "// comment\nmodule \"pocketllm-native\" // the tool\n\ngo 1.26\n")
	// A nested module of another name must not stop the walk.
	write(filepath.Join(root, "a", "go.mod"), "module example.com/other\n")
	if got := findModuleRoot(deep); got != root {
		t.Errorf("findModuleRoot(%s) = %q, want %q", deep, got, root)
	}
	other := t.TempDir()
	write(filepath.Join(other, "go.mod"), "module pocketllm-native-fork\n")
	if got := findModuleRoot(other); got != "" {
		t.Errorf("findModuleRoot in module pocketllm-native-fork = %q, want none", got)
	}
	write(filepath.Join(other, "go.mod"), "modulepocketllm-native\n")
	if got := moduleOf(filepath.Join(other, "go.mod")); got != "" {
		t.Errorf("moduleOf(modulepocketllm-native) = %q, want none", got)
	}
}

// In a checkout, go test runs in bindings/, so the module root is found
// and the build folder is among the candidates.
func TestCurrentSearchDirsInCheckout(t *testing.T) {
	t.Setenv(EnvLibDir, "/from/env")
	d := CurrentSearchDirs()
	wd, _ := os.Getwd()
	// The test may run in bindings/ (go test) or at the root (a test
	// binary carried to another machine): the root is wd or its parent.
	rel, err := filepath.Rel(d.ModuleRoot, wd)
	if d.ModuleRoot == "" || err != nil || (rel != "." && rel != "bindings") {
		t.Errorf("ModuleRoot = %q for working directory %q", d.ModuleRoot, wd)
	}
	if b, err := os.ReadFile(filepath.Join(d.ModuleRoot, "go.mod")); err != nil || !strings.HasPrefix(string(b), "module pocketllm-native\n") {
		t.Errorf("%s/go.mod does not declare the module: %v", d.ModuleRoot, err)
	}
	if d.Env != "/from/env" || d.ExeDir == "" {
		t.Errorf("CurrentSearchDirs = %+v", d)
	}
}
