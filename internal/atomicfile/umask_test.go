//go:build unix

package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestModesFollowUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	t.Cleanup(func() { syscall.Umask(old) })
	eachKind(t, func(t *testing.T) {
		dir := t.TempDir()
		f, err := Create(filepath.Join(dir, "f"), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		d, err := CreateDir(filepath.Join(dir, "d"), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Commit(); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]fs.FileMode{"f": 0o640, "d": 0o750} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v with umask 027, want %v", name, fi.Mode().Perm(), want)
			}
		}
	})
}
