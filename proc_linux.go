//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strconv"
	"syscall"
	"time"
)

// What a scan learns of a process on Linux comes from /proc: its state,
// thread count and start time from /proc/<pid>/stat, and whether /proc
// describes this process's pid namespace at all from /proc/self.

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

// inspectExisting reads /proc/<pid>/stat of a process that exists.
//
// A zombie is gone, except a thread-group leader that exited while other
// threads still run: it shows state Z too, but the process lives on, and
// its thread count says so. A process whose stat cannot be read (it exited
// meanwhile, or /proc is mounted with hidepid) counts as alive, with no
// start time, and why says why.
//
// A /proc mounted for another pid namespace (after unshare -p without a
// fresh mount of /proc, as in some containers) describes other processes
// under the same numbers; where /proc/self does not name this process,
// /proc is not asked at all and an existing process is alive.
func inspectExisting(pid int, ps *probeScope) (gone bool, start time.Time, why error) {
	if !ps.procIsOurs() {
		return false, time.Time{}, errForeignProc
	}
	st, err := readProcStat(pid)
	switch {
	case err != nil:
		return false, time.Time{}, err
	case st.exited():
		return true, time.Time{}, nil
	case ps == nil:
		return false, time.Time{}, nil
	}
	boot, ok := ps.boot()
	if !ok {
		return false, time.Time{}, errNoBootTime
	}
	return false, boot.Add(time.Duration(st.startTicks) * (time.Second / userHZ)), nil
}

// processOwner returns the effective uid of process pid: /proc/<pid> is
// owned by it (https://man7.org/linux/man-pages/man5/proc_pid.5.html),
// unless the process is not dumpable, when /proc shows root, and a leaf
// that is not root then reads as not its pid file's writer: it is not
// signalled.
func processOwner(pid int) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid), &st); err != nil {
		return -1, err
	}
	return int(st.Uid), nil
}

var (
	errForeignProc = errors.New("/proc shows another pid namespace than this process's")
	errNoBootTime  = errors.New("the boot time cannot be read")
)

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

// readProcStat reads /proc/<pid>/stat
// (https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html).
func readProcStat(pid int) (procStat, error) {
	var pathBuf [32]byte
	path := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	path = append(path, "/stat\x00"...)
	fd, err := openat(atFDCWD, path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
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

var errProcStat = errors.New("malformed /proc/<pid>/stat")

// maxCommLen is the most the kernel writes of a command name in
// /proc/<pid>/stat (fs/proc/array.c keeps it in 64 bytes).
const maxCommLen = 64

// parseProcStat picks the state (field 3), the thread count (field 20) and
// the start time (field 22) out of a /proc/<pid>/stat line, in one pass
// over it and without allocating: the scans of a live slot call it once
// each. The command name in parentheses (field 2) may hold spaces and
// parentheses, so it ends at the last ')' within maxCommLen bytes of its
// '('; the kernel separates the fields after it by one space each.
func parseProcStat(line []byte) (procStat, error) {
	open := bytes.IndexByte(line, '(')
	if open < 0 {
		return procStat{}, errProcStat
	}
	name := line[open+1 : min(len(line), open+1+maxCommLen+1)]
	end := bytes.LastIndexByte(name, ')')
	if end < 0 {
		return procStat{}, errProcStat
	}
	rest := line[open+1+end+1:]
	var st procStat
	for field := 3; field <= 22; field++ {
		if len(rest) == 0 || rest[0] != ' ' {
			return procStat{}, errProcStat
		}
		rest = rest[1:]
		n := 0
		for n < len(rest) && rest[n] != ' ' && rest[n] != '\n' {
			n++
		}
		value := rest[:n]
		rest = rest[n:]
		var ok bool
		switch field {
		case 3:
			if ok = len(value) == 1; ok {
				st.state = value[0]
			}
		case 20:
			var threads uint64
			threads, ok = parseDecimal(value)
			ok = ok && threads <= math.MaxInt32
			st.threads = int(threads)
		case 22:
			st.startTicks, ok = parseDecimal(value)
		default:
			ok = n > 0
		}
		if !ok {
			return procStat{}, errProcStat
		}
	}
	return st, nil
}

// parseDecimal parses unsigned decimal digits that fit in 64 bits.
func parseDecimal(digits []byte) (uint64, bool) {
	if len(digits) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range digits {
		d := uint64(c - '0')
		if c < '0' || c > '9' || v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
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
	path := sysPath("/proc/self\x00")
	var link, want [20]byte
	n, err := readlinkat(atFDCWD, path, link[:])
	return err == nil && string(link[:n]) == string(strconv.AppendInt(want[:0], int64(pid), 10))
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
	if clockGettime(clockBoottime, &sinceBoot) != nil {
		return time.Time{}
	}
	// Round(0) drops the monotonic reading: boot times are compared with
	// file times, which are wall-clock only.
	return time.Now().Round(0).Add(-time.Duration(sinceBoot.Nano()))
}
