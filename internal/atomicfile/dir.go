package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Dir is an output folder built under a hidden, locked name beside its
// path and moved there by Commit. Abort, a failed Commit or a signal
// (RemoveTemporaries) remove it; after SIGKILL the next run for the same
// path does (RemoveLeftovers).
type Dir struct {
	path      string
	tmp       string
	lock      *os.File // the open folder, holding its lock
	overwrite bool
	done      bool
}

// CreateDir makes the folder that Commit will place at path, with mode
// 0755 less the umask, like any folder a user creates. Without overwrite an
// existing path is refused (the error wraps fs.ErrExist). Leftovers of
// killed runs for path are dealt with first.
func CreateDir(path string, overwrite bool) (*Dir, error) {
	RemoveLeftovers(path)
	if err := refuseExisting(path, overwrite); err != nil {
		return nil, err
	}
	dir, base := split(path)
	f, tmp, err := lockedTemp(dir, base, func(name string) (*os.File, error) {
		if err := os.Mkdir(name, 0o755); err != nil {
			return nil, err
		}
		return os.Open(name)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create the output folder: %w", path, err)
	}
	register(tmp)
	return &Dir{path: path, tmp: tmp, lock: f, overwrite: overwrite}, nil
}

// Path is where the files go until Commit: the hidden folder.
func (d *Dir) Path() string { return d.tmp }

// Commit moves the folder to its path. An existing path (allowed only with
// overwrite) is first moved aside under a hidden, locked name and removed
// once the new folder is in place; a run killed between the two renames
// leaves the old one aside, and the next run for the path puts it back.
func (d *Dir) Commit() error {
	if d.done {
		return fmt.Errorf("%s: commit after commit or abort", d.path)
	}
	err := d.replace()
	if err != nil {
		d.Abort()
		return err
	}
	d.done = true
	d.lock.Close()
	dir, _ := split(d.path)
	syncDir(dir)
	return nil
}

func (d *Dir) replace() error {
	// Non-blocking: the path may be a FIFO, whose open would wait for a writer.
	prev, err := os.OpenFile(d.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		live.Lock()
		defer live.Unlock()
		// No atomic no-replace rename of folders here: a folder created
		// meanwhile is checked for, not excluded.
		if _, err := os.Lstat(d.path); err == nil {
			return existsError(d.path)
		}
		if err := os.Rename(d.tmp, d.path); err != nil {
			return fmt.Errorf("%s: %w", d.path, err)
		}
		delete(live.names, d.tmp)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.path, err)
	}
	defer prev.Close()
	if !d.overwrite {
		return existsError(d.path)
	}
	// Locked before it moves, so that no other run takes it for a leftover.
	if err := lock(prev); err != nil {
		return fmt.Errorf("%s: in use by another run: %v", d.path, err)
	}
	dir, base := split(d.path)
	old := hiddenName(dir, base, oldTag)
	live.Lock()
	if err := os.Rename(d.path, old); err != nil {
		live.Unlock()
		return fmt.Errorf("%s: cannot move the existing output aside: %v", d.path, err)
	}
	if err := os.Rename(d.tmp, d.path); err != nil {
		os.Rename(old, d.path)
		live.Unlock()
		return fmt.Errorf("%s: %w", d.path, err)
	}
	delete(live.names, d.tmp)
	live.names[old] = true
	live.Unlock()
	// What cannot be removed now (the new output is in place either way)
	// is a leftover the next run removes.
	os.RemoveAll(old)
	unregister(old)
	return nil
}

// Abort removes the folder. It is a no-op after Commit or a previous
// Abort, so `defer d.Abort()` is the idiom.
func (d *Dir) Abort() {
	if d.done {
		return
	}
	d.done = true
	os.RemoveAll(d.tmp)
	unregister(d.tmp)
	d.lock.Close()
}
