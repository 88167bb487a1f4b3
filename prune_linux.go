//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"
)

// Every change PruneDead makes to the disk goes through the descriptor of
// the swarm directory it opened (renameat2, unlinkat, openat2 relative to
// it), so a swarm path swapped for a symlink after the open steers nothing.

// entryLock is an entry of the swarm directory, opened (a real directory,
// not a symlink, not a mount point) and locked with flock(2), so that two
// PruneDead calls, in one process or many, never work on the same tree at
// once; the lock dies with its holder, so a crashed pruner's tree is free.
type entryLock struct {
	fd int
	// listing is what the guard's last look read of the detached tree.
	listing *dirListing
}

// device returns the device of the swarm directory.
func (sw *swarmDir) device() (uint64, error) {
	dev, _, err := dirIdentity(int(sw.fd))
	if err != nil {
		return 0, &fs.PathError{Op: "fstat", Path: sw.path, Err: err}
	}
	return dev, nil
}

// lockEntry opens and locks the entry name. A name that is no directory any
// more reads as fs.ErrNotExist; a directory that is itself a mount point is
// ErrMountInside; one another PruneDead holds is errBusy.
func (sw *swarmDir) lockEntry(name string) (*entryLock, error) {
	dev, err := sw.device()
	if err != nil {
		return nil, err
	}
	fd, err := openSubdir(int(sw.fd), name, dev)
	switch {
	case errors.Is(err, errMountPoint):
		return nil, mountInsideError([]string{sw.entryPath(name)})
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		return nil, fs.ErrNotExist
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: sw.entryPath(name), Err: err}
	}
	if err := lockExclusive(fd); err != nil {
		syscall.Close(fd)
		return nil, lockError(sw.entryPath(name), err)
	}
	return &entryLock{fd: fd}, nil
}

func (l *entryLock) release() { syscall.Close(l.fd) }

// is reports whether the entry name of the swarm directory is the locked
// directory.
func (l *entryLock) is(sw *swarmDir, name string) bool {
	dev, ino, err := sw.entryIdentity(name)
	lockedDev, lockedIno, lockedErr := dirIdentity(l.fd)
	return err == nil && lockedErr == nil && dev == lockedDev && ino == lockedIno
}

// entryIdentity returns the device and inode of the entry name of the
// swarm directory, without following it if it is a symlink.
func (sw *swarmDir) entryIdentity(name string) (dev, ino uint64, err error) {
	path, err := makePath(nil, name)
	if err != nil {
		return 0, 0, err
	}
	fd, err := openat(int(sw.fd), path, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer syscall.Close(fd)
	return dirIdentity(fd)
}

// renameEntry renames the entry from to to inside the swarm directory.
func (sw *swarmDir) renameEntry(from, to string) error {
	err := ignoringEINTR(func() error { return syscall.Renameat(int(sw.fd), from, int(sw.fd), to) })
	if err != nil {
		return &fs.PathError{Op: "renameat", Path: sw.entryPath(from), Err: err}
	}
	return nil
}

// restoreEntry renames a detached tree back to its slot name, never
// replacing whatever took that name meanwhile. Where renameat2 is missing
// (Linux before 3.15) or the file system refuses the flag, it checks that
// the name is free and renames: a directory made in between could then be
// replaced, if empty.
func (sw *swarmDir) restoreEntry(from, to string) error {
	switch err := renameExclusive(int(sw.fd), from, int(sw.fd), to); {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EEXIST):
		return fs.ErrExist
	default:
		return &fs.PathError{Op: "renameat2", Path: sw.entryPath(from), Err: err}
	}
}

// renameExclusive renames the entry from of the directory fromDir to to in
// toDir, never replacing an entry that took the name to, even an empty
// directory, as rename(2) would: that is EEXIST. RENAME_NOREPLACE does it
// in one step (https://man7.org/linux/man-pages/man2/rename.2.html);
// where renameat2 is missing (Linux before 3.15) or the file system
// refuses the flag, the name is checked and then taken, so an empty
// directory made in between could be replaced.
func renameExclusive(fromDir int, from string, toDir int, to string) error {
	fromPath, err := makePath(nil, from)
	if err != nil {
		return err
	}
	toPath, err := makePath(nil, to)
	if err != nil {
		return err
	}
	err = renameat2(fromDir, fromPath, toDir, toPath, renameNoReplace)
	if !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	if _, err := statAt(toDir, to); err == nil {
		return syscall.EEXIST
	}
	return ignoringEINTR(func() error { return syscall.Renameat(fromDir, from, toDir, to) })
}

// removeLocked removes the locked tree, now at name in the swarm
// directory: its contents through descriptors, then the directory itself.
func (sw *swarmDir) removeLocked(l *entryLock, name string) error {
	dev, _, err := dirIdentity(l.fd)
	if err != nil {
		return err
	}
	listing := l.listing
	l.listing = nil
	if err := removeTreeContents(l.fd, sw.entryPath(name), dev, true, listing); err != nil {
		if errors.Is(err, errMountPoint) {
			return fmt.Errorf("%w: %w", ErrMountInside, err)
		}
		return err
	}
	path, err := makePath(nil, name)
	if err == nil {
		err = unlinkat(int(sw.fd), path, atRemoveDir)
	}
	if err != nil {
		return &fs.PathError{Op: "unlinkat", Path: sw.entryPath(name), Err: err}
	}
	return nil
}

// removeStaleProbe removes the clock probe file name if no PruneDead holds
// it: its maker crashed before removing it. Anything but a regular file
// of that name is left alone.
func (sw *swarmDir) removeStaleProbe(name string) error {
	path, err := makePath(nil, name)
	if err != nil {
		return err
	}
	fd, err := openat(int(sw.fd), path, pidFileFlags, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return &fs.PathError{Op: "open", Path: sw.entryPath(name), Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	if err := lockExclusive(fd); err != nil {
		return lockError(sw.entryPath(name), err)
	}
	if err := unlinkat(int(sw.fd), path, 0); err != nil && !errors.Is(err, syscall.ENOENT) {
		return &fs.PathError{Op: "unlinkat", Path: sw.entryPath(name), Err: err}
	}
	return nil
}

// holdsNoFiles reports whether the locked tree holds nothing but
// directories.
func (sw *swarmDir) holdsNoFiles(l *entryLock, name string) (bool, error) {
	dev, _, err := dirIdentity(l.fd)
	if err != nil {
		return false, err
	}
	return holdsNoFiles(l.fd, dev)
}

// fileClockOffset makes a file in the swarm directory, through its
// descriptor, and returns how far the time the file system stamped on it
// is from this clock's reading just before.
func (sw *swarmDir) fileClockOffset() (time.Duration, error) {
	name := clockProbeName()
	path, err := makePath(nil, name)
	if err != nil {
		return 0, err
	}
	before := time.Now().Round(0)
	fd, err := openat(int(sw.fd), path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, &fs.PathError{Op: "openat", Path: sw.entryPath(name), Err: err}
	}
	// Held locked until its name is gone, so no other PruneDead takes it
	// for a crashed one's (see removeStaleProbe).
	defer syscall.Close(fd)
	defer unlinkat(int(sw.fd), path, 0)
	lockExclusive(fd)
	if testHookClockProbe != nil {
		testHookClockProbe(sw.entryPath(name))
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return modTime(&st).Sub(before), nil
}
