package slotgc

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// Each system ends a process its own way (kill_linux.go, proc_other.go,
// slotgc_windows.go), and asks after one with the scan's inspect (see
// scan.go):
//
//	kill(pid int, isLeaf func(candidate) error) (gone bool, err error)

// candidate is what a system tells of the process behind a handle, for
// KillSlot to decide whether it is a slot's leaf: when it started and
// whose it is (its effective uid; -1 where uids are not asked, Windows).
type candidate struct {
	start time.Time
	uid   int
}

// killSettle is how long Kill waits for a forced exit to show.
const killSettle = 1 * time.Second

// killGrace is how long Kill waits after the polite request before it
// forces the process down, and how long it waits for a descriptor to open
// a pidfd with. A variable only so that tests whose subject is not the
// grace itself need not wait it out.
var killGrace = 2 * time.Second

// Alive reports whether pid names a process that has not exited. A process
// of another user counts as alive. Pids outside 1..2³¹-1 are never alive
// (kill(2) reads 0 and -1 as a process group and every process).
//
// Alive has no pid file to compare start times against, so it cannot tell a
// reused pid; Scan can. Whether a zombie or an exited process whose handle
// is still open counts as alive differs by system; see the package doc,
// Systems.
func Alive(pid int) bool {
	if !validPID(pid) {
		return false
	}
	gone, _, _ := inspect(pid, nil)
	return !gone
}

// validPID reports whether pid can name a single process: kill(2) reads 0
// as the caller's process group and negative pids as groups (-1: every
// process), and pids are 32-bit signed on Unix and 32-bit on Windows.
func validPID(pid int) bool {
	return pid >= 1 && pid <= math.MaxInt32
}

// refuseToKill tells what Kill and KillSlot answer, without any signal,
// for a pid they never signal: a pid outside 1..2³¹-1 is reported gone
// (kill(2) would read 0 as a process group and -1 as every process, and no
// process has a larger one), pid 1 and the caller's own pid not gone.
func refuseToKill(pid int) (refused, gone bool) {
	switch {
	case !validPID(pid):
		return true, true
	case pid == 1 || pid == os.Getpid():
		return true, false
	}
	return false, false
}

// Kill ends the process pid and reports whether it is gone.
//
// A pid below 1 is reported gone without any signal, since kill(2) would
// read it as a process group (0) or every process (-1); likewise a pid above
// 2³¹-1, which no process can have. Pid 1 and the caller's own pid are never
// signalled and yield false. A process that is already gone yields true.
// Otherwise Kill asks the process to stop (SIGTERM; on Windows, which has
// none, it terminates it at once), waits up to 2 seconds for it to exit,
// then forces it (SIGKILL) and waits briefly; it returns true iff the
// process is gone.
//
// Where the system has process handles (a pidfd on Linux, a process handle
// on Windows), every signal goes through one handle opened at the start,
// so a pid recycled while Kill waits is never signalled, and Kill wakes the
// moment the process exits. When no handle can be had for want of file
// descriptors, Kill waits up to 2 seconds for one, then gives up and yields
// false rather than signal the bare pid. The id of a thread that is not a
// process's main thread yields false, unsignalled, since kill(2) would
// signal the thread's whole process. Elsewhere Kill signals the bare pid
// and polls; see the package doc, Systems.
func Kill(pid int) bool {
	if refused, gone := refuseToKill(pid); refused {
		return gone
	}
	gone, _ := kill(pid, nil)
	return gone
}

// KillSlot ends the leaf of slot s, as LiveSlots found it, and reports
// whether it is gone; it is Kill made safe against the pid being recycled
// between the scan and the signal. It reads the slot's pid file again
// (an error if that fails, or if the file no longer names s.PID: the slot
// has a new leaf, which is not signalled), opens a handle to the process,
// and only then checks, on the process behind the handle, that it is the
// leaf: it could have written the pid file — it started no later than 5
// seconds after the file was last written and, where the system tells
// uids, runs as the uid that owns the file — or it uses the slot. So a
// pid file that someone else wrote, in a swarm directory others may write,
// naming a process of yours gets nothing signalled. A stranger that took the pid is never
// signalled: where it started after the pid file was written, the leaf
// counts as gone; where it only runs as another user, KillSlot cannot tell
// and says so (ErrUnidentified). The refusals of Kill (pids 0, -1,
// 1, the caller) hold here too. An error is a *SlotError.
//
// Systems without process handles or start times signal the pid as Kill
// does; see the package doc, Systems.
func KillSlot(workspaceDir string, s Slot) (bool, error) {
	if refused, gone := refuseToKill(s.PID); refused {
		return gone, nil
	}
	path := SwarmPath(workspaceDir)
	f, err := openDir(path)
	if err != nil {
		return false, &SlotError{Op: opStop, Slot: s.Name, Path: path, Err: err}
	}
	sw := &swarmDir{path: path, f: f, fd: f.Fd()}
	defer sw.close()
	pid, written, owner, err := readPIDFile(sw, s.Name)
	switch {
	case err != nil:
		return false, sw.slotError(opStop, s.Name, err)
	case pid != s.PID:
		return false, sw.slotError(opStop, s.Name, fmt.Errorf("%w: it names pid %d, not %d", ErrPIDFileChanged, pid, s.PID))
	}
	gone, err := kill(pid, func(c candidate) error {
		switch {
		case !reused(c.start, written) && (c.uid < 0 || owner < 0 || c.uid == owner):
			return nil
		case sw.usesEntry(s.Name, pid):
			return nil
		case reused(c.start, written):
			return errRecycled
		}
		return fmt.Errorf("it runs as uid %d and the pid file is uid %d's", c.uid, owner)
	})
	if err != nil {
		return false, sw.slotError(opStop, s.Name, err)
	}
	return gone, nil
}

// errRecycled is KillSlot's judgement of a process that started after the
// slot's pid file was last written and does not use the slot: the leaf is
// gone, and its pid went to a stranger.
var errRecycled = errors.New("the pid was recycled")

// ErrUnidentified is KillSlot's cause when it cannot establish that the
// process behind the slot's pid is the leaf — its start time or owner
// cannot be read, /proc describes another pid namespace, or it runs as
// another user than the one who owns the pid file — and so does not
// signal it.
var ErrUnidentified = errors.New("cannot tell whether the process is the slot's leaf; not signalled")

// pollUntil calls done with a backoff from 100µs up to 5ms until it
// returns true or limit has passed, and reports whether it returned true.
func pollUntil(done func() bool, limit time.Duration) bool {
	const (
		firstPause = 100 * time.Microsecond
		maxPause   = 5 * time.Millisecond
	)
	deadline := time.Now().Add(limit)
	for pause := firstPause; ; pause = min(2*pause, maxPause) {
		if done() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
	}
}
