//go:build windows

package slotgc

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// lockForPrune makes PruneDead calls on one swarm directory take turns,
// in this process and across processes: the standard library has no lock
// on a directory here that dies with its holder, so the call holds a file
// of the swarm directory, TrashPrefix + "lock", open with no sharing at all
// (share mode 0), which Windows grants to one handle at a time and takes
// back when its process ends
// (https://learn.microsoft.com/windows/win32/fileio/creating-and-opening-files).
// The file is deleted when the handle closes, so it outlives no call; one
// that another call is closing, and so about to delete, refuses access
// until it is gone. A call waits for its turn up to pruneTurnWait.
func (sw *swarmDir) lockForPrune() (unlock func(), err error) {
	path := filepath.Join(sw.path, TrashPrefix+"lock")
	name, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	var h syscall.Handle
	start := time.Now()
	pollUntil(func() bool {
		h, err = syscall.CreateFile(name, syscall.GENERIC_READ|deleteAccess, 0, nil, syscall.OPEN_ALWAYS,
			syscall.FILE_ATTRIBUTE_NORMAL|fileFlagDeleteOnClose, 0)
		// Access is refused both while the file is being deleted, briefly,
		// and for good to a caller who may not write the swarm directory.
		deletePending := errors.Is(err, fs.ErrPermission) && time.Since(start) < deletePendingWait
		return !errors.Is(err, errorSharingViolation) && !deletePending
	}, pruneTurnWait)
	if err != nil {
		return nil, &fs.PathError{Op: "lock", Path: path, Err: err}
	}
	return func() { syscall.CloseHandle(h) }, nil
}

// The access right to delete a file, and the flag that deletes it when its
// last handle closes.
const (
	deleteAccess          = 0x00010000
	fileFlagDeleteOnClose = 0x04000000
)

// pruneTurnWait bounds how long PruneDead waits for another call on the
// same swarm directory to finish; deletePendingWait how long it takes a
// refused access for the lock file of a call that just finished.
const (
	pruneTurnWait     = time.Minute
	deletePendingWait = time.Second
)
