package bindings

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// EnvBackend names the environment variable consulted when Select is asked
// for "" or "auto": auto, cuda, cpu or go.
const EnvBackend = "POCKETLLM_BACKEND"

// Backend names, in the order auto tries them.
const (
	BackendCUDA = "cuda"
	BackendCPU  = "cpu"
	BackendGo   = "go"
)

// Backends lists the backends in the order auto tries them.
var Backends = []string{BackendCUDA, BackendCPU, BackendGo}

// Attempt is one library path tried for a native backend and what happened.
type Attempt struct {
	Path    string
	Outcome string // "not found", "loaded", or why loading failed
}

// Candidate records what happened to one backend during a choice.
type Candidate struct {
	Backend   string
	Attempts  []Attempt // library paths tried, in order (none for go)
	Path      string    // the library loaded; "" for go or when none loaded
	Score     int       // pllm_backend_score of the loaded library (0 for go)
	BuildInfo string    // pllm_build_info, or the Go toolchain for go
	Device    string    // what a context runs on; "" when none was created
	Refused   string    // why it cannot be used; "" when usable
	Tried     bool      // false when an earlier candidate was chosen first
}

// Report says which backend was chosen and why the others were not; its
// String is what `pocketllm-native backends` prints.
type Report struct {
	Asked      string // what was asked: auto, cuda, cpu or go
	From       string // where that came from: "argument", EnvBackend, or "default"
	Chosen     string // the backend returned; "" on error
	Path       string // its library ("" for go)
	BuildInfo  string
	Device     string
	Candidates []Candidate
}

// String renders the report for people: the choice, then every candidate
// with the paths it tried.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "asked: %s (from %s)\n", r.Asked, r.From)
	if r.Chosen != "" {
		fmt.Fprintf(&b, "chosen: %s", r.Chosen)
		if r.Path != "" {
			fmt.Fprintf(&b, " (%s)", r.Path)
		}
		fmt.Fprintf(&b, "\n  device: %s\n  build: %s\n", r.Device, r.BuildInfo)
	} else {
		b.WriteString("chosen: none\n")
	}
	b.WriteString("candidates:\n")
	for _, c := range r.Candidates {
		switch {
		case !c.Tried:
			fmt.Fprintf(&b, "  %s: not tried (an earlier backend was chosen)\n", c.Backend)
			continue
		case strings.HasPrefix(c.Refused, "not found at "):
			fmt.Fprintf(&b, "  %s: refused: library not found (%s names the folder that holds it)\n", c.Backend, EnvLibDir)
		case c.Refused != "":
			fmt.Fprintf(&b, "  %s: refused: %s\n", c.Backend, c.Refused)
		default:
			fmt.Fprintf(&b, "  %s: usable", c.Backend)
			if c.Score > 0 {
				fmt.Fprintf(&b, ", score %d", c.Score)
			}
			fmt.Fprintf(&b, "\n      device: %s\n      build: %s\n", c.Device, c.BuildInfo)
		}
		for _, a := range c.Attempts {
			fmt.Fprintf(&b, "      %s: %s\n", a.Path, a.Outcome)
		}
	}
	return b.String()
}

// Select returns the kernels of the backend asked for, with a report of the
// choice. want is auto, cuda, cpu or go; "" means auto, and for "" or auto
// the environment variable POCKETLLM_BACKEND may name another.
//
// auto tries cuda, then cpu, then go, and takes the first that works; go
// always works. An explicit cuda or cpu that cannot be had is an error
// listing the reasons, never a silent fallback. The report is returned in
// every case, so a caller can print why.
//
// A native backend holds a library context: release it with Close.
func Select(want string) (Kernels, *Report, error) {
	return selectWith(want, os.Getenv(EnvBackend), CurrentSearchDirs())
}

