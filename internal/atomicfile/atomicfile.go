// Package atomicfile writes whole files that are produced in memory
// (results, tables, generated samples) so that nobody ever finds a partial
// one: the data goes to a temporary file in the same directory, which is
// renamed into place only once it is complete, and removed on any failure.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to path with mode 0644. An existing path is an error
// naming --force unless force is set, in which case it is replaced.
func Write(path string, data []byte, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return fmt.Errorf("%s already exists; pass --force to replace it", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644) // CreateTemp makes it private; these files are for reading
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}
