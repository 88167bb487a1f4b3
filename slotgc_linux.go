//go:build linux

package slotgc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// probeScope caches, for one scan, what every probe in it shares: the boot
// time that /proc start times count from, and whether /proc shows this
// process's own pid namespace.
type probeScope struct {
	bootTime     time.Time
	bootTimeRead bool
	procOurs     bool
	procChecked  bool
}

// userHZ is the unit of the start time in /proc/<pid>/stat. USER_HZ is 100
// on every architecture Go supports
// (https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html, field 22).
const userHZ = 100

func modTime(st *syscall.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix())
}

// inspectExisting reads /proc/<pid>/stat of a process that exists.
//
// A zombie is gone, except a thread-group leader that exited while other
// threads still run: it shows state Z too, but the process lives on, and
// its thread count says so. A process whose stat cannot be read (it exited
// meanwhile, or /proc is mounted with hidepid) counts as alive.
//
// A /proc mounted for another pid namespace (after unshare -p without a
// fresh mount of /proc, as in some containers) describes other processes
// under the same numbers; where /proc/self does not name this process,
// /proc is not asked at all and an existing process is alive.
func inspectExisting(pid int, ps *probeScope) (gone bool, start time.Time) {
	if !ps.procIsOurs() {
		return false, time.Time{}
	}
	st, err := readProcStat(pid)
	switch {
	case err != nil:
		return false, time.Time{}
	case st.exited():
		return true, time.Time{}
	case ps == nil:
		return false, time.Time{}
	}
	boot, ok := ps.boot()
	if !ok {
		return false, time.Time{}
	}
	return false, boot.Add(time.Duration(st.startTicks) * (time.Second / userHZ))
}

// procStat is what slotgc needs of /proc/<pid>/stat.
type procStat struct {
	state      byte
	threads    int
	startTicks uint64
}

// exited reports whether the whole process has exited: it is dead (X) or
// a zombie (Z) with no thread left running.
func (st procStat) exited() bool {
	return st.state == 'X' || st.state == 'Z' && st.threads <= 1
}

func readProcStat(pid int) (procStat, error) {
	var pathBuf [32]byte
	path := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	path = append(path, "/stat\x00"...)
	fd, err := openat(atFDCWD, path, syscall.O_RDONLY|syscall.O_CLOEXEC)
	if err != nil {
		return procStat{}, err
	}
	defer syscall.Close(fd)
	// The command name is at most 64 bytes and the 49 numbers after it
	// rarely reach 700; 1 KiB holds the fields up to the start time.
	var buf [1024]byte
	n, err := readFD(fd, buf[:])
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(buf[:n])
}

// readSwarmEntries reads the swarm directory with getdents64(2) and parses
// the records itself, allocating nothing per entry but its name; the os
// package allocates a DirEntry per entry besides.
func readSwarmEntries(sw *swarmDir) ([]swarmEntry, error) {
	buf := make([]byte, 32<<10)
	var entries []swarmEntry
	for {
		n, err := syscall.ReadDirent(int(sw.fd), buf)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "getdents64", Path: sw.path, Err: err}
		case n <= 0:
			return entries, nil
		}
		entries, err = appendDirents(entries, buf[:n], int(sw.fd))
		if err != nil {
			return nil, &fs.PathError{Op: "getdents64", Path: sw.path, Err: err}
		}
	}
}

var errDirent = errors.New("malformed directory record")

// Types of linux_dirent64 records (d_type).
const (
	dtUnknown = 0
	dtDir     = 4
)

// appendDirents appends the entries of the linux_dirent64 records in buf,
// read from the open directory dirfd. Where the file system did not record
// an entry's type (DT_UNKNOWN), the entry is looked at through dirfd.
func appendDirents(entries []swarmEntry, buf []byte, dirfd int) ([]swarmEntry, error) {
	err := walkDirents(buf, func(name string, _ uint64, typ byte) {
		e := swarmEntry{name: name, isDir: typ == dtDir}
		if typ == dtUnknown {
			e.isDir = isDirAt(dirfd, name)
		}
		entries = append(entries, e)
	})
	return entries, err
}

