//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package atomicfile

import (
	"os"
	"syscall"
)

// lock takes f's exclusive flock without waiting. The lock lives as long as
// the open file: it goes with the process however the process ends, which
// is what tells a later run that a temporary name was abandoned.
func lock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// lockAbandoned opens p (a regular file or a folder, never following a
// symbolic link and never blocking on a FIFO) and takes its lock. It
// succeeds only when no live process holds the lock; the caller closes f.
func lockAbandoned(p string) (f *os.File, ok bool) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, false
	}
	if fi, err := f.Stat(); err != nil || !(fi.Mode().IsRegular() || fi.IsDir()) {
		f.Close()
		return nil, false
	}
	if lock(f) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// TryLock takes f's exclusive lock without waiting; an error means another
// open file holds it (another live process, or another open in this one).
func TryLock(f *os.File) error { return lock(f) }
