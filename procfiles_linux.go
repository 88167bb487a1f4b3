//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// What a process has in use is read from /proc without asking any file
// system but /proc itself, since a file system that stops answering (a
// FUSE daemon stuck or stopped, a hard NFS mount whose server is gone)
// would hang the caller with it, whatever workspace it works on:
//
//   - An open file is first named by readlink(2) of /proc/<pid>/fd/<n>,
//     which only prints the path the kernel keeps
//     (https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html). A
//     socket, pipe or anonymous inode (epoll, eventfd, ...) prints no path
//     and is passed over: it is on no file system a slot can be on, and
//     the fdinfo of some (epoll) waits on a lock their owner may hold
//     while it waits on a file system. For a path, /proc/<pid>/fdinfo/<n>
//     gives the mount it was opened through and its inode number
//     (https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html),
//     which the kernel has in memory.
//   - A working or root directory has no fdinfo, and stat(2) of
//     /proc/<pid>/cwd would ask its file system for the attributes. An
//     O_PATH open of the link follows it to the very directory without
//     opening it or checking permission on it
//     (https://man7.org/linux/man-pages/man2/open.2.html), and the
//     fdinfo of that descriptor, in this process's own table, gives its
//     mount and inode number as above.
//   - A mapping is read from /proc/<pid>/maps, which names the device
//     and inode of each mapped file
//     (https://man7.org/linux/man-pages/man5/proc_pid_maps.5.html): a
//     file mapped with mmap(2) stays in use after its descriptor is
//     closed. The PROCMAP_QUERY ioctl on it (Linux 6.11) gives the same
//     for the file-backed mappings alone, without making text.
//
// Only where fdinfo has no ino line (kernels before it gained one) is a
// file stat'ed, and only one on the swarm's own file system (or on a
// mount no table names), with statx(2)'s AT_STATX_DONT_SYNC and a mask of
// the inode number alone, which FUSE and NFS answer from their caches.
//
// Threads of one process share their working directory, root and file
// table unless one unshared them (clone(2) without CLONE_FS or
// CLONE_FILES, unshare(2)); /proc/<pid> shows the main thread's. When the
// main thread has exited while others run, /proc/<pid> shows no memory,
// no working directory and no files, and the process's threads are read
// one by one from /proc/<pid>/task/<tid>. A thread that unshared its
// working directory or file table while the main thread lives is not
// looked at: telling which did would cost a read of every thread of every
// process.

// inUse is one file a process has in use, named by its inode number on
// the swarm's file system.
type inUse struct {
	ino uint64
	// dir says the file is a working or root directory, which counts
	// though it is a directory; an open file or a mapping counts only
	// when it is not one.
	dir bool
}

// procTarget is the file system whose files a pass keeps.
type procTarget struct {
	fs mountInfo
	// known is false where the swarm directory's mount is in no table:
	// then every file a process uses is kept and compared by inode alone.
	known bool
}

// keepsMapping reports whether a mapping of a file on device dev may be
// of a file on the target. A file of overlayfs is mapped as the layer's
// file beneath it, and kernels that name that file in maps name its
// device, not the overlay's, so on a stacked file system the inode alone
// is compared.
func (t procTarget) keepsMapping(dev fsDev) bool {
	return !t.known || t.fs.stacked || dev == t.fs.dev
}

// procStatus is how far a process could be read.
type procStatus int

const (
	procRead       procStatus = iota // its files were read
	procGone                         // it exited meanwhile
	procForeign                      // another user's, which /proc does not open to this one
	procSealed                       // this user's own, which /proc does not open: not dumpable
	procUnreadable                   // it could not be read for another reason
)

// procReader reads what processes use, for one pass.
type procReader struct {
	proc       int // /proc, open for reading its listing
	selfFdinfo int // /proc/self/fdinfo
	mounts     *mountTable
	target     procTarget
	euid       int
	lines      []byte // maps as text and status files are read through it
	dirents    []byte
	// capsRead says ptrace holds whether this process has CAP_SYS_PTRACE.
	capsRead, ptrace bool
	// at is the pid being read, for the message of a pass cut short.
	at atomic.Int64
}

// newProcReader opens /proc for a pass that keeps the files on target.
func newProcReader(mounts *mountTable, target procTarget) (*procReader, error) {
	proc, err := openat(atFDCWD, []byte("/proc\x00"), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/proc", Err: err}
	}
	self, err := openat(proc, []byte("self/fdinfo\x00"), oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		syscall.Close(proc)
		return nil, &fs.PathError{Op: "open", Path: "/proc/self/fdinfo", Err: err}
	}
	return &procReader{
		proc: proc, selfFdinfo: self, mounts: mounts, target: target, euid: os.Geteuid(),
		lines: make([]byte, 64<<10), dirents: make([]byte, 8<<10),
	}, nil
}

