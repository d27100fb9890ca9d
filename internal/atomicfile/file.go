package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// File is an output file that appears at its path, complete and synced,
// only when Commit succeeds. Until then it has no name (Linux O_TMPFILE)
// or a hidden, locked one beside the path; Abort, a failed Commit or the
// end of the process (see RemoveLeftovers for SIGKILL) leave nothing.
// Writes are unbuffered; wrap a File in a bufio.Writer. A File is not safe
// for concurrent use.
type File struct {
	path      string
	f         *os.File
	tmp       string // hidden name; "" for an unnamed file
	overwrite bool
	done      bool
}

// Create starts the file that Commit will place at path, with mode 0644
// less the umask. Without overwrite an existing path is refused, here and
// again, atomically, by Commit (a file created meanwhile by another writer
// is never replaced); the error wraps fs.ErrExist. A directory at path is
// always refused. Leftovers of killed runs for path are removed first.
func Create(path string, overwrite bool) (*File, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	if err := refuseExisting(path, overwrite); err != nil {
		return nil, err
	}
	dir, base := split(path)
	RemoveLeftovers(path)
	o := &File{path: path, overwrite: overwrite}
	if unnamedAllowed {
		if f, ok := createUnnamed(dir); ok {
			o.f = f
			return o, nil
		}
	}
	f, tmp, err := lockedTemp(dir, base, func(name string) (*os.File, error) {
		return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create a temporary file beside it: %w", path, err)
	}
	register(tmp)
	o.f, o.tmp = f, tmp
	return o, nil
}

// unnamedAllowed is cleared by tests to exercise the hidden-name path on a
// system that has unnamed files.
var unnamedAllowed = true

// Path is the destination.
func (o *File) Path() string { return o.path }

// Write appends p.
func (o *File) Write(p []byte) (int, error) {
	if o.done {
		return 0, fmt.Errorf("%s: write after commit or abort", o.path)
	}
	return o.f.Write(p)
}

// ReadAt reads back what was written (a last check before Commit).
func (o *File) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }

// Stat describes the file written so far.
func (o *File) Stat() (os.FileInfo, error) { return o.f.Stat() }

// Commit syncs the file and moves it to its path. On failure nothing is
// left and the path is untouched.
func (o *File) Commit() error {
	if o.done {
		return fmt.Errorf("%s: commit after commit or abort", o.path)
	}
	if err := o.f.Sync(); err != nil {
		o.Abort()
		return fmt.Errorf("%s: syncing: %w", o.path, err)
	}
	live.Lock()
	err := o.publish()
	live.Unlock()
	if err != nil {
		o.Abort()
		return err
	}
	o.done = true
	o.close()
	dir, _ := split(o.path)
	syncDir(dir)
	return nil
}

// publish gives the finished file its name; live is locked.
func (o *File) publish() error {
	if o.tmp == "" {
		if !o.overwrite {
			return o.linkErr(linkUnnamed(o.f, o.path))
		}
		// A rename is the only atomic replacement, and it needs a name
		// to move: link one (hidden, still locked) and rename it.
		dir, base := split(o.path)
		for range 64 {
			name := hiddenName(dir, base, tmpTag)
			err := linkUnnamed(o.f, name)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", o.path, err)
			}
			if err := os.Rename(name, o.path); err != nil {
				os.Remove(name)
				return fmt.Errorf("%s: %w", o.path, err)
			}
			return nil
		}
		return fmt.Errorf("%s: cannot name the finished file", o.path)
	}
	if o.overwrite {
		if err := os.Rename(o.tmp, o.path); err != nil {
			return fmt.Errorf("%s: %w", o.path, err)
		}
		delete(live.names, o.tmp)
		return nil
	}
	// A hard link fails atomically if the destination exists, which a
	// rename would silently replace.
	err := os.Link(o.tmp, o.path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		if err == nil {
			os.Remove(o.tmp)
			delete(live.names, o.tmp)
		}
		return o.linkErr(err)
	}
	// Some filesystems have no hard links; fall back to check-then-rename.
	if _, err := os.Lstat(o.path); err == nil {
		return existsError(o.path)
	}
	if err := os.Rename(o.tmp, o.path); err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	delete(live.names, o.tmp)
	return nil
}

func (o *File) linkErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return existsError(o.path)
	}
	return fmt.Errorf("%s: %w", o.path, err)
}

// Abort discards the file. It is a no-op after Commit or a previous Abort,
// so `defer f.Abort()` is the idiom.
func (o *File) Abort() {
	if o.done {
		return
	}
	o.done = true
	if o.tmp != "" {
		os.Remove(o.tmp)
		unregister(o.tmp)
	}
	o.close()
}

func (o *File) close() {
	if o.f != nil {
		o.f.Close() // also drops the lock
		o.f = nil
	}
}
