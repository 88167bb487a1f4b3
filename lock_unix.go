//go:build unix

package slotgc

import (
	"errors"
	"syscall"
)

// lockForPrune has nothing to do: each slot is locked on its own (flock on
// its directory), so PruneDead calls work side by side.
func (sw *swarmDir) lockForPrune() (unlock func(), err error) { return func() {}, nil }

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
