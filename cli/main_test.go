package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pocketllm-native/internal/atomicfile"
	"pocketllm-native/internal/nativetest"
)

// Environment variables that turn the test binary into the command (for
// tests that signal or kill a real process) or into a holder of unfinished
// outputs that waits for a signal.
const (
	envRunMain = "POCKETLLM_CLI_TEST_MAIN"
	envHold    = "POCKETLLM_CLI_TEST_HOLD"
)

// The native backends are found through POCKETLLM_LIB_DIR only; point it at
// this checkout's build unless the caller (make) already has.
func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) != "" {
		nativetest.UseCheckoutBuild()
		os.Exit(Main(os.Args))
	}
	if dir := os.Getenv(envHold); dir != "" {
		os.Exit(hold(dir))
	}
	nativetest.Main(m)
}

// hold starts an output folder and a file under dir the way decompress and
// compress do, with Main's signal handling, says "ready" and waits.
func hold(dir string) int {
	stop := exitOnSignal(os.Stderr)
	defer stop()
	d, err := atomicfile.CreateDir(filepath.Join(dir, "hf"), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	os.WriteFile(filepath.Join(d.Path(), "model.safetensors"), []byte("partial"), 0o644)
	f, err := atomicfile.Create(filepath.Join(dir, "s.pllm"), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	f.Write([]byte("partial"))
	fmt.Println("ready")
	// Reachable, or the collector closes the files; and a sleep, not
	// select {}, which the runtime may end as a deadlock.
	held = []any{d, f}
	for {
		time.Sleep(time.Hour)
	}
}

var held []any
