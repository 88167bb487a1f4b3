//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// kill signals through one pidfd and waits on it, so a pid recycled during
// the wait is never signalled and the exit is seen the moment it happens.
// pidfd_open refuses the id of a thread that does not lead its process,
// with EINVAL or, on recent kernels, ENOENT
// (https://man7.org/linux/man-pages/man2/pidfd_open.2.html); kill(2) would
// signal that thread's whole process, so such an id is left alone. Out of
// descriptors (EMFILE, ENFILE), kill waits for one to come free, and gives
// up unsignalled after killGrace rather than signal the bare pid. Where
// pidfd_open fails for any other reason but ESRCH (Linux before 5.3,
// seccomp), kill falls back to the bare pid.
//
// With isLeaf, the process behind the pidfd is asked about once the pidfd
// is open: its start time and owner are read from /proc and then, by a
// null signal through the pidfd, shown to be those of the process still
// behind it. One isLeaf rejects is left alone (see judged).
func kill(pid int, isLeaf func(candidate) error) (bool, error) {
	fd, err := openPidfd(pid)
	switch {
	case errors.Is(err, syscall.ESRCH):
		return true, nil
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOENT):
		return false, fmt.Errorf("pid %d is a thread, not a process; not signalled: %w", pid, err)
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return false, fmt.Errorf("no file descriptor for a pidfd of pid %d; not signalled: %w", pid, err)
	case err != nil:
		return killUnchecked(pid, isLeaf)
	}
	// A non-blocking descriptor is one the runtime poller takes, so waiting
	// parks a goroutine rather than a thread.
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		syscall.Close(int(fd))
		return killUnchecked(pid, isLeaf)
	}
	pidfd := os.NewFile(fd, "pidfd")
	defer pidfd.Close()
	signal := func(sig syscall.Signal) error { return pidfdSendSignal(fd, sig) }
	var ps *probeScope
	if isLeaf != nil {
		ps = new(probeScope)
	}
	gone, start, why := inspect(pid, ps)
	var uid int
	if isLeaf != nil && why == nil {
		uid, why = processOwner(pid)
	}
	switch {
	case gone:
		return true, nil
	case isLeaf == nil:
	case errors.Is(signal(0), syscall.ESRCH):
		return true, nil // exited since: what was read may be another's
	case why != nil:
		return false, unidentifiedError(pid, why)
	default:
		if err := isLeaf(candidate{start, uid}); err != nil {
			return judged(pid, err)
		}
	}
	return escalate(signal, func(limit time.Duration) bool { return waitReadable(pidfd, limit) }), nil
}

// openPidfd opens a pidfd for pid, waiting with a backoff, up to
// killGrace, while the process or the system is out of descriptors.
func openPidfd(pid int) (uintptr, error) {
	var fd uintptr
	var err error
	pollUntil(func() bool {
		fd, err = pidfdOpen(pid)
		return !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE)
	}, killGrace)
	return fd, err
}

// killUnchecked is killByPID after asking isLeaf, if given, about the
// process's start time: without a pidfd the pid could be recycled between
// the two.
func killUnchecked(pid int, isLeaf func(candidate) error) (bool, error) {
	if isLeaf != nil {
		var ps probeScope
		gone, start, why := inspect(pid, &ps)
		var uid int
		if why == nil {
			uid, why = processOwner(pid)
		}
		switch {
		case gone:
			return true, nil
		case why != nil:
			return false, unidentifiedError(pid, why)
		}
		if err := isLeaf(candidate{start, uid}); err != nil {
			return judged(pid, err)
		}
	}
	return killByPID(pid), nil
}

// waitReadable reports whether pidfd became readable, which it does once
// the process has exited (zombie or reaped), within limit.
func waitReadable(pidfd *os.File, limit time.Duration) bool {
	conn, err := pidfd.SyscallConn()
	if err != nil || pidfd.SetReadDeadline(time.Now().Add(limit)) != nil {
		return false
	}
	return conn.Read(pollsReadable) == nil
}

// pollsReadable asks poll(2), without waiting, whether fd is readable. The
// runtime poller only wakes a waiter on an edge, so an exit that happened
// before the wait began has to be seen this way.
func pollsReadable(fd uintptr) bool {
	fds := []pollFd{{fd: int32(fd), events: pollIn}}
	var noWait syscall.Timespec
	n, err := ppoll(fds, &noWait)
	return err == nil && n == 1
}
