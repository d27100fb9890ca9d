// Package regularfile opens input files without ever blocking on one that
// is not a file. os.Open of a FIFO waits for a writer, forever if none
// comes, before any check of the file's type can run; here the open is
// non-blocking and the type is checked on the open file (no window for the
// path to change between a check and the open), so a FIFO, a device, a
// socket or a directory is refused at once with a one-line error.
package regularfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Open opens path for reading (following symbolic links) and returns an
// error naming the path unless it is a regular file. O_NONBLOCK makes no
// difference to the reads of a regular file.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, NotRegular(path, fi.Mode())
	}
	return f, nil
}

// NotRegular is the error for path, of type m, where a regular file is
// needed, for callers that looked with os.Stat first.
func NotRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%s: not a regular file (%s)", path, kind(m))
}

// ReadFile is os.ReadFile through Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// kind names a file type for people.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "type " + m.Type().String()
}
