//go:build windows

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockDir has nothing to do: lockForPrune keeps every other PruneDead out
// of the whole swarm directory.
func lockDir(string, string) (unlock func(), err error) { return func() {}, nil }

// sameDevice is true: a mount inside a tree on Windows is a junction or a
// mounted folder, a reparse point that removeTree removes as a link.
func sameDevice(_, _ fs.FileInfo) bool { return true }

// makeDirUsable does nothing: Windows has no owner permission bits that
// would keep the owner from removing a directory's entries.
func makeDirUsable(string, fs.FileInfo) {}

// renameDir renames a directory. Windows refuses while some process holds
// it (as its working directory: a sharing violation) or a file in it open
// (os.Open shares no delete: access denied); a scan that reads a pid file
// holds one for a moment, so the rename is tried again for up to
// renameRetry. A directory still held then is in use: the error wraps
// ErrInUse. Access is denied as well where the caller may not rename the
// directory at all; that is told apart by asking for the very rights a
// rename needs, on the directory (DELETE) and on its parent (to add a
// subdirectory), with every kind of sharing allowed: granted, the refusal
// came from something held open; refused, it is a permission error.
func renameDir(from, to string) error {
	var err error
	pollUntil(func() bool {
		err = os.Rename(from, to)
		return !errors.Is(err, errorSharingViolation) && !errors.Is(err, fs.ErrPermission)
	}, renameRetry)
	switch {
	case errors.Is(err, errorSharingViolation):
		return fmt.Errorf("%w (some process holds it): %w", ErrInUse, err)
	case errors.Is(err, fs.ErrPermission) && mayOpen(from, deleteAccess) && mayOpen(filepath.Dir(from), fileAddSubdirectory):
		return fmt.Errorf("%w (a file in it is open): %w", ErrInUse, err)
	}
	return err
}

// fileAddSubdirectory is the right to make a subdirectory of a directory.
const fileAddSubdirectory = 0x4

// mayOpen reports whether the file or directory at path can be opened with
// the access rights access, sharing everything, and never through a
// reparse point.
func mayOpen(path string, access uint32) bool {
	name, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return false
	}
	const shareAll = syscall.FILE_SHARE_READ | syscall.FILE_SHARE_WRITE | syscall.FILE_SHARE_DELETE
	h, err := syscall.CreateFile(name, access, shareAll, nil, syscall.OPEN_EXISTING,
		syscall.FILE_FLAG_BACKUP_SEMANTICS|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return false
	}
	syscall.CloseHandle(h)
	return true
}

// renameRetry is how long renameDir keeps trying while a directory is held.
const renameRetry = 200 * time.Millisecond

// lockFile has nothing to do: the file's maker holds it open without
// sharing delete access, which keeps any other process from removing it.
func lockFile(*os.File) error { return nil }

// removeStaleProbe removes the clock probe file name unless its maker
// still holds it open (see lockFile): then Windows refuses.
func (sw *swarmDir) removeStaleProbe(name string) error {
	err := os.Remove(sw.entryPath(name))
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, errorSharingViolation) || errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}
