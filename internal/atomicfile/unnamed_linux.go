//go:build linux && (386 || amd64 || arm || arm64 || loong64 || ppc64 || ppc64le || riscv64 || s390x)

package atomicfile

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// oTmpfile is Linux's O_TMPFILE (__O_TMPFILE | O_DIRECTORY) on the
// architectures above; the syscall package does not define it.
const oTmpfile = 0o20000000 | syscall.O_DIRECTORY

// createUnnamed opens a file without a name in dir (O_TMPFILE): it
// disappears with the process however that ends, until linkUnnamed gives it
// one. ok is false when dir's filesystem (or the kernel) has no O_TMPFILE
// or /proc is missing, and the caller then uses a hidden name.
func createUnnamed(dir string) (f *os.File, ok bool) {
	fd, err := syscall.Open(dir, oTmpfile|syscall.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, false
	}
	f = os.NewFile(uintptr(fd), dir+"/(unnamed)")
	// linkUnnamed goes through /proc/self/fd; make sure it is there and is f.
	a, err1 := f.Stat()
	b, err2 := os.Stat(procPath(f)) // Stat: the link's target is the file
	if err1 != nil || err2 != nil || !os.SameFile(a, b) || lock(f) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

func procPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// linkUnnamed gives the unnamed file f the name path, failing with
// fs.ErrExist (EEXIST) when path exists: linkat never replaces.
func linkUnnamed(f *os.File, path string) error {
	from, err := syscall.BytePtrFromString(procPath(f))
	if err != nil {
		return err
	}
	to, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	const (
		atFDCWD         = -100  // AT_FDCWD
		atSymlinkFollow = 0x400 // AT_SYMLINK_FOLLOW: link what /proc/self/fd/N points at
	)
	cwd := atFDCWD // a variable: a negative constant does not convert to uintptr
	_, _, e := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(cwd), uintptr(unsafe.Pointer(from)),
		uintptr(cwd), uintptr(unsafe.Pointer(to)), atSymlinkFollow, 0)
	if e != 0 {
		return &os.LinkError{Op: "linkat", Old: procPath(f), New: path, Err: e}
	}
	return nil
}
