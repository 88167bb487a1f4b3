//go:build unix && !linux

package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// probeScope is empty: these systems give nothing a scan could share.
type probeScope struct{}

// modTime is not needed where there is no start time to compare it with.
func modTime(*syscall.Stat_t) time.Time { return time.Time{} }

// inspectExisting cannot look further than kill(2) did: the standard
// library reaches a process's state and start time on these systems only
// through sysctl structures it does not export, so a zombie counts as alive
// and reuse goes undetected.
func inspectExisting(int, *probeScope) (gone bool, start time.Time) { return false, time.Time{} }

// openPIDFile opens the pid file of a swarm entry by its full path: the
// standard library has no openat(2) on every one of these systems.
func openPIDFile(sw *swarmDir, entry string) (fd int, err error) {
	path := sw.pidFilePath(entry)
	err = ignoringEINTR(func() error {
		fd, err = syscall.Open(path, pidFileFlags, 0)
		return err
	})
	return fd, err
}

// kill has no process handle to signal through here, and no start time to
// give isLeaf; see killByPID.
func kill(pid int, _ func(start time.Time) bool) bool { return killByPID(pid) }

// lockDir opens the directory at path without following a symlink and
// takes flock(2) on it, so that no other PruneDead, in this process or
// another, works on it at once; the lock dies with its holder. Where the
// file system cannot lock, work goes on unlocked.
func lockDir(path, _ string) (unlock func(), err error) {
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	err = ignoringEINTR(func() error { return syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) })
	if errors.Is(err, syscall.EWOULDBLOCK) {
		syscall.Close(fd)
		return nil, errBusy
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