func (r *procReader) close() {
	syscall.Close(r.selfFdinfo)
	syscall.Close(r.proc)
}

// procDir is an open /proc/<pid> or /proc/<pid>/task/<tid> directory.
type procDir struct {
	fd       int
	pid, tid int // tid is 0 for /proc/<pid>
}

// path names the entry name of d, for messages.
func (d procDir) path(name string) string {
	if d.tid == 0 {
		return fmt.Sprintf("/proc/%d/%s", d.pid, name)
	}
	return fmt.Sprintf("/proc/%d/task/%d/%s", d.pid, d.tid, name)
}

// procError is a failure to read from /proc: op on path failed with errno.
func (d procDir) error(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: d.path(name), Err: err}
}

// process appends to files what process pid uses on the target, and says
// how far it could be read; err says why for procUnreadable.
func (r *procReader) process(pid int, files []inUse) ([]inUse, procStatus, error) {
	r.at.Store(int64(pid))
	var name [24]byte
	fd, err := openat(r.proc, append(strconv.AppendInt(name[:0], int64(pid), 10), 0), oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, r.status(procDir{fd: -1, pid: pid}, err), procDir{pid: pid}.error("open", "", err)
	}
	defer syscall.Close(fd)
	dir := procDir{fd: fd, pid: pid}
	files, mapped, err := r.mappings(dir, files)
	if err == nil {
		if mapped {
			files, err = r.task(dir, files)
		} else {
			files, err = r.threads(dir, files)
		}
	}
	if err != nil {
		return files, r.status(dir, err), err
	}
	return files, procRead, nil
}

// status tells what a failure to read from the /proc directory dir means.
// A process that /proc does not open to this one (EACCES) belongs to
// another user, or to this one and is not dumpable or runs a
// set-user-ID, set-group-ID or file-capability program
// (https://man7.org/linux/man-pages/man2/ptrace.2.html, "Ptrace access
// mode checking"); its /proc/<pid>/status, open to all, names its users.
// A caller with CAP_SYS_PTRACE (root) may open any of those: what is shut
// to it is shut by a security module or a sandbox it runs in (Landlock,
// SELinux, AppArmor), which keeps what lies outside from it as another
// user's processes are kept from a user, and is passed over like them.
func (r *procReader) status(dir procDir, err error) procStatus {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ESRCH):
		return procGone
	case !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM):
		return procUnreadable
	case r.mayPtrace():
		return procForeign
	}
	var name [24]byte
	path := append(strconv.AppendInt(append(name[:0], "/proc/"...), int64(dir.pid), 10), "/status\x00"...)
	own := false
	if r.readStatus(path, func(line []byte) {
		if ids, ok := bytes.CutPrefix(line, []byte("Uid:")); ok {
			own = r.ownUIDs(ids)
		}
	}) != nil {
		// hidepid hides only other users' processes.
		return procForeign
	}
	if own {
		return procSealed
	}
	return procForeign
}

// mayPtrace reports, reading it once, whether this process has
// CAP_SYS_PTRACE, with which /proc opens every process to it that no
// security module keeps from it.
func (r *procReader) mayPtrace() bool {
	if !r.capsRead {
		r.capsRead = true
		const capSysPtrace = 19
		r.readStatus([]byte("/proc/self/status\x00"), func(line []byte) {
			if caps, ok := bytes.CutPrefix(line, []byte("CapEff:")); ok {
				n, ok := parseHex(bytes.TrimSpace(caps))
				r.ptrace = ok && n&(1<<capSysPtrace) != 0
			}
		})
	}
	return r.ptrace
}

// readStatus calls each with every line of the status file at path.
func (r *procReader) readStatus(path []byte, each func(line []byte)) error {
	fd, err := openat(atFDCWD, path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return readLines(fd, r.lines, each)
}

// ownUIDs reports whether the real, effective and saved user ids of a
// status Uid line are all this process's effective one: ptrace(2)'s
// access check asks that of the caller.
func (r *procReader) ownUIDs(fields []byte) bool {
	ids := bytes.Fields(fields)
	if len(ids) < 3 {
		return false
	}
	for _, id := range ids[:3] {
		if n, ok := parseDecimal(id); !ok || n != uint64(r.euid) {
			return false
		}
	}
	return true
}
