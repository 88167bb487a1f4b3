//go:build windows

package slotgc

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// probeScope is empty: Windows answers each inspection from the process
// handle.
type probeScope struct{}

const (
	// processQueryLimitedInformation is granted even for protected
	// processes, unlike PROCESS_QUERY_INFORMATION
	// (https://learn.microsoft.com/windows/win32/procthread/process-security-and-access-rights).
	processQueryLimitedInformation = 0x1000

	// errorInvalidParameter is OpenProcess's answer for a pid that names no
	// process.
	errorInvalidParameter = syscall.Errno(87)

	// errorSharingViolation is the answer to an open or rename of a file
	// some other handle holds without sharing it that way.
	errorSharingViolation = syscall.Errno(32)
)

// errNotDir is not syscall.ENOTDIR, which on Windows is
// ERROR_PATH_NOT_FOUND and so reads as fs.ErrNotExist.
var errNotDir = errors.New("not a directory")

// openDir opens the directory at path, after checking that it is one:
// under Wine, reading a file as a directory yields no entries and no error.
func openDir(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err != nil || !info.IsDir() {
		f.Close()
		if err == nil {
			err = &fs.PathError{Op: "open", Path: path, Err: errNotDir}
		}
		return nil, err
	}
	return f, nil
}

// readPIDFile reads the pid file of the swarm entry named entry and returns
// the pid it names and the time it was last written; its owner is not
// asked for (-1), as Windows names owners by SID, not uid.
//
// The file is opened with FILE_FLAG_OPEN_REPARSE_POINT, which os.OpenFile
// passes on from the high bits of its flag
// (https://learn.microsoft.com/windows/win32/api/fileapi/nf-fileapi-createfilew),
// so a symlink or junction is opened itself, never followed, as O_NOFOLLOW
// does on Unix; its type is then checked on the open handle before
// anything is read.
func readPIDFile(sw *swarmDir, entry string) (pid int, written time.Time, owner int, err error) {
	path := sw.pidFilePath(entry)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return 0, time.Time{}, -1, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, time.Time{}, -1, err
	}
	if err := checkPIDFileInfo(info.Mode().IsRegular(), info.Size()); err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	var buf [maxPIDFileSize + 1]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, time.Time{}, -1, err
	}
	pid, err = parsePIDContent(buf[:n])
	if err != nil {
		return 0, time.Time{}, -1, &fs.PathError{Op: "parse", Path: path, Err: err}
	}
	return pid, info.ModTime(), -1, nil
}

// inspect tells whether pid is gone and, if ps is not nil, when the
// process was created (zero if that cannot be read).
//
// os.Process.Signal(0) cannot serve here: on Windows it implements only
// os.Kill and fails for every other signal
// (https://pkg.go.dev/os#Process.Signal), so the process is opened and its
// handle asked instead. A process that exists but cannot be opened (access
// denied) counts as alive.
func inspect(pid int, ps *probeScope) (gone bool, start time.Time, why error) {
	h, err := syscall.OpenProcess(processQueryLimitedInformation|syscall.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return errors.Is(err, errorInvalidParameter), time.Time{}, err
	}
	defer syscall.CloseHandle(h)
	if exited(h, 0) {
		return true, time.Time{}, nil
	}
	if ps == nil {
		return false, time.Time{}, nil
	}
	start, err = creationTime(h)
	return false, start, err
}

// creationTime returns when the process behind h was created.
func creationTime(h syscall.Handle) (time.Time, error) {
	var created, exitTime, kernelTime, userTime syscall.Filetime
	if err := syscall.GetProcessTimes(h, &created, &exitTime, &kernelTime, &userTime); err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, created.Nanoseconds()), nil
}

// kill terminates the process through one handle opened at the start, so a
// pid recycled meanwhile is never touched, and waits on that handle. With
// isLeaf, the creation time of the process behind the handle is asked
// about first; one isLeaf rejects is left alone (see judged).
func kill(pid int, isLeaf func(candidate) error) (bool, error) {
	h, err := syscall.OpenProcess(syscall.PROCESS_TERMINATE|syscall.SYNCHRONIZE|processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return errors.Is(err, errorInvalidParameter), nil
	}
	defer syscall.CloseHandle(h)
	if exited(h, 0) {
		return true, nil
	}
	if isLeaf != nil {
		start, err := creationTime(h)
		if err != nil {
			return false, unidentifiedError(pid, err)
		}
		if err := isLeaf(candidate{start: start, uid: -1}); err != nil {
			return judged(pid, err)
		}
	}
	if err := syscall.TerminateProcess(h, 1); err != nil {
		// Terminating a process that is already exiting is refused.
		return exited(h, killSettle), nil
	}
	return exited(h, killGrace), nil
}

// exited waits up to limit for the process handle to be signalled, which
// it is once the process has exited.
func exited(h syscall.Handle, limit time.Duration) bool {
	event, err := syscall.WaitForSingleObject(h, uint32(limit.Milliseconds()))
	return err == nil && event == syscall.WAIT_OBJECT_0
}
