//go:build unix && !linux

package slotgc

import (
	"syscall"
	"time"
)

// probeScope is empty: these systems give nothing a scan could share.
type probeScope struct{}

// modTime is not needed where there is no start time to compare it with.
func modTime(*syscall.Stat_t) time.Time { return time.Time{} }

// inspectExisting cannot look further than kill(2) did: the standard
// library reaches a process's state and start time on these systems only
// through sysctl structures it does not export, so a zombie counts as alive
// and reuse goes undetected.
func inspectExisting(int, *probeScope) (gone bool, start time.Time) { return false, time.Time{} }

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

// kill has no process handle to signal through here; see killByPID.
func kill(pid int) bool { return killByPID(pid) }
