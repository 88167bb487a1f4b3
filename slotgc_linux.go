//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// probeScope caches, for one scan, what every probe in it shares: the boot
// time that /proc start times count from.
type probeScope struct {
	bootTime     time.Time
	bootTimeRead bool
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
func inspectExisting(pid int, ps *probeScope) (gone bool, start time.Time) {
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
	path = append(path, "/stat"...)
	f, err := os.Open(string(path))
	if err != nil {
		return procStat{}, err
	}
	defer f.Close()
	// The command name is at most 64 bytes and the 49 numbers after it
	// rarely reach 700; 1 KiB holds the fields up to the start time.
	var buf [1024]byte
	n, err := readAtMost(f, buf[:])
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(buf[:n])
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
	// fields[k] is field k+3 of proc_pid_stat(5).
	fields := bytes.Fields(line[i+1:])
	const (
		stateField   = 0
		threadsField = 17
		startField   = 19
	)
	if len(fields) <= startField || len(fields[stateField]) != 1 {
		return procStat{}, errProcStat
	}
	threads, err1 := strconv.Atoi(string(fields[threadsField]))
	start, err2 := strconv.ParseUint(string(fields[startField]), 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, errProcStat
	}
	return procStat{state: fields[stateField][0], threads: threads, startTicks: start}, nil
}

// boot returns the boot time from the btime line of /proc/stat, read once
// per scan; it moves with the wall clock, as file times do.
func (ps *probeScope) boot() (time.Time, bool) {
	if !ps.bootTimeRead {
		ps.bootTimeRead = true
		ps.bootTime = readBootTime()
	}
	return ps.bootTime, !ps.bootTime.IsZero()
}

func readBootTime() time.Time {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	_, rest, ok := bytes.Cut(data, []byte("\nbtime "))
	if !ok {
		return time.Time{}
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	secs, err := strconv.ParseInt(string(line), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(secs, 0)
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
// Where pidfd_open fails for any reason but ESRCH (Linux before 5.3,
// seccomp), it falls back to the bare pid.
func kill(pid int) bool {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	switch {
	case errors.Is(errno, syscall.ESRCH):
		return true
	case errno != 0:
		return killByPID(pid)
	}
	// A non-blocking descriptor is one the runtime poller takes, so waiting
	// parks a goroutine rather than a thread.
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		syscall.Close(int(fd))
		return killByPID(pid)
	}
	pidfd := os.NewFile(fd, "pidfd")
	defer pidfd.Close()
	if gone, _ := inspect(pid, nil); gone {
		return true
	}
	return escalate(
		func(sig syscall.Signal) error {
			if _, _, errno := syscall.Syscall(sysPidfdSendSignal, fd, uintptr(sig), 0); errno != 0 {
				return errno
			}
			return nil
		},
		func(limit time.Duration) bool { return waitReadable(pidfd, limit) })
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