// walkDirents calls each for every linux_dirent64 record in buf
// (https://man7.org/linux/man-pages/man2/getdents.2.html) but "." and "..",
// with its name, inode number and type. The name is passed as a string, a
// copy: a slice of buf would make buf escape to the heap through each.
func walkDirents(buf []byte, each func(name string, ino uint64, typ byte)) error {
	const (
		reclenOffset = 16 // after d_ino and d_off, 8 bytes each
		typeOffset   = 18
		nameOffset   = 19
	)
	for len(buf) > 0 {
		if len(buf) < nameOffset {
			return errDirent
		}
		reclen := int(binary.NativeEndian.Uint16(buf[reclenOffset:]))
		if reclen <= nameOffset || reclen > len(buf) {
			return errDirent
		}
		record := buf[:reclen]
		buf = buf[reclen:]
		name := record[nameOffset:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		each(string(name), binary.NativeEndian.Uint64(record), record[typeOffset])
	}
	return nil
}

// atFDCWD makes openat resolve a relative path from the working directory;
// for an absolute one it does not matter.
const atFDCWD = -0x64

// openPIDFile opens the pid file of a swarm entry relative to the swarm
// directory.
func openPIDFile(sw *swarmDir, entry string) (int, error) {
	// NAME_MAX is 255: the path fits unless the name is not a real entry.
	var pathBuf [256 + len("/"+PIDFile+"\x00")]byte
	path := append(append(pathBuf[:0], entry...), "/"+PIDFile+"\x00"...)
	return openat(int(sw.fd), path, pidFileFlags)
}

// openat is openat(2) on a NUL-terminated path held in a byte slice:
// syscall.Openat copies its string argument to the heap on every call,
// which is most of what a scan allocates per slot.
func openat(dirfd int, path []byte, flags int) (int, error) {
	for {
		fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags), 0, 0, 0)
		switch {
		case errno == 0:
			return int(fd), nil
		case !errors.Is(errno, syscall.EINTR):
			return -1, errno
		}
	}
}

var errProcStat = errors.New("malformed /proc/<pid>/stat")

// parseProcStat picks the state (field 3), the thread count (field 20) and
// the start time (field 22) out of a /proc/<pid>/stat line. The command name
// in parentheses (field 2) may hold spaces and parentheses, so fields are
// counted from its last closing parenthesis.
func parseProcStat(line []byte) (procStat, error) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, errProcStat
	}
	var state, threads, start []byte
	rest := line[i+1:]
	for field := 3; field <= 22; field++ {
		rest = bytes.TrimLeft(rest, " \n")
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return procStat{}, errProcStat
		}
		switch field {
		case 3:
			state = rest[:end]
		case 20:
			threads = rest[:end]
		case 22:
			start = rest[:end]
		}
		rest = rest[end:]
	}
	n, err1 := strconv.Atoi(string(threads))
	ticks, err2 := strconv.ParseUint(string(start), 10, 64)
	if len(state) != 1 || err1 != nil || err2 != nil {
		return procStat{}, errProcStat
	}
	return procStat{state: state[0], threads: n, startTicks: ticks}, nil
}

// procIsOurs reports whether /proc shows this process's pid namespace:
// whether /proc/self names os.Getpid(). It is asked once per scan, and on
// every call without a scan (ps nil).
func (ps *probeScope) procIsOurs() bool {
	if ps != nil && ps.procChecked {
		return ps.procOurs
	}
	ours := procSelfIs(os.Getpid())
	if ps != nil {
		ps.procOurs, ps.procChecked = ours, true
	}
	return ours
}

// procSelfIs reports whether the /proc/self link reads pid. It allocates
// nothing: it runs once in every scan that finds a live process.
func procSelfIs(pid int) bool {
	path := [...]byte{'/', 'p', 'r', 'o', 'c', '/', 's', 'e', 'l', 'f', 0}
	var link, want [20]byte
	cwd := atFDCWD
	n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(cwd), uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&link[0])), uintptr(len(link)), 0, 0)
	return errno == 0 && string(link[:n]) == string(strconv.AppendInt(want[:0], int64(pid), 10))
}

