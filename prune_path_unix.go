//go:build unix && !linux

package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// lockDir opens the directory at path without following a symlink and
// locks it (see lockExclusive). Where the file system cannot lock, work
// goes on unlocked.
func lockDir(path, _ string) (unlock func(), err error) {
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := lockExclusive(fd); errors.Is(err, errBusy) {
		syscall.Close(fd)
		return nil, err
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
