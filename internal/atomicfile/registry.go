package atomicfile

import (
	"os"
	"sync"
)

// live holds the hidden names of this process's unfinished outputs, for
// RemoveTemporaries. Its mutex also covers every step that moves a name
// into place, so that a signal handler never runs between the two renames
// of a folder replacement.
var live = struct {
	sync.Mutex
	names map[string]bool
}{names: map[string]bool{}}

func register(name string) {
	live.Lock()
	live.names[name] = true
	live.Unlock()
}

func unregister(name string) {
	live.Lock()
	delete(live.names, name)
	live.Unlock()
}

// RemoveTemporaries removes every hidden temporary file and folder of this
// process's unfinished outputs (unnamed files need nothing: they vanish
// with the process) and returns their names. It is for a handler of
// SIGINT, SIGTERM and SIGHUP that exits right after: once it has run, no
// output of this process is published any more (a Commit in progress
// waits forever), so the process must exit.
func RemoveTemporaries() []string {
	live.Lock() // never unlocked: see above
	var removed []string
	for name := range live.names {
		if os.RemoveAll(name) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}