// Close releases what k holds (the native context). The go backend holds
// nothing; Close is then a no-op.
func Close(k Kernels) error {
	if c, ok := k.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Probe tries every backend, whatever auto would stop at, and reports each
// one; Chosen is the one auto would pick. Nothing stays open.
func Probe() *Report {
	dirs := CurrentSearchDirs()
	r := &Report{Asked: "all", From: "probe"}
	for _, name := range Backends {
		k, c := open(name, dirs)
		if k != nil {
			if r.Chosen == "" {
				r.Chosen, r.Path, r.BuildInfo, r.Device = name, c.Path, c.BuildInfo, c.Device
			}
			Close(k)
		}
		r.Candidates = append(r.Candidates, c)
	}
	return r
}

func selectWith(want, env string, dirs SearchDirs) (Kernels, *Report, error) {
	r := &Report{Asked: want, From: "argument"}
	if want == "" || want == "auto" {
		r.Asked, r.From = "auto", "default"
		if env != "" && env != "auto" {
			r.Asked, r.From = env, EnvBackend
		}
	}
	switch r.Asked {
	case "auto":
		for i, name := range Backends {
			k, c := open(name, dirs)
			r.Candidates = append(r.Candidates, c)
			if k != nil {
				for _, rest := range Backends[i+1:] {
					r.Candidates = append(r.Candidates, Candidate{Backend: rest})
				}
				r.chose(c)
				return k, r, nil
			}
		}
		// Unreachable while go is in Backends; kept so a change there
		// gives an error rather than a nil Kernels.
		return nil, r, fmt.Errorf("bindings: no backend is usable: %s", r.reasons())
	case BackendCUDA, BackendCPU, BackendGo:
		k, c := open(r.Asked, dirs)
		r.Candidates = append(r.Candidates, c)
		if k == nil {
			return nil, r, fmt.Errorf("bindings: backend %s (from %s) is not usable: %s", r.Asked, r.From, r.reasons())
		}
		r.chose(c)
		return k, r, nil
	}
	return nil, r, fmt.Errorf("bindings: unknown backend %q (from %s): want auto, cuda, cpu or go", r.Asked, r.From)
}

func (r *Report) chose(c Candidate) {
	r.Chosen, r.Path, r.BuildInfo, r.Device = c.Backend, c.Path, c.BuildInfo, c.Device
}

func (r *Report) reasons() string {
	var parts []string
	for _, c := range r.Candidates {
		if c.Tried && c.Refused != "" {
			parts = append(parts, c.Backend+": "+c.Refused)
		}
	}
	return strings.Join(parts, "; ")
}

// open tries one backend and reports what happened. k is nil when the
// backend cannot be used.
func open(name string, dirs SearchDirs) (Kernels, Candidate) {
	c := Candidate{Backend: name, Tried: true}
	if name == BackendGo {
		c.BuildInfo = runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
		c.Device = fmt.Sprintf("Go, %d threads (GOMAXPROCS)", runtime.GOMAXPROCS(0))
		return Go(), c
	}
	var notFound, failed []string
	for _, path := range LibraryCandidates(LibraryFile(name), dirs) {
		lib, err := openLibrary(path)
		if errors.Is(err, errNotFound) {
			c.Attempts = append(c.Attempts, Attempt{path, "not found"})
			notFound = append(notFound, path)
			continue
		}
		if err == nil {
			err = checkLibrary(lib, name)
		}
		if err != nil {
			c.Attempts = append(c.Attempts, Attempt{path, err.Error()})
			failed = append(failed, path+": "+err.Error())
			continue
		}
		c.Attempts = append(c.Attempts, Attempt{path, "loaded"})
		c.Path = path
		c.Score = int(lib.backendScore())
		c.BuildInfo = lib.buildInfo()
		if c.Score <= 0 {
			// The library loaded and works as a library; the machine is
			// the problem, so other copies on the path would say the same.
			c.Refused = fmt.Sprintf("%s: score %d: the library cannot run on this machine (%s)", path, c.Score, noDeviceHint(name))
			return nil, c
		}
		k, err := newNativeKernels(lib, name)
		if err != nil {
			c.Refused = path + ": " + err.Error()
			return nil, c
		}
		c.Device = k.device
		return k, c
	}
	c.Refused = strings.Join(failed, "; ")
	if len(failed) == 0 {
		c.Refused = "not found at " + strings.Join(notFound, ", ")
	} else if len(notFound) > 0 {
		c.Refused += fmt.Sprintf(" (not found at the %d other paths)", len(notFound))
	}
	return nil, c
}

func noDeviceHint(name string) string {
	if name == BackendCUDA {
		return "no CUDA driver or device"
	}
	return "unsupported processor"
}

// checkLibrary refuses a library of another backend (a cpu library copied
// under the cuda name, say); openLibrary has checked the ABI version.
func checkLibrary(lib *nativeLib, want string) error {
	if got := lib.backendName(); got != want {
		return fmt.Errorf("library reports backend %q, expected %q", got, want)
	}
	return nil
}
