// Package atomicfile writes outputs so that nobody ever finds a partial one
// and nothing named is left behind by a run that stops half way.
//
// A file (Create) is written without a name where the system allows it
// (Linux O_TMPFILE) and linked into place only once complete and synced;
// elsewhere it is written under a hidden temporary name beside the
// destination. A folder (CreateDir) is built under a hidden temporary name
// and renamed into place. Temporary names are ".NAME.pocketllm-tmp-*" (and
// ".NAME.pocketllm-old-*" for a folder being replaced); the run that owns
// one holds a lock on it (flock), so the next run writing NAME removes those
// no live process holds, and puts back a replaced folder whose successor
// never arrived. A destination that must not be overwritten is published
// with a hard link, which fails atomically when another writer got there
// first. RemoveTemporaries removes this process's unfinished outputs, for a
// signal handler.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
)

// Write writes data to path. An existing path is an error naming --force
// unless force is set, in which case it is replaced.
func Write(path string, data []byte, force bool) error {
	f, err := Create(path, force)
	if err != nil {
		return ForceHint(err, path)
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %v", path, err)
	}
	return ForceHint(f.Commit(), path)
}

// ForceHint words an error wrapping fs.ErrExist (an existing destination)
// for a command line, naming --force; other errors pass unchanged.
func ForceHint(err error, path string) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; pass --force to replace it", path)
	}
	return err
}
