//go:build windows

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// a file in it open (os.Open shares no delete); a scan that reads a pid file
// holds one for a moment, so the rename is tried again for up to
// renameRetry. A directory still held then is in use: the error wraps
// ErrInUse.
func renameDir(from, to string) error {
	var err error
	pollUntil(func() bool {
		err = os.Rename(from, to)
		return !errors.Is(err, errorSharingViolation) && !errors.Is(err, fs.ErrPermission)
	}, renameRetry)
	if errors.Is(err, errorSharingViolation) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (a file in it is open): %w", ErrInUse, err)
	}
	return err
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