// boot returns the wall-clock time of boot, read once per scan.
func (ps *probeScope) boot() (time.Time, bool) {
	if !ps.bootTimeRead {
		ps.bootTimeRead = true
		ps.bootTime = readBootTime()
	}
	return ps.bootTime, !ps.bootTime.IsZero()
}

// clockBoottime is CLOCK_BOOTTIME, the clock /proc start times count on
// (https://man7.org/linux/man-pages/man2/clock_gettime.2.html).
const clockBoottime = 7

// readBootTime derives the boot time from the wall clock and
// CLOCK_BOOTTIME, as the kernel does for the btime line of /proc/stat, but
// without reading that file, whose per-CPU lines cost more than the rest of
// a small scan; inside a time namespace it also gets the namespace's own
// offset, as /proc start times do.
func readBootTime() time.Time {
	var sinceBoot syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&sinceBoot)), 0); errno != 0 {
		return time.Time{}
	}
	// Round(0) drops the monotonic reading: boot times are compared with
	// file times, which are wall-clock only.
	return time.Now().Round(0).Add(-time.Duration(sinceBoot.Nano()))
}

// The pidfd system calls are numbered alike on every Linux architecture
// but MIPS, whose ABIs count from 4000 (o32) and 5000 (n64); see
// https://man7.org/linux/man-pages/man2/syscall.2.html.
var (
	sysPidfdSendSignal = syscallBase() + 424
	sysPidfdOpen       = syscallBase() + 434
)

func syscallBase() uintptr {
	switch runtime.GOARCH {
	case "mips", "mipsle":
		return 4000
	case "mips64", "mips64le":
		return 5000
	}
	return 0
}

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
// is open: its start time is read from /proc and then, by a null signal
// through the pidfd, shown to be that of the process still behind it. One
// that isLeaf rejects is a stranger holding a recycled pid: it is left
// alone, and the leaf counts as gone.
func kill(pid int, isLeaf func(start time.Time) bool) bool {
	fd, errno := openPidfd(pid)
	switch {
	case errors.Is(errno, syscall.ESRCH):
		return true
	case errors.Is(errno, syscall.EINVAL), errors.Is(errno, syscall.ENOENT),
		errors.Is(errno, syscall.EMFILE), errors.Is(errno, syscall.ENFILE):
		return false
	case errno != 0:
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
	signal := func(sig syscall.Signal) error {
		if _, _, errno := syscall.Syscall(sysPidfdSendSignal, fd, uintptr(sig), 0); errno != 0 {
			return errno
		}
		return nil
	}
	var ps *probeScope
	if isLeaf != nil {
		ps = new(probeScope)
	}
	gone, start := inspect(pid, ps)
	switch {
	case gone:
		return true
	case isLeaf != nil && errors.Is(signal(0), syscall.ESRCH):
		return true // exited since: the start time read may be another's
	case isLeaf != nil && !isLeaf(start):
		return true
	}
	return escalate(signal, func(limit time.Duration) bool { return waitReadable(pidfd, limit) })
}

// openPidfd opens a pidfd for pid, waiting with a backoff, up to
// killGrace, while the process or the system is out of descriptors.
func openPidfd(pid int) (uintptr, syscall.Errno) {
	var fd uintptr
	var errno syscall.Errno
	pollUntil(func() bool {
		fd, _, errno = syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
		return errno != syscall.EMFILE && errno != syscall.ENFILE
	}, killGrace)
	return fd, errno
}

// killUnchecked is killByPID after asking isLeaf, if given, about the
// process's start time: without a pidfd the pid could be recycled between
// the two.
func killUnchecked(pid int, isLeaf func(start time.Time) bool) bool {
	if isLeaf != nil {
		var ps probeScope
		if gone, start := inspect(pid, &ps); gone || !isLeaf(start) {
			return true
		}
	}
	return killByPID(pid)
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
	const pollIn = 0x1
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: pollIn}
	var noWait syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&noWait)), 0, 0, 0)
	return errno == 0 && n == 1
}
