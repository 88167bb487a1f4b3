//go:build unix && !linux

package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// lockDir opens the directory at path without following a symlink and
// locks it (see lockExclusive).
func lockDir(path, _ string) (unlock func(), err error) {
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := lockExclusive(fd); err != nil {
		syscall.Close(fd)
		return nil, lockError(path, err)
	}
	return func() { syscall.Close(fd) }, nil
}

// sameDevice reports whether two files are on one device: a directory on
// another device than its tree's top is a mount point.
func sameDevice(a, b fs.FileInfo) bool {
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return !okA || !okB || sa.Dev == sb.Dev
}

// makeDirUsable gives the caller read, write and search permission on the
// directory at path, whose Lstat info is info, if the caller owns it and
// lacks them, as `go clean -modcache` does for Go's read-only module
// cache. Another user's directory is left as it is.
func makeDirUsable(path string, info fs.FileInfo) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) == os.Geteuid() && info.Mode().Perm()&0o700 != 0o700 {
		os.Chmod(path, info.Mode().Perm()|0o700)
	}
}

// renameDir renames a directory.
func renameDir(from, to string) error { return os.Rename(from, to) }

// holdProbe locks the clock probe f (see lockExclusive), so that no other
// PruneDead removes it; dropProbe removes its name before it lets go.
func holdProbe(f *os.File) { lockExclusive(int(f.Fd())) }

func dropProbe(f *os.File, path string) {
	os.Remove(path)
	f.Close()
}

// firstHeld finds nothing: an open file does not keep a Unix system from
// removing it, and these systems give no view of who holds one.
func firstHeld(string) string { return "" }

// removeStaleProbe removes the clock probe file name if no PruneDead holds
// it locked: its maker crashed before removing it. Anything but a regular
// file of that name is left alone.
func (sw *swarmDir) removeStaleProbe(name string) error {
	path := sw.entryPath(name)
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, pidFileFlags, 0)
		return err
	})
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	if err := lockExclusive(fd); err != nil {
		return lockError(path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
