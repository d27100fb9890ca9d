package formatbase

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"

	"pocketllm-native/internal/atomicfile"
)

// WriteOptions controls how a writer treats its destination.
type WriteOptions struct {
	// Overwrite allows replacing an existing file. Without it a writer
	// refuses an existing destination, both when it starts (to fail early)
	// and when it moves the finished file into place (so that a file
	// created meanwhile is not clobbered either).
	Overwrite bool
}

// Output is a checkpoint file written through atomicfile: it appears at its
// path only once complete and synced, even after a crash, and Abort, or a
// failed Commit, leaves nothing. An Output is not safe for concurrent use.
type Output struct {
	f    *atomicfile.File
	w    *bufio.Writer
	done bool
}

// CreateOutput starts writing the file that Commit will place at path.
func CreateOutput(path string, opt WriteOptions) (*Output, error) {
	f, err := atomicfile.Create(path, opt.Overwrite)
	if err != nil {
		return nil, refusal(err, path)
	}
	return &Output{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// refusal words an existing destination.
func refusal(err error, path string) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: already exists; refusing to overwrite it", path)
	}
	return err
}

// Path returns the destination path.
func (o *Output) Path() string { return o.f.Path() }

// Write appends p to the file.
func (o *Output) Write(p []byte) (int, error) {
	if o.done {
		return 0, fmt.Errorf("%s: write after commit or abort", o.Path())
	}
	n, err := o.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%s: writing: %w", o.Path(), err)
	}
	return n, err
}

// Commit flushes and syncs the file and moves it to its destination. On
// failure nothing is left and the destination is untouched.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("%s: commit after commit or abort", o.Path())
	}
	o.done = true
	if err := o.w.Flush(); err != nil {
		o.f.Abort()
		return fmt.Errorf("%s: writing: %w", o.Path(), err)
	}
	return refusal(o.f.Commit(), o.Path())
}

// Abort discards the file. It is a no-op after Commit or a previous Abort.
func (o *Output) Abort() {
	o.done = true
	o.f.Abort()
}
