package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The hidden names of unfinished outputs: ".NAME" + tag + random letters.
// The tags are specific enough that nothing but this package makes them,
// so the leftover sweep never touches a file it did not create.
const (
	tmpTag = ".pocketllm-tmp-"
	oldTag = ".pocketllm-old-"
)

// split returns the directory and base name of a destination.
func split(path string) (dir, base string) {
	dir, base = filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// hiddenName is a fresh candidate name in dir for base with tag.
func hiddenName(dir, base, tag string) string {
	return filepath.Join(dir, "."+base+tag+fmt.Sprintf("%012x", rand.Uint64()>>16))
}

// existsError reports a destination that must not be overwritten; it
// wraps fs.ErrExist so that callers can word it for their users.
func existsError(path string) error {
	return fmt.Errorf("%s: %w", path, fs.ErrExist)
}

// refuseExisting is the early check of a destination that must not be
// overwritten (the publish checks again, atomically where it can).
func refuseExisting(path string, overwrite bool) error {
	if overwrite {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return existsError(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// RemoveLeftovers removes the unfinished outputs for path that earlier
// runs left behind (killed before they could clean up): hidden temporary
// files and folders no live process holds. A folder that was moved aside to
// be replaced is put back at path when path is missing (the replacement
// never arrived), and removed otherwise. Create and CreateDir call it; it
// is exported for tests and tools. It is best effort: what it cannot remove
// stays, and never fails a run.
func RemoveLeftovers(path string) {
	dir, base := split(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	tmp, old := "."+base+tmpTag, "."+base+oldTag
	// Folders moved aside first, so that one put back is not then seen
	// as an output that already exists.
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, old) {
			restoreOrRemove(filepath.Join(dir, name), path)
		}
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, tmp) {
			removeIfAbandoned(filepath.Join(dir, name))
		}
	}
}

// removeIfAbandoned removes p when no live process holds its lock.
func removeIfAbandoned(p string) {
	f, ok := lockAbandoned(p)
	if !ok {
		return
	}
	defer f.Close()
	os.RemoveAll(p)
}

// restoreOrRemove handles a folder (or file) moved aside by a replacement
// that was killed: back to dest when dest is missing, removed otherwise.
func restoreOrRemove(p, dest string) {
	f, ok := lockAbandoned(p)
	if !ok {
		return
	}
	defer f.Close()
	if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
		if os.Rename(p, dest) == nil {
			return
		}
	}
	os.RemoveAll(p)
}

// lockedTemp creates a hidden name in dir for base with create (which must
// fail with fs.ErrExist when the name is taken) and locks what it made. The
// lock is taken after the create, so a leftover sweep of another run may
// slip in between; the name is then checked to still be this file, and a
// fresh one is tried if not.
func lockedTemp(dir, base string, create func(name string) (*os.File, error)) (*os.File, string, error) {
	var last error
	for range 64 {
		name := hiddenName(dir, base, tmpTag)
		f, err := create(name)
		if errors.Is(err, fs.ErrExist) {
			last = err
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, derr := os.Stat(dir); derr == nil {
				// A folder removed by another run's sweep between its
				// mkdir and open: try another name.
				last = err
				continue
			}
		}
		if err != nil {
			return nil, "", err
		}
		if err := lock(f); err != nil {
			f.Close()
			last = err
			continue
		}
		if sameFile(f, name) {
			return f, name, nil
		}
		f.Close()
	}
	return nil, "", fmt.Errorf("cannot create a temporary name in %s: %v", dir, last)
}

// sameFile reports whether name still refers to the open file f.
func sameFile(f *os.File, name string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(name)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// syncDir makes a rename or link durable. It is best effort: some platforms
// and filesystems cannot sync a directory, and the data is already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
