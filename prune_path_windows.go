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

// holdProbe has nothing to do: the clock probe's maker holds it open
// without sharing delete access, which keeps any other process from
// removing it; dropProbe closes it first, as Windows removes no file a
// handle that does not share delete holds, even its own.
func holdProbe(*os.File) {}

func dropProbe(f *os.File, path string) {
	f.Close()
	os.Remove(path)
}

// firstHeld returns the path of a file in the tree at top that some
// process holds open, or "" if none is found. Windows refuses to rename a
// directory with such a file in it, but not everywhere (Wine allows it),
// and a detached tree with one would then be half removed before the
// removal met it. So each regular file is opened, before anything is
// removed, with delete access and no sharing at all, which Windows grants
// only while no other handle is open to it.
func firstHeld(top string) string {
	held := ""
	filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil || d.Type()&(fs.ModeSymlink|fs.ModeIrregular) != 0:
			return fs.SkipDir
		case d.IsDir() || !d.Type().IsRegular():
			return nil
		}
		if openExclusive(path) == errorSharingViolation {
			held = path
			return filepath.SkipAll
		}
		return nil
	})
	return held
}

// openExclusive opens the file at path with delete access and no sharing,
// without following a reparse point, and closes it again.
func openExclusive(path string) error {
	name, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	h, err := syscall.CreateFile(name, deleteAccess, 0, nil, syscall.OPEN_EXISTING, syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return err
	}
	return syscall.CloseHandle(h)
}

// removeStaleProbe removes the clock probe file name unless its maker
// still holds it open (see holdProbe): then Windows refuses.
func (sw *swarmDir) removeStaleProbe(name string) error {
	err := os.Remove(sw.entryPath(name))
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, errorSharingViolation) || errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}
