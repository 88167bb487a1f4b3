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
	"time"
	"unsafe"
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

// mappings appends the files mapped by the process or thread whose /proc
// directory is dir, and reports whether it has memory at all: a kernel
// thread has none, nor does a process that has exited or whose main
// thread has.
func (r *procReader) mappings(dir procDir, files []inUse) ([]inUse, bool, error) {
	fd, err := openat(dir.fd, []byte("maps\x00"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, false, dir.error("open", "maps", err)
	}
	defer syscall.Close(fd)
	if !noMapQuery.Load() {
		queried, mapped, err := r.queryMappings(fd, files)
		if err == nil {
			return queried, mapped, nil
		}
		// Whatever the query could not answer, the text may: it is read
		// instead, from the start, and fails for itself if it must.
		if errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EINVAL) {
			noMapQuery.Store(true)
		}
	}
	mapped := false
	err = readLines(fd, r.lines, func(line []byte) {
		mapped = true
		if dev, ino, ok := parseMapsLine(line); ok && ino != 0 {
			files = r.appendMapping(files, dev, ino)
		}
	})
	if err != nil {
		return files, false, dir.error("read", "maps", err)
	}
	return files, mapped, nil
}

// appendMapping appends a mapping of inode ino on device dev, if it may be
// on the target.
func (r *procReader) appendMapping(files []inUse, dev fsDev, ino uint64) []inUse {
	if !r.target.keepsMapping(dev) {
		return files
	}
	// A file is mapped in several pieces, one after another.
	if n := len(files); n > 0 && files[n-1] == (inUse{ino: ino}) {
		return files
	}
	return append(files, inUse{ino: ino})
}

// noMapQuery is set once PROCMAP_QUERY is found missing (Linux before
// 6.11); from then on maps are read as text.
var noMapQuery atomic.Bool

// procmapQuery is struct procmap_query of linux/fs.h (Linux 6.11).
type procmapQuery struct {
	size, flags, addr, vmaStart, vmaEnd, vmaFlags, pageSize, offset, inode uint64
	devMajor, devMinor, nameSize, buildIDSize                              uint32
	nameAddr, buildIDAddr                                                  uint64
}

const (
	// procmapQueryIoctl is PROCMAP_QUERY, _IOWR('f', 17, struct
	// procmap_query): the same number on every architecture.
	procmapQueryIoctl = 0xC0686611
	// The query asks for the first file-backed mapping at or after an
	// address.
	procmapCoveringOrNext = 0x10
	procmapFileBacked     = 0x20
)

// queryMappings appends the files mapped by the process whose maps file
// is open as fd, asking for them one by one with the PROCMAP_QUERY ioctl
// (https://docs.kernel.org/filesystems/proc.html, /proc/PID/maps), which
// skips anonymous memory and makes no text: it costs half the reading of
// the text. It reports whether the process has memory at all (ESRCH
// says it has none).
func (r *procReader) queryMappings(fd int, files []inUse) ([]inUse, bool, error) {
	var next uint64
	for {
		q := procmapQuery{size: uint64(unsafe.Sizeof(procmapQuery{})), flags: procmapCoveringOrNext | procmapFileBacked, addr: next}
		err := ioctl(fd, procmapQueryIoctl, unsafe.Pointer(&q))
		switch {
		case err == nil:
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOENT):
			return files, true, nil
		case errors.Is(err, syscall.ESRCH):
			return files, false, nil
		default:
			return files, false, err
		}
		if q.inode != 0 {
			files = r.appendMapping(files, makeFSDev(uint64(q.devMajor), uint64(q.devMinor)), q.inode)
		}
		if q.vmaEnd <= next {
			return files, true, errors.New("PROCMAP_QUERY went backwards")
		}
		next = q.vmaEnd
	}
}

// threads appends what the threads of a process without memory use: a
// kernel thread and a process that has exited have one thread (the
// thread count is the link count of /proc/<pid>/task, less two), while a
// process whose main thread exited has its others.
func (r *procReader) threads(dir procDir, files []inUse) ([]inUse, error) {
	st, err := statxOf(dir.fd, []byte("task"), 0, statxNlink)
	if err != nil {
		return files, dir.error("statx", "task", err)
	}
	if st.nlink <= 3 {
		return files, nil
	}
	tasks, err := openat(dir.fd, []byte("task\x00"), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", "task", err)
	}
	defer syscall.Close(tasks)
	var tids []int
	err = readDirNames(tasks, r.dirents, func(name []byte) {
		if tid, ok := parseDecimal(name); ok && int(tid) != dir.pid {
			tids = append(tids, int(tid))
		}
	})
	if err != nil {
		return files, dir.error("getdents64", "task", err)
	}
	mapped := false
	for _, tid := range tids {
		var name [24]byte
		fd, err := openat(tasks, append(strconv.AppendInt(name[:0], int64(tid), 10), 0), oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			if gone(err) {
				continue
			}
			return files, dir.error("open", "task/"+strconv.Itoa(tid), err)
		}
		task := procDir{fd: fd, pid: dir.pid, tid: tid}
		if !mapped {
			files, mapped, err = r.mappings(task, files)
		}
		if err == nil {
			files, err = r.task(task, files)
		}
		syscall.Close(fd)
		if err != nil && !gone(err) {
			return files, err
		}
	}
	return files, nil
}

