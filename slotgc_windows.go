//go:build windows

package slotgc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
// the pid it names and the time it was last written.
//
// The file is opened with FILE_FLAG_OPEN_REPARSE_POINT, which os.OpenFile
// passes on from the high bits of its flag
// (https://learn.microsoft.com/windows/win32/api/fileapi/nf-fileapi-createfilew),
// so a symlink or junction is opened itself, never followed, as O_NOFOLLOW
// does on Unix; its type is then checked on the open handle before
// anything is read.
func readPIDFile(sw *swarmDir, entry string) (int, time.Time, error) {
	path := sw.pidFilePath(entry)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, time.Time{}, err
	}
	if err := checkPIDFileInfo(info.Mode().IsRegular(), info.Size()); err != nil {
		return 0, time.Time{}, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	var buf [maxPIDFileSize + 1]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, time.Time{}, err
	}
	pid, err := parsePIDContent(buf[:n])
	if err != nil {
		return 0, time.Time{}, &fs.PathError{Op: "parse", Path: path, Err: err}
	}
	return pid, info.ModTime(), nil
}

// inspect tells whether pid is gone and, if ps is not nil, when the
// process was created (zero if that cannot be read).
//
// os.Process.Signal(0) cannot serve here: on Windows it implements only
// os.Kill and fails for every other signal
// (https://pkg.go.dev/os#Process.Signal), so the process is opened and its
// handle asked instead. A process that exists but cannot be opened (access
// denied) counts as alive.
func inspect(pid int, ps *probeScope) (gone bool, start time.Time) {
	h, err := syscall.OpenProcess(processQueryLimitedInformation|syscall.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return errors.Is(err, errorInvalidParameter), time.Time{}
	}
	defer syscall.CloseHandle(h)
	if exited(h, 0) {
		return true, time.Time{}
	}
	var created, exitTime, kernelTime, userTime syscall.Filetime
	if ps == nil || syscall.GetProcessTimes(h, &created, &exitTime, &kernelTime, &userTime) != nil {
		return false, time.Time{}
	}
	return false, time.Unix(0, created.Nanoseconds())
}

// kill terminates the process through one handle opened at the start, so a
// pid recycled meanwhile is never touched, and waits on that handle. With
// isLeaf, the creation time of the process behind the handle is asked
// about first; one isLeaf rejects is a stranger holding a recycled pid: it
// is left alone, and the leaf counts as gone.
func kill(pid int, isLeaf func(start time.Time) bool) bool {
	h, err := syscall.OpenProcess(syscall.PROCESS_TERMINATE|syscall.SYNCHRONIZE|processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return errors.Is(err, errorInvalidParameter)
	}
	defer syscall.CloseHandle(h)
	if exited(h, 0) {
		return true
	}
	if isLeaf != nil {
		var created, exitTime, kernelTime, userTime syscall.Filetime
		var start time.Time
		if syscall.GetProcessTimes(h, &created, &exitTime, &kernelTime, &userTime) == nil {
			start = time.Unix(0, created.Nanoseconds())
		}
		if !isLeaf(start) {
			return true
		}
	}
	if err := syscall.TerminateProcess(h, 1); err != nil {
		// Terminating a process that is already exiting is refused.
		return exited(h, killSettle)
	}
	return exited(h, killGrace)
}

// exited waits up to limit for the process handle to be signalled, which
// it is once the process has exited.
func exited(h syscall.Handle, limit time.Duration) bool {
	event, err := syscall.WaitForSingleObject(h, uint32(limit.Milliseconds()))
	return err == nil && event == syscall.WAIT_OBJECT_0
}

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

// lockDir has nothing to do: lockForPrune keeps every other PruneDead out
// of the whole swarm directory.
func lockDir(string, string) (unlock func(), err error) { return func() {}, nil }

// sameDevice is true: a mount inside a tree on Windows is a junction or a
// mounted folder, a reparse point that removeTree removes as a link.
func sameDevice(_, _ fs.FileInfo) bool { return true }

// makeDirUsable does nothing: Windows has no owner permission bits that
// would keep the owner from removing a directory's entries.
func makeDirUsable(string, fs.FileInfo) {}

// errorSharingViolation is the answer to a rename of a directory while some
// process has a file in it open without FILE_SHARE_DELETE.
const errorSharingViolation = syscall.Errno(32)

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
