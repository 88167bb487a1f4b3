//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// A tree is walked and removed through descriptors only: every directory is
// opened relative to its parent's descriptor with openat2(2), never by a
// path from the top, so no rename or symlink swapped in while the walk runs
// can steer it out of the tree
// (https://man7.org/linux/man-pages/man2/openat2.2.html).

// dirFlags open a directory of a tree for reading its entries, never
// through a symlink.
const dirFlags = syscall.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// noOpenat2 is set once openat2 is found missing (Linux before 5.6, a
// seccomp filter that refuses it, user-mode emulation); from then on
// directories are opened with openat(2), and a mount point is told by its
// device and, for a bind mount from the same file system, its mount id.
var noOpenat2 atomic.Bool

// errMountPoint says a directory met on a walk is a mount point; callers
// wrap it in ErrMountInside.
var errMountPoint = errors.New("a mount point")

// openSubdir opens the directory name inside the directory dirfd (whose
// device is dev) without following a symlink or crossing into another
// mount: crossing yields errMountPoint.
func openSubdir(dirfd int, name string, dev uint64) (int, error) {
	path, err := makePath(nil, name)
	if err != nil {
		return -1, err
	}
	if !noOpenat2.Load() {
		how := openHow{flags: dirFlags, resolve: resolveNoXdev | resolveNoSymlinks | resolveNoMagiclinks | resolveBeneath}
		fd, err := openat2(dirfd, path, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, syscall.EXDEV):
			return -1, errMountPoint
		case errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.EPERM):
			noOpenat2.Store(true)
		default:
			return -1, err
		}
	}
	fd, err := openat(dirfd, path, dirFlags, 0)
	if err != nil {
		return -1, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if uint64(st.Dev) != dev {
		syscall.Close(fd)
		return -1, errMountPoint
	}
	// A bind mount from the same file system keeps the device: only the
	// mount ids tell.
	parentMount, err := mountID(dirfd)
	if err == nil {
		var childMount string
		if childMount, err = mountID(fd); err == nil && childMount != parentMount {
			err = errMountPoint
		}
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("%w (or cannot tell: %v)", errMountPoint, err)
	}
	return fd, nil
}

// mountID returns the id of the mount the open file fd is on, from the
// mnt_id line of /proc/self/fdinfo/<fd> (Linux 3.15 and later;
// https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html).
func mountID(fd int) (string, error) {
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(info)) {
		if id, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strings.TrimSpace(id), nil
		}
	}
	return "", errors.New("no mnt_id in /proc/self/fdinfo")
}

// dirIdentity returns the device and inode of an open directory.
func dirIdentity(fd int) (dev, ino uint64, err error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// removeTreeContents removes everything inside the open directory fd, whose
// device is dev, depth first, through descriptors. It never crosses into
// another mount and never follows a symlink (a symlink is removed as
// itself). Where the caller lacks permission on a directory it owns, the
// directory is made usable (u+rwx) and the step tried again, as
// `go clean -modcache` does for Go's read-only module cache; a directory of
// another user's stays as it is and its error stands.
//
// At the top of a slot's tree (top) the pid file goes last, and only once
// everything else has gone: a pruner that crashes or fails midway leaves a
// tree whose pid file still tells that it is garbage (see finishLeftover).
func removeTreeContents(fd int, path string, dev uint64, top bool) error {
	entries, err := readTreeEntries(fd)
	if errors.Is(err, syscall.EACCES) && makeUsable(fd) {
		entries, err = readTreeEntries(fd)
	}
	if err != nil {
		return &fs.PathError{Op: "readdirent", Path: path, Err: err}
	}
	if top {
		entries = pidFileLast(entries)
	}
	var errs []error
	for _, e := range entries {
		if top && e.name == PIDFile && len(errs) > 0 {
			break
		}
		if err := removeEntry(fd, e, filepath.Join(path, e.name), dev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pidFileLast moves the pid file, if entries hold it, to their end.
func pidFileLast(entries []dirEntry) []dirEntry {
	for i, e := range entries {
		if e.name == PIDFile {
			return append(append(entries[:i:i], entries[i+1:]...), e)
		}
	}
	return entries
}

// holdsNoFiles reports whether the tree under the open directory fd, whose
// device is dev, holds nothing but directories. A directory that cannot be
// read, or a mount met on the way, is an error: it cannot tell.
func holdsNoFiles(fd int, dev uint64) (bool, error) {
	entries, err := readTreeEntries(fd)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !e.isDir {
			return false, nil
		}
		sub, err := openSubdir(fd, e.name, dev)
		if err != nil {
			return false, err
		}
		empty, err := holdsNoFiles(sub, dev)
		syscall.Close(sub)
		if !empty || err != nil {
			return false, err
		}
	}
	return true, nil
}

// removeEntry removes one entry of the open directory dirfd.
func removeEntry(dirfd int, e dirEntry, path string, dev uint64) error {
	if e.isDir {
		sub, err := openSubdir(dirfd, e.name, dev)
		if errors.Is(err, syscall.EACCES) && makeUsableAt(dirfd, e.name) {
			sub, err = openSubdir(dirfd, e.name, dev)
		}
		if err != nil {
			return &fs.PathError{Op: "open", Path: path, Err: err}
		}
		err = removeTreeContents(sub, path, dev, false)
		syscall.Close(sub)
		if err != nil {
			return err
		}
	}
	flags := 0
	if e.isDir {
		flags = atRemoveDir
	}
	name, err := makePath(nil, e.name)
	if err == nil {
		err = unlinkat(dirfd, name, flags)
	}
	if errors.Is(err, syscall.EACCES) && makeUsable(dirfd) {
		err = unlinkat(dirfd, name, flags)
	}
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return &fs.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	return nil
}

// makeUsable gives the owner of the open directory fd read, write and
// search permission on it, if the caller is that owner, and reports whether
// it did.
func makeUsable(fd int) bool {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o700 == 0o700 {
		return false
	}
	return syscall.Fchmod(fd, st.Mode&0o7777|0o700) == nil
}

// makeUsableAt is makeUsable for the directory name inside dirfd, which
// may not even be readable: it is reached by an O_PATH descriptor, which
// needs no permission on the directory itself, and its mode is changed
// through that descriptor's /proc/self/fd link, which names exactly the
// inode opened, so a symlink swapped in meanwhile is never followed.
func makeUsableAt(dirfd int, name string) bool {
	path, err := makePath(nil, name)
	if err != nil {
		return false
	}
	fd, err := openat(dirfd, path, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o700 == 0o700 {
		return false
	}
	return syscall.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), st.Mode&0o7777|0o700) == nil
}
