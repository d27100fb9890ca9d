package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"pocketllm-native/internal/atomicfile"
)

// cancelSignals are the signals that cancel a run: Ctrl-C, a polite kill,
// and a closed terminal.
var cancelSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// exitOnSignal makes the cancelSignals end the process cleanly: every
// unfinished output's temporary file or folder is removed, one line says
// so on stderr, and the exit status is 128 plus the signal number, as a
// shell reports a process killed by it. (A run killed with SIGKILL cannot
// do this; package atomicfile arranges that nothing named survives it, or
// that the next run removes it.) stop undoes it.
func exitOnSignal(stderr io.Writer) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, cancelSignals...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			atomicfile.RemoveTemporaries()
			fmt.Fprintf(stderr, "pocketllm-native: interrupted by %v; unfinished outputs removed\n", sig)
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