// gone reports whether err says the process, thread or descriptor asked
// about is no more.
func gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}

// task appends the working and root directories and the open files of the
// process or thread whose /proc directory is dir.
func (r *procReader) task(dir procDir, files []inUse) ([]inUse, error) {
	for _, link := range [...]string{"cwd", "root"} {
		var err error
		if files, err = r.dirLink(dir, link, files); err != nil {
			return files, err
		}
	}
	return r.openFiles(dir, files)
}

// dirLink appends the directory the link name (cwd or root) of dir leads
// to, if it is on the target. A task that has exited has none.
func (r *procReader) dirLink(dir procDir, name string, files []inUse) ([]inUse, error) {
	var path [8]byte
	fd, err := openat(dir.fd, append(append(path[:0], name...), 0), oPath|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", name, err)
	}
	defer syscall.Close(fd)
	var fdName [24]byte
	info, err := r.fdinfo(r.selfFdinfo, strconv.AppendInt(fdName[:0], int64(fd), 10))
	if err != nil {
		return files, dir.error("read fdinfo of", name, err)
	}
	if !r.keepsMount(dir, info.mnt) {
		return files, nil
	}
	if !info.hasIno {
		if info.ino, err = statxIno(fd, nil, 0); err != nil {
			return files, dir.error("statx", name, err)
		}
	}
	return append(files, inUse{ino: info.ino, dir: true}), nil
}

// openFiles appends the open files of dir that are on the target.
func (r *procReader) openFiles(dir procDir, files []inUse) ([]inUse, error) {
	fds, err := openat(dir.fd, []byte("fd\x00"), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", "fd", err)
	}
	defer syscall.Close(fds)
	var failed error
	err = readDirNames(fds, r.dirents, func(name []byte) {
		if failed != nil {
			return
		}
		var link [2]byte
		n, err := readlinkName(fds, name, link[:])
		switch {
		case gone(err):
			return // closed meanwhile
		case err != nil:
			failed = dir.error("readlink", "fd/"+string(name), err)
			return
		case n == 0 || link[0] != '/':
			return
		}
		var path [32]byte
		info, err := r.fdinfo(dir.fd, append(append(path[:0], "fdinfo/"...), name...))
		switch {
		case gone(err):
			return
		case err != nil:
			failed = dir.error("read", "fdinfo/"+string(name), err)
			return
		case !r.keepsMount(dir, info.mnt):
			return
		case !info.hasIno:
			if info.ino, err = statxIno(fds, name, 0); err != nil {
				if !gone(err) {
					failed = dir.error("statx", "fd/"+string(name), err)
				}
				return
			}
		}
		files = append(files, inUse{ino: info.ino})
	})
	if err != nil {
		return files, dir.error("getdents64", "fd", err)
	}
	return files, failed
}

// keepsMount reports whether a file reached through mount id mnt, named
// by the process or thread whose /proc directory is dir, may be on the
// target. A mount no table holds may be.
func (r *procReader) keepsMount(dir procDir, mnt uint64) bool {
	if !r.target.known {
		return true
	}
	m, ok := r.mounts.lookup(dir.fd, mnt)
	return !ok || m.dev == r.target.fs.dev
}

// fdInfo is what slotgc needs of an fdinfo file.
type fdInfo struct {
	mnt, ino uint64
	hasIno   bool
}

// fdinfo reads the fdinfo file at name, relative to the directory dir.
// Its first lines are the ones asked for, and /proc makes the whole file
// at the first read, so one read does.
func (r *procReader) fdinfo(dir int, name []byte) (fdInfo, error) {
	var path [48]byte
	if len(name) >= len(path) {
		return fdInfo{}, syscall.ENAMETOOLONG
	}
	fd, err := openat(dir, append(append(path[:0], name...), 0), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fdInfo{}, err
	}
	defer syscall.Close(fd)
	var buf [256]byte
	n, err := syscall.Read(fd, buf[:])
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf[:])
	}
	if err != nil {
		return fdInfo{}, err
	}
	return parseFdinfo(buf[:n])
}

// parseFdinfo picks the mnt_id and ino lines out of the start of an
// fdinfo file
// (https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html); a line
// cut short by the end of b is not read.
func parseFdinfo(b []byte) (fdInfo, error) {
	var info fdInfo
	hasMnt := false
	for len(b) > 0 {
		line, rest, whole := bytes.Cut(b, []byte("\n"))
		if !whole {
			break
		}
		b = rest
		if v, ok := bytes.CutPrefix(line, []byte("mnt_id:")); ok {
			info.mnt, hasMnt = parseDecimal(bytes.TrimSpace(v))
		} else if v, ok := bytes.CutPrefix(line, []byte("ino:")); ok {
			info.ino, info.hasIno = parseDecimal(bytes.TrimSpace(v))
		}
	}
	if !hasMnt {
		return info, errNoMountID
	}
	return info, nil
}

