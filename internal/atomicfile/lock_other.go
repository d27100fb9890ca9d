//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package atomicfile

import "os"

// lock does nothing: without flock there is no way to tell a live run's
// temporary name from an abandoned one.
func lock(*os.File) error { return nil }

// lockAbandoned never declares a name abandoned, so the leftover sweep
// removes nothing on these systems (a live run's file must never go).
func lockAbandoned(string) (*os.File, bool) { return nil, false }

// TryLock does nothing here (see lock): it always succeeds.
func TryLock(f *os.File) error { return lock(f) }
