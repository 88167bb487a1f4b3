//go:build unix && !linux

package slotgc

import (
	"syscall"
	"time"
)

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

// modTime is not needed where there is no start time to compare it with.
func modTime(*syscall.Stat_t) time.Time { return time.Time{} }
