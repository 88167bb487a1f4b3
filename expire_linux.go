//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// expireEntry removes the entry name, whose record is rec, if it is the
// entry the record was made for, filling in what e reports of it. It is
// detached into the records directory first, under a TrashPrefix name, so
// that a removal cut short never leaves a half-removed entry where bones
// apply or Restore would take it; finishExpiring completes such a one. An
// entry that is gone, or is not the one recorded, only loses its record.
// One that holds a mount point, or that a process uses, before it is
// detached or after, is left in place with an error, as a slot would be
// (see pruneGuard.check and recheck); so is one on
// another file system than the swarm directory sw, where the processes
// using it cannot be told.
func (rd *recoveryDir) expireEntry(name string, rec record, e *Recovery, sw *swarmDir, guard *pruneGuard) (bool, error) {
	fd, err := openSubdir(rd.fd, name, rd.dev)
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		rd.dropStaleRecord(name)
		return false, nil
	case errors.Is(err, errMountPoint):
		return false, mountInsideError([]string{e.Path})
	case err != nil:
		return false, &fs.PathError{Op: "open", Path: e.Path, Err: err}
	}
	defer syscall.Close(fd)
	switch err := lockExclusive(fd); {
	case errors.Is(err, errBusy):
		return false, nil // a Restore or another prune has it
	case err != nil:
		return false, lockError(e.Path, err)
	}
	st, err := statAt(fd, "")
	if err != nil {
		return false, &fs.PathError{Op: "statx", Path: e.Path, Err: err}
	}
	if !rec.matches(st.id, st.mtime) {
		rd.dropStaleRecord(name)
		return false, nil
	}
	if dev, err := sw.device(); err != nil || dev != st.id.dev {
		return false, fmt.Errorf("%w: it is not on the swarm directory's file system; left in place", errCannotTell)
	}
	if err := guard.checkTree(sw, fd, e.Path, false); err != nil {
		return false, fmt.Errorf("left in place: %w", err)
	}
	e.ModTime = st.mtime
	var w treeWalk
	w.walkFD(fd, e.Path)
	e.Bytes = w.bytes
	dirfd, err := rd.records(false)
	if err != nil {
		return false, err
	}
	trash := trashName("expire.")
	trashPath := filepath.Join(rd.path, recordDirName, trash)
	if err := ignoringEINTR(func() error { return syscall.Renameat(rd.fd, name, dirfd, trash) }); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, &fs.PathError{Op: "renameat", Path: e.Path, Err: err}
	}
	if moved, err := statAt(dirfd, trash); err != nil || moved.id != st.id {
		// Not the directory locked: something renamed another in between.
		// It goes back, unless its name was taken meanwhile.
		renameExclusive(dirfd, trash, rd.fd, name)
		return false, fmt.Errorf("%s changed while it was being expired; left in place", e.Path)
	}
	// A process that came to the entry after the check goes unseen but
	// for a look once it is detached, as a slot's (pruneGuard.recheck).
	listing, err := guard.recheckTree(sw, fd, trashPath)
	if err != nil {
		if perr := renameExclusive(dirfd, trash, rd.fd, name); perr != nil {
			return false, fmt.Errorf("%w; and it could not be put back, so it is kept at %s, which a later prune removes only once nothing uses it: %v", err, trashPath, perr)
		}
		return false, err
	}
	rd.dropRecord(name)
	if err := removeTreeAt(fd, dirfd, trash, trashPath, st.id.dev, listing); err != nil {
		return false, fmt.Errorf("remove %s, detached from %s (the next prune retries): %w", trashPath, e.Path, err)
	}
	return true, nil
}

// finishExpiring removes the trees an expiry detached into the records
// directory and did not finish, unless a running prune holds them or the
// guard refuses them: one an expiry found in use once detached, and could
// not put back, is such a tree.
func (rd *recoveryDir) finishExpiring(sw *swarmDir, guard *pruneGuard) error {
	dirfd, err := rd.records(false)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := readTreeEntries(dirfd)
	if err != nil {
		return &fs.PathError{Op: "getdents64", Path: filepath.Join(rd.path, recordDirName), Err: err}
	}
	var errs []error
	for _, e := range entries {
		if !e.isDir || !isTrashName(e.name) {
			continue
		}
		path := filepath.Join(rd.path, recordDirName, e.name)
		fd, err := openSubdir(dirfd, e.name, rd.dev)
		if err != nil {
			errs = append(errs, &fs.PathError{Op: "open", Path: path, Err: err})
			continue
		}
		if lockExclusive(fd) == nil {
			if dev, err := sw.device(); err != nil || dev != rd.dev {
				errs = append(errs, fmt.Errorf("%s: %w: it is not on the swarm directory's file system; left in place", path, errCannotTell))
			} else if err := guard.checkTree(sw, fd, path, false); err != nil {
				errs = append(errs, fmt.Errorf("%s: left in place: %w", path, err))
			} else if err := removeTreeAt(fd, dirfd, e.name, path, rd.dev, nil); err != nil {
				errs = append(errs, err)
			}
		}
		syscall.Close(fd)
	}
	return errors.Join(errs...)
}

// removeTreeAt removes the tree under the open directory fd, on device
// dev, which is the entry name of the directory parentFd, and then the
// entry itself; listing is what a survey read of it (see
// removeTreeContents).
func removeTreeAt(fd, parentFd int, name, path string, dev uint64, listing *dirListing) error {
	if err := removeTreeContents(fd, path, dev, false, listing); err != nil {
		return err
	}
	p, err := makePath(nil, name)
	if err == nil {
		err = unlinkat(parentFd, p, atRemoveDir)
	}
	if err != nil {
		return &fs.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	return nil
}
