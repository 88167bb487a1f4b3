//go:build unix

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// lockForPrune has nothing to do: each slot is locked on its own (flock on
// its directory), so PruneDead calls work side by side.
func (sw *swarmDir) lockForPrune() (unlock func(), err error) { return func() {}, nil }

// lockError is the error for a failure to lock the entry at path: one held
// elsewhere is errBusy; any other failure (ENOLCK, EOPNOTSUPP, a security
// module's refusal, or EBADF from a network file system that locks only
// files opened for writing, as NFS does for the clock probe) leaves no way
// to tell whether another PruneDead works on it, so the entry is kept and
// the error says why.
func lockError(path string, err error) error {
	if errors.Is(err, errBusy) {
		return err
	}
	return fmt.Errorf("cannot tell whether another PruneDead is at work on it, as it cannot be locked; left in place: %w", &fs.PathError{Op: "flock", Path: path, Err: err})
}

// lockExclusive takes flock(2) on the open directory fd without waiting,
// so that no other PruneDead, in this process or another, works on it at
// once; the lock dies with its holder
// (https://man7.org/linux/man-pages/man2/flock.2.html). One held elsewhere
// is errBusy.
func lockExclusive(fd int) error {
	err := ignoringEINTR(func() error { return syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) })
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errBusy
	}
	return err
}
