package formatbase

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteOptions controls how a writer treats its destination.
type WriteOptions struct {
	// Overwrite allows replacing an existing file. Without it a writer
	// refuses an existing destination, both when it starts (to fail early)
	// and when it moves the finished file into place (so that a file
	// created meanwhile is not clobbered either).
	Overwrite bool
}

// Output is a file written under a temporary, hidden name in the
// destination's directory and moved into place by Commit only once it is
// complete and synced, so the destination never holds a partial file, even
// after a crash. Abort, or a failed Commit, removes the temporary file.
// An Output is not safe for concurrent use.
type Output struct {
	path      string
	tmp       string
	f         *os.File
	w         *bufio.Writer
	overwrite bool
	done      bool
}

// CreateOutput starts writing the file that Commit will place at path.
func CreateOutput(path string, opt WriteOptions) (*Output, error) {
	if !opt.Overwrite {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("%s: already exists; refusing to overwrite it", path)
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create a temporary file beside it: %w", path, err)
	}
	return &Output{path: path, tmp: f.Name(), f: f, w: bufio.NewWriterSize(f, 1<<20), overwrite: opt.Overwrite}, nil
}

// Path returns the destination path.
func (o *Output) Path() string { return o.path }

// Write appends p to the file.
func (o *Output) Write(p []byte) (int, error) {
	if o.done {
		return 0, fmt.Errorf("%s: write after commit or abort", o.path)
	}
	n, err := o.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%s: writing temporary file %s: %w", o.path, o.tmp, err)
	}
	return n, err
}

// Commit flushes and syncs the file and moves it to its destination. On
// failure the temporary file is removed and the destination is untouched.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("%s: commit after commit or abort", o.path)
	}
	err := o.finish()
	if err != nil {
		o.Abort()
		return err
	}
	o.done = true
	syncDir(filepath.Dir(o.path))
	return nil
}

func (o *Output) finish() error {
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("%s: writing temporary file %s: %w", o.path, o.tmp, err)
	}
	if err := o.f.Chmod(0o644); err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("%s: syncing temporary file %s: %w", o.path, o.tmp, err)
	}
	err := o.f.Close()
	o.f = nil
	if err != nil {
		return fmt.Errorf("%s: closing temporary file %s: %w", o.path, o.tmp, err)
	}
	if o.overwrite {
		if err := os.Rename(o.tmp, o.path); err != nil {
			return fmt.Errorf("%s: %w", o.path, err)
		}
		return nil
	}
	// A hard link fails atomically if the destination exists, which a
	// rename would silently replace.
	err = os.Link(o.tmp, o.path)
	switch {
	case err == nil:
		os.Remove(o.tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s: already exists; refusing to overwrite it", o.path)
	}
	// Some filesystems have no hard links; fall back to check-then-rename.
	if _, err := os.Lstat(o.path); err == nil {
		return fmt.Errorf("%s: already exists; refusing to overwrite it", o.path)
	}
	if err := os.Rename(o.tmp, o.path); err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	return nil
}

// Abort discards the file. It is a no-op after Commit or a previous Abort.
func (o *Output) Abort() {
	if o.done {
		return
	}
	o.done = true
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
	os.Remove(o.tmp)
}

// syncDir makes a rename durable. It is best effort: some platforms and
// filesystems cannot sync a directory, and the file itself is already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
