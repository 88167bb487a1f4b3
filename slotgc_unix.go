//go:build unix

package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// openDir opens the directory at path; O_DIRECTORY refuses anything else.
// os.Open would also try to register the descriptor with the runtime
// poller and switch it in and out of non-blocking mode: five system calls
// of no use for a directory, which a small scan feels.
func openDir(path string) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readPIDFile reads the pid file of the swarm entry named entry and returns
// the pid it names, the time it was last written and the uid that owns it.
//
// The file is opened with O_NOFOLLOW, so a symlink is refused rather than
// followed, and O_NONBLOCK, so a FIFO does not block the open, and fstat
// then refuses whatever is not a regular file before anything is read.
func readPIDFile(sw *swarmDir, entry string) (pid int, written time.Time, owner int, err error) {
	fd, err := openPIDFile(sw, entry)
	if err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "open", Path: sw.pidFilePath(entry), Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "fstat", Path: sw.pidFilePath(entry), Err: err}
	}
	if err := checkPIDFileInfo(st.Mode&syscall.S_IFMT == syscall.S_IFREG, st.Size); err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "read", Path: sw.pidFilePath(entry), Err: err}
	}
	var buf [maxPIDFileSize + 1]byte
	n, err := readFD(fd, buf[:])
	if err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "read", Path: sw.pidFilePath(entry), Err: err}
	}
	pid, err = parsePIDContent(buf[:n])
	if err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "parse", Path: sw.pidFilePath(entry), Err: err}
	}
	return pid, modTime(&st), int(st.Uid), nil
}

// pidFileFlags open a pid file for reading without following a symlink,
// blocking on a FIFO, or taking a terminal as the controlling one.
const pidFileFlags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY | syscall.O_CLOEXEC

// readFD reads fd into buf until buf is full, the end of file, or a read
// that comes up short: for the files read here, regular files and /proc
// records, a short read happens only at the end, and stopping there saves
// the read that would return nothing.
func readFD(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return n, err
		}
		asked := len(buf) - n
		n += m
		if m < asked {
			break
		}
	}
	return n, nil
}

func ignoringEINTR(call func() error) error {
	for {
		if err := call(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// inspect tells whether pid is gone and, if ps is not nil and the system
// says, when the process started (zero otherwise, and why says why where
// the system should have said).
//
// kill(pid, 0) tells whether the pid exists: ESRCH means it does not; EPERM
// means it belongs to another user and so exists
// (https://man7.org/linux/man-pages/man2/kill.2.html). Only then is the
// process's own state asked for, where the system offers it.
func inspect(pid int, ps *probeScope) (gone bool, start time.Time, why error) {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true, time.Time{}, nil
	}
	return inspectExisting(pid, ps)
}

// killByPID is Kill through kill(2) on the bare pid, for systems without
// process handles: it waits by polling, and a pid recycled while it waits
// could be signalled.
func killByPID(pid int) bool {
	gone := func() bool {
		gone, _, _ := inspect(pid, nil)
		return gone
	}
	if gone() {
		return true
	}
	return escalate(
		func(sig syscall.Signal) error { return syscall.Kill(pid, sig) },
		func(limit time.Duration) bool { return pollUntil(gone, limit) })
}

// escalate asks a process to stop with SIGTERM, gives it killGrace to exit,
// then forces it with SIGKILL and gives that killSettle to show, reporting
// whether the process is gone. A signal that fails with ESRCH means the
// process is already gone; any other failure (EPERM) that it cannot be
// killed.
func escalate(signal func(syscall.Signal) error, exited func(time.Duration) bool) bool {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, killGrace}, {syscall.SIGKILL, killSettle}} {
		if err := signal(step.sig); err != nil {
			return errors.Is(err, syscall.ESRCH)
		}
		if exited(step.wait) {
			return true
		}
	}
	return false
}