var errNoMountID = errors.New("no mnt_id line")

// statxOf is statx(2) of the file name in the directory dir, or of dir
// itself when name is empty, asking for the attributes in mask; it fails
// unless all of them are given.
func statxOf(dir int, name []byte, flags int, mask uint32) (statxT, error) {
	var buf [256]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return statxT{}, err
	}
	if len(name) == 0 {
		flags |= atEmptyPath
	}
	var st statxT
	if err := statx(dir, path, flags, mask, &st); err != nil {
		return st, err
	}
	if st.mask&mask != mask {
		return st, errStatxMask
	}
	return st, nil
}

var errStatxMask = errors.New("statx did not give what was asked")

// statxIno returns the inode number of the file name in the directory dir
// (of dir itself when name is empty), with statx's flags and
// AT_STATX_DONT_SYNC: FUSE and NFS answer from what they hold, and asked
// for the inode number alone, NFS flushes no dirty pages first.
func statxIno(dir int, name []byte, flags int) (uint64, error) {
	st, err := statxOf(dir, name, flags|atStatxDontSync, statxInoMask)
	return st.ino, err
}

// readlinkName reads the link name in the directory dir into buf,
// returning how many bytes it filled; a link longer than buf is cut short.
func readlinkName(dir int, name []byte, buf []byte) (int, error) {
	var pathBuf [64]byte
	path, err := makePath(pathBuf[:], name)
	if err != nil {
		return 0, err
	}
	return readlinkat(dir, path, buf)
}

// readLines calls each with every line, without its newline, of the file
// open as fd, reading it through buf, which must hold the longest line.
// The files read are /proc's, made as they are read: one is read to its
// end, never judged complete by a short read.
func readLines(fd int, buf []byte, each func(line []byte)) error {
	held := 0
	for {
		n, err := syscall.Read(fd, buf[held:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			if held > 0 {
				each(buf[:held])
			}
			return nil
		}
		data := buf[:held+n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			each(data[:i])
			data = data[i+1:]
		}
		held = copy(buf, data)
		if held == len(buf) {
			return errLongLine
		}
	}
}

var errLongLine = errors.New("a line longer than 64 KiB")

// readDirNames calls each with the name of every entry, but "." and "..",
// of the directory open as fd, reading it through buf.
func readDirNames(fd int, buf []byte, each func(name []byte)) error {
	for {
		n, err := syscall.ReadDirent(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n <= 0:
			return nil
		}
		records := buf[:n]
		for len(records) > 0 {
			const reclenOffset, nameOffset = 16, 19
			if len(records) < nameOffset {
				return errDirent
			}
			reclen := int(records[reclenOffset]) | int(records[reclenOffset+1])<<8
			if reclen <= nameOffset || reclen > len(records) {
				return errDirent
			}
			name := records[nameOffset:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			records = records[reclen:]
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			each(name)
		}
	}
}

// parseMapsLine picks the device and inode (fields 4 and 5) out of a
// /proc/<pid>/maps line: "start-end perms offset major:minor inode path",
// the device in hexadecimal.
func parseMapsLine(line []byte) (fsDev, uint64, bool) {
	for range 3 {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			return 0, 0, false
		}
		line = line[i+1:]
	}
	dev, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return 0, 0, false
	}
	major, minor, ok := bytes.Cut(dev, []byte(":"))
	if !ok {
		return 0, 0, false
	}
	ino, _, _ := bytes.Cut(rest, []byte(" "))
	maj, ok1 := parseHex(major)
	min, ok2 := parseHex(minor)
	n, ok3 := parseDecimal(ino)
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, false
	}
	return makeFSDev(maj, min), n, true
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// procPassLimit bounds a pass over /proc. Nothing in it asks a file
// system, but reading a process's maps waits for its memory map's lock
// (https://man7.org/linux/man-pages/man5/proc_pid_maps.5.html), which a
// thread of that process stuck in a file system could keep from it; past
// the limit the pass is left to finish on its own and every slot is kept.
// A pass takes milliseconds.
var procPassLimit = 10 * time.Second

// errPassCutShort says a pass over /proc did not finish within
// procPassLimit.
var errPassCutShort = errors.New("the pass over /proc did not finish in time")

// within runs read in a goroutine of its own and returns its result, or
// an error wrapping errPassCutShort if it takes longer than
// procPassLimit; it is then left to finish, or to wait, on its own.
// at says which pid read was at, for the message.
func within[T any](at *atomic.Int64, read func() T) (T, error) {
	done := make(chan T, 1)
	go func() { done <- read() }()
	timer := time.NewTimer(procPassLimit)
	defer timer.Stop()
	select {
	case v := <-done:
		return v, nil
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%w (%v): it was reading /proc/%d", errPassCutShort, procPassLimit, at.Load())
	}
}
