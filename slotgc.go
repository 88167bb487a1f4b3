package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Layout of a workspace, relative to the workspace directory.
const (
	// SwarmDir holds one directory per slot, unless StateDirEnv relocates
	// it; see SwarmPath.
	SwarmDir = ".bones/swarm"
	// StateDirEnv names the environment variable with which the swarm CLI
	// (from its 0.11 release) moves a workspace's whole state directory,
	// .bones, out of the workspace. See SwarmPath.
	StateDirEnv = "BONES_DIR"
	// PIDFile is the file, inside a slot directory, that the leaf writes its
	// pid into.
	PIDFile = "leaf.pid"
	// TrashPrefix starts the names PruneDead gives slots it has detached and
	// is removing. Entries of the swarm directory with this prefix are never
	// slots.
	TrashPrefix = ".slotgc-prune."
)

const (
	// maxPIDFileSize bounds what is read from a pid file. A pid needs at most
	// ten digits; the rest leaves room for whitespace around them.
	maxPIDFileSize = 64

	// startTolerance is how much later than its pid file's modification time
	// a process may have started and still count as the leaf that wrote it.
	// It absorbs timestamp granularity (FAT keeps file times to 2 seconds,
	// /proc start times to 10ms) and small clock slew.
	startTolerance = 5 * time.Second

	// killGrace is how long Kill waits after the polite request before it
	// forces the process down; killSettle is how long it then waits for the
	// forced exit to show.
	killGrace  = 2 * time.Second
	killSettle = 1 * time.Second
)

// State is the verdict a scan reaches on one slot directory.
type State int

// The states of a slot. Gone and Reused are dead; Live is alive; a slot in
// NoPIDFile or BadPIDFile has no verdict and is left alone by DeadSlots,
// LiveSlots and PruneDead.
const (
	// Live: the pid file names a process that exists and may be the leaf.
	Live State = iota + 1
	// Gone: no such process, or (Linux, Windows) it has exited and only a
	// zombie or a handle remains.
	Gone
	// Reused: a process with that pid exists but started after the pid file
	// was last written, beyond the tolerance: the pid now names a stranger.
	Reused
	// NoPIDFile: the slot has no pid file (yet, or any more).
	NoPIDFile
	// BadPIDFile: the pid file is there but unusable: not a regular file,
	// too large, unreadable, or not a decimal pid in 2..2³¹-1.
	BadPIDFile
)

var stateNames = [...]string{
	Live:       "live",
	Gone:       "gone",
	Reused:     "reused",
	NoPIDFile:  "no-pid-file",
	BadPIDFile: "bad-pid-file",
}

// String returns the state's stable, lower-case name, as used by the
// slotgc command: live, gone, reused, no-pid-file or bad-pid-file.
func (s State) String() string {
	if s < Live || int(s) >= len(stateNames) {
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
	return stateNames[s]
}

// Dead reports whether the state is Gone or Reused.
func (s State) Dead() bool { return s == Gone || s == Reused }

// Slot is a slot directory whose pid file names a live leaf.
type Slot struct {
	Name string
	PID  int
}

// SlotStatus is what Scan found out about one slot directory.
type SlotStatus struct {
	// Name is the slot directory's name under the swarm directory.
	Name string
	// PID is the pid from the pid file, or 0 when State is NoPIDFile or
	// BadPIDFile.
	PID int
	// State is the verdict.
	State State
	// Err says why the pid file is missing or unusable; nil otherwise.
	Err error
}

// SwarmPath returns the swarm directory that Scan, DeadSlots, LiveSlots and
// PruneDead read for workspaceDir, by the swarm CLI's rule: when the
// environment variable StateDirEnv (BONES_DIR) is set and not empty, the
// state directory is its value made absolute (filepath.Abs, so a relative
// value is taken from the current working directory; the value as given if
// that fails) and the swarm directory is "swarm" inside it, whatever
// workspaceDir is; otherwise it is <workspaceDir>/.bones/swarm. The path is
// not checked: the operator owns it. The environment is read on every
// call.
func SwarmPath(workspaceDir string) string {
	stateDir := os.Getenv(StateDirEnv)
	if stateDir == "" {
		return filepath.Join(workspaceDir, SwarmDir)
	}
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	return filepath.Join(stateDir, "swarm")
}

// Scan reads every slot directory of the workspace and classifies it. The
// result is sorted by name and holds one entry per real directory directly
// under the swarm directory, SwarmPath(workspaceDir); files, symlinks and
// PruneDead's own entries there are not slots. A missing swarm directory
// yields nil, nil; any other failure to read it is an error naming the
// path. (On Windows a .bones that is a file also reads as missing: Windows
// reports the path beneath it as not found.)
//
// A pid file is usable when it is a regular file (a symlink, FIFO, device or
// directory is not) of at most 64 bytes whose content, with ASCII whitespace
// trimmed, is a decimal number from 2 to 2³¹-1. It is never followed, never
// read past 64 bytes and never blocked on: it is opened without following
// symlinks (on Windows, junctions too) and, on Unix, without blocking, and
// its type is checked on the open file before anything is read, so a FIFO
// or device there is opened but never read.
//
// The verdict on a usable pid differs by system. Linux and Windows see a
// zombie or exited process as Gone and detect Reused pids, from /proc start
// times and process creation times. macOS and the BSDs have neither in the
// standard library: there a zombie is Live until reaped, and a reused pid
// is Live. See Alive for how liveness is asked on each. On Linux a process
// that works in the slot or holds a file of it open is never taken for a
// stranger that reused the pid, whatever the clocks say (see the package
// doc, Verdicts); that is looked into only when the time rule alone would
// say Reused.
//
// Scan, DeadSlots and LiveSlots only read: they take the pid files' times
// to be stamped by a clock that agrees with this machine's. On a network
// or shared file system (NFS, SMB, virtiofs, 9p) the server stamps them,
// and a server clock more than 5 seconds behind makes live leaves look
// reused; PruneDead measures that offset before it removes anything.
func Scan(workspaceDir string) ([]SlotStatus, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	statuses, _ := sw.classifyAll(entries)
	return statuses, nil
}

// swarmDir is an open swarm directory. Where the system allows (Linux), pid
// files are opened relative to it, which spares the kernel walking the
// whole path again for every slot.
type swarmDir struct {
	path string
	f    *os.File
	fd   uintptr

	// checkFileClock asks that no slot be called Reused while the swarm
	// directory's file system stamps times by a clock that disagrees with
	// this one; fileClock holds what was measured, once.
	checkFileClock bool
	fileClock      struct {
		measured, agrees bool
	}
}

// swarmEntry is an entry of the swarm directory: its name, and whether it
// is a real directory (not a symlink to one).
type swarmEntry struct {
	name  string
	isDir bool
}

// openSwarm opens the swarm directory and reads its entries, sorted by
// name. A missing swarm directory yields a nil swarmDir and no error.
func openSwarm(path string) (*swarmDir, []swarmEntry, error) {
	f, err := openDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("slotgc: read swarm directory: %w", err)
	}
	sw := &swarmDir{path: path, f: f, fd: f.Fd()}
	entries, err := readSwarmEntries(sw)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("slotgc: read swarm directory: %w", err)
	}
	slices.SortFunc(entries, func(a, b swarmEntry) int { return strings.Compare(a.name, b.name) })
	return sw, entries, nil
}

func (sw *swarmDir) close() { sw.f.Close() }

// classifyAll classifies the slot directories among entries, and lists the
// trash entries PruneDead left there. Files and symlinks are skipped.
func (sw *swarmDir) classifyAll(entries []swarmEntry) (statuses []SlotStatus, trash []string) {
	statuses = make([]SlotStatus, 0, len(entries))
	var ps probeScope
	for _, e := range entries {
		switch name := e.name; {
		case !e.isDir:
		case strings.HasPrefix(name, TrashPrefix):
			trash = append(trash, name)
		default:
			statuses = append(statuses, sw.classify(name, &ps))
		}
	}
	return statuses, trash
}

// classify reaches the verdict on the entry of the swarm directory named
// entry.
func (sw *swarmDir) classify(entry string, ps *probeScope) SlotStatus {
	pid, written, err := readPIDFile(sw, entry)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return SlotStatus{Name: entry, State: NoPIDFile, Err: err}
	case err != nil:
		return SlotStatus{Name: entry, State: BadPIDFile, Err: err}
	}
	gone, start := inspect(pid, ps)
	state := Live
	switch {
	case gone:
		state = Gone
	case reused(start, written) && !sw.mayUseEntry(entry, pid) && sw.fileClockAgrees():
		state = Reused
	}
	return SlotStatus{Name: entry, PID: pid, State: state}
}

// pidFilePath returns the path of the pid file of an entry, for messages.
func (sw *swarmDir) pidFilePath(entry string) string {
	return filepath.Join(sw.path, entry, PIDFile)
}

// fileClockAgrees reports whether the swarm directory's file system stamps
// file times by a clock within the tolerance of this one, where that is
// asked for (PruneDead). On a network or shared file system (NFS, SMB,
// virtiofs, 9p) the server's clock stamps the pid file; one more than 5
// seconds behind would make every live leaf look reused. The offset is
// measured once, on a file made and removed in the swarm directory; a
// failure to measure counts as disagreement.
func (sw *swarmDir) fileClockAgrees() bool {
	if !sw.checkFileClock {
		return true
	}
	if !sw.fileClock.measured {
		offset, err := sw.fileClockOffset()
		sw.fileClock.measured = true
		sw.fileClock.agrees = err == nil && offset.Abs() <= startTolerance
	}
	return sw.fileClock.agrees
}

// trashName returns a new TrashPrefix name, so that no scan takes the entry
// for a slot: kind, this process's pid and a random suffix.
func trashName(kind string) string {
	return TrashPrefix + kind + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(rand.Uint64(), 36)
}

// clockProbeName returns the name of the file that measures the swarm
// directory's clock.
func clockProbeName() string { return trashName("clock.") }

// testHookClockProbe, when set by a test, is called with the path of the
// clock probe file right after it is made, before its time is read.
var testHookClockProbe func(path string)

// DeadSlots returns the names, sorted, of the slots whose pid file is usable
// and names a process that is gone or whose pid was reused. Slots without a
// usable pid file are never reported. A missing swarm directory yields
// nil, nil. What counts as gone or reused differs by system; see Scan.
func DeadSlots(workspaceDir string) ([]string, error) {
	statuses, err := Scan(workspaceDir)
	var dead []string
	for _, s := range statuses {
		if s.State.Dead() {
			dead = append(dead, s.Name)
		}
	}
	return dead, err
}

// LiveSlots returns the slots, sorted by name, whose pid file is usable and
// names a live process. Every slot with a usable pid file is in exactly one
// of DeadSlots and LiveSlots. A missing swarm directory yields nil, nil. On
// macOS and the BSDs, zombies and reused pids are among the live; see Scan.
func LiveSlots(workspaceDir string) ([]Slot, error) {
	statuses, err := Scan(workspaceDir)
	var live []Slot
	for _, s := range statuses {
		if s.State == Live {
			live = append(live, Slot{Name: s.Name, PID: s.PID})
		}
	}
	return live, err
}

// PruneDead removes the directory tree of every dead slot (see DeadSlots)
// and returns the names removed, sorted. It takes nothing that is not
// garbage:
//
//   - Each slot is opened and locked before anything else, so several
//     PruneDead calls, in one process or many, may run at once and never
//     work on the same slot together.
//   - Each is checked again right before it goes, detached by renaming it
//     to a TrashPrefix name inside the swarm directory, and checked once
//     more there; a slot that came back to life in between is renamed
//     back, never replacing a slot that took its name meanwhile. So a
//     concurrent creator of the same slot name never meets a half-deleted
//     tree.
//   - A slot that holds a mount point, or is one, is not removed at all: it
//     stays whole at its name, and its error wraps ErrMountInside and names
//     the mount point. Unmount it first.
//   - A slot that some process still uses (its working or root directory is
//     in the slot, or it holds a file of the slot open) is not removed: an
//     orphaned job its dead leaf started, a new leaf that has not written
//     its pid file yet. Its error wraps ErrInUse and names the processes.
//     DeadSlots still reports it: its leaf is gone.
//   - No slot is called Reused, and so removed for that, while the swarm
//     directory's file system stamps times by a clock more than 5 seconds
//     off this one's (a file server's): the offset is measured once per
//     call, on a file made and removed in the swarm directory, when the
//     time rule first says Reused.
//   - A tree is removed without following any symlink in it; where the
//     caller owns a directory it may not write or read (0555, as Go's
//     module cache leaves them, or 0000), that directory is made usable
//     (u+rwx) first. What another user owns is never changed.
//
// A TrashPrefix entry that no running PruneDead holds (one that crashed,
// or failed to remove a tree) is finished by the next PruneDead when it is
// surely garbage: it has no pid file, or its pid file names a dead process.
// Any other is left in place, with an error.
//
// A failure on one slot does not stop the others: err joins one *SlotError
// per failed slot (or trash entry), which names it and wraps the cause, so
// errors.Is(err, fs.ErrPermission) works; the names removed are returned
// with it. An error that holds no *SlotError means the swarm directory
// itself could not be read. A missing swarm directory yields nil, nil.
//
// Which slots are dead differs by system; see Scan. So do the guards:
//
//   - Linux: every change goes through the descriptor of the swarm
//     directory opened first (renameat2, unlinkat, openat2), so a swarm
//     directory swapped for a symlink steers nothing; mount points come
//     from /proc/self/mountinfo, and the removal walk refuses to cross a
//     mount (openat2's RESOLVE_NO_XDEV; before Linux 5.6, a change of
//     device or of the mount id in /proc/self/fdinfo); the
//     processes using a slot come from one pass over /proc per call, which
//     cannot see into another user's processes unless run as root
//     (https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html).
//   - Other Unix systems: paths are resolved again for each step; a mount
//     point is told by a change of device; there is no view of which
//     processes use a directory, so that guard is absent.
//   - Windows: a directory some process holds open (as its working
//     directory, or a file in it opened without FILE_SHARE_DELETE) cannot
//     be renamed (tried again for 200ms, as a scan holds a pid file open
//     for a moment), so such a slot fails with ErrInUse and stays whole;
//     junctions and symlinks in a tree are removed as links, never
//     followed. PruneDead calls on one swarm directory take turns, holding
//     a file there, TrashPrefix+"lock", open with no sharing: Windows has
//     no lock on a directory that dies with its holder.
func PruneDead(workspaceDir string) ([]string, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	unlock, err := sw.lockForPrune()
	if err != nil {
		return nil, fmt.Errorf("slotgc: prune: %w", err)
	}
	defer unlock()
	sw.checkFileClock = true
	statuses, trash := sw.classifyAll(entries)
	var guard pruneGuard
	var removed []string
	var errs []error
	for _, s := range statuses {
		if !s.State.Dead() {
			continue
		}
		ok, err := sw.prune(s.Name, &guard)
		if err != nil {
			errs = append(errs, &SlotError{Slot: s.Name, Err: err})
		}
		if ok {
			removed = append(removed, s.Name)
		}
	}
	for _, name := range trash {
		if err := sw.finishLeftover(name, &guard); err != nil {
			errs = append(errs, &SlotError{Slot: name, Err: err})
		}
	}
	errs = append(errs, guard.uninspectedError())
	return removed, errors.Join(errs...)
}

// Detached returns the entries of the swarm directory that PruneDead
// detached and has not finished removing, sorted by name: trees a running
// PruneDead is removing, and leftovers of one that crashed or could not
// finish, which the next PruneDead finishes if it can (see PruneDead). Each
// is described as Scan describes a slot, from the pid file inside it. A
// missing swarm directory yields nil, nil.
func Detached(workspaceDir string) ([]SlotStatus, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	var detached []SlotStatus
	var ps probeScope
	for _, e := range entries {
		if e.isDir && strings.HasPrefix(e.name, TrashPrefix) {
			detached = append(detached, sw.classify(e.name, &ps))
		}
	}
	return detached, nil
}

// Users returns the processes that use each of the named slot directories
// (their working or root directory is in the slot, or they hold a file of
// it open), the way PruneDead finds them before it removes a slot; a slot
// no process uses has no key. On Linux that is one pass over /proc for the
// whole call; a process of another user's is seen only by root. Other
// systems give no such view: there Users finds none. A slot that cannot be
// opened, or holds a mount point, makes an error naming it; the others
// are still answered.
func Users(workspaceDir string, slots ...string) (map[string][]Process, error) {
	sw, _, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	var guard pruneGuard
	users := make(map[string][]Process)
	var errs []error
	for _, slot := range slots {
		found, err := guard.users(sw, slot)
		if err != nil {
			errs = append(errs, fmt.Errorf("slotgc: slot %q: %w", slot, err))
		}
		if len(found) > 0 {
			users[slot] = found
		}
	}
	errs = append(errs, guard.uninspectedError())
	return users, errors.Join(errs...)
}

var (
	// ErrMountInside is the cause PruneDead gives for a slot it keeps
	// because a mount point is inside it (or it is one).
	ErrMountInside = errors.New("a mount point is inside; unmount it first")
	// ErrInUse is the cause PruneDead gives for a dead slot it keeps
	// because some process still uses it.
	ErrInUse = errors.New("in use")
)

// errBusy says another PruneDead holds an entry of the swarm directory.
var errBusy = errors.New("another PruneDead is at work on it")

// mountInsideError names the mount points found in a tree.
func mountInsideError(points []string) error {
	return fmt.Errorf("%w: %s", ErrMountInside, strings.Join(points, ", "))
}

// Process is a process found using a slot: its pid and command name.
type Process struct {
	PID     int
	Command string
}

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Command) }

// prune removes the slot if it is still dead and no guard refuses,
// reporting whether it did. A slot that is no longer there, no longer
// dead, or held by another PruneDead is not an error: another PruneDead,
// or its owner, got to it first.
func (sw *swarmDir) prune(slot string, guard *pruneGuard) (bool, error) {
	lock, err := sw.lockEntry(slot)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBusy):
		return false, nil
	case err != nil:
		return false, err
	}
	defer lock.release()
	var ps probeScope
	if !sw.classify(slot, &ps).State.Dead() {
		return false, nil
	}
	if err := guard.check(sw, lock, slot); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // its owner removed it while it was being checked
		}
		return false, err
	}
	trash := trashName("")
	if err := sw.renameEntry(slot, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("detach: %w", err)
	}
	if !lock.is(sw, trash) || !sw.classify(trash, &ps).State.Dead() {
		return false, sw.restore(trash, slot)
	}
	if err := sw.removeLocked(lock, trash); err != nil {
		return false, fmt.Errorf("remove detached tree %s (the next PruneDead retries): %w", filepath.Join(sw.path, trash), err)
	}
	return true, nil
}

// restore puts back a slot that came back to life after it was detached,
// or a directory that took its name between the lock and the rename.
func (sw *swarmDir) restore(trashName, slot string) error {
	trash := filepath.Join(sw.path, trashName)
	err := sw.restoreEntry(trashName, slot)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("slot came back to life while being pruned and a new one took its name; its tree is kept at %s", trash)
	}
	return fmt.Errorf("slot came back to life while being pruned; its tree is kept at %s: %w", trash, err)
}

// finishLeftover removes a trash entry that no PruneDead is at work on, if
// it is surely garbage.
func (sw *swarmDir) finishLeftover(name string, guard *pruneGuard) error {
	lock, err := sw.lockEntry(name)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBusy):
		return nil
	case err != nil:
		return err
	}
	defer lock.release()
	path := filepath.Join(sw.path, name)
	var ps probeScope
	switch st := sw.classify(name, &ps); {
	case st.State == Live:
		return fmt.Errorf("detached tree %s holds live pid %d; left in place", path, st.PID)
	case st.State == BadPIDFile:
		return fmt.Errorf("detached tree %s has a pid file that cannot tell whether it is garbage; left in place: %w", path, st.Err)
	}
	if err := guard.check(sw, lock, name); err != nil {
		return fmt.Errorf("detached tree %s: %w", path, err)
	}
	if err := sw.removeLocked(lock, name); err != nil {
		return fmt.Errorf("finish removing detached tree %s: %w", path, err)
	}
	return nil
}

// SlotError is PruneDead's error for one slot directory, or for one of its
// own TrashPrefix entries, that it could not remove.
type SlotError struct {
	Slot string // the entry's name in the swarm directory
	Err  error
}

func (e *SlotError) Error() string { return fmt.Sprintf("slotgc: prune slot %q: %v", e.Slot, e.Err) }

func (e *SlotError) Unwrap() error { return e.Err }

// Alive reports whether pid names a process that has not exited. A process
// of another user counts as alive. Pids outside 1..2³¹-1 are never alive
// (kill(2) reads 0 and -1 as a process group and every process).
//
// Alive has no pid file to compare start times against, so it cannot tell a
// reused pid; Scan can.
//
// On Linux a zombie (exited, not yet reaped) is not alive, unless /proc
// belongs to another pid namespace (/proc/self does not name the caller):
// then /proc is not asked, and any process kill(2) finds is alive. On
// other Unix systems a zombie counts as alive until its parent reaps it,
// because the standard library offers no cheap way to see the process
// state there. On Windows a process whose handle is signalled (it has
// exited) is not alive; a process that cannot even be opened for querying
// counts as alive.
func Alive(pid int) bool {
	if !validPID(pid) {
		return false
	}
	gone, _ := inspect(pid, nil)
	return !gone
}

// validPID reports whether pid can name a single process: kill(2) reads 0
// as the caller's process group and negative pids as groups (-1: every
// process), and pids are 32-bit signed on Unix and 32-bit on Windows.
func validPID(pid int) bool {
	return pid >= 1 && pid <= math.MaxInt32
}

// Kill ends the process pid and reports whether it is gone.
//
// A pid below 1 is reported gone without any signal, since kill(2) would
// read it as a process group (0) or every process (-1); likewise a pid above
// 2³¹-1, which no process can have. Pid 1 and the caller's own pid are never
// signalled and yield false. A process that is already gone yields true.
// Otherwise Kill asks the process to stop, waits up to 2 seconds for it to
// exit, then forces it and waits briefly; it returns true iff the process is
// gone. A zombie counts as gone on Linux and Windows.
//
// On Linux every signal goes through one pidfd opened at the start, so a pid
// recycled while Kill waits is never signalled; Kill wakes on the pidfd the
// moment the process exits. The id of a thread that is not a process's main
// thread yields false there, unsignalled, since kill(2) would signal the
// thread's whole process. Out of file descriptors (EMFILE, ENFILE), Kill
// waits up to 2 seconds for one to open the pidfd with, then gives up and
// yields false, rather than signal the bare pid, which might be recycled
// meanwhile. Where pidfd_open is unavailable (Linux before 5.3, or a
// sandbox that forbids it) and on other Unix systems, Kill signals the pid
// with kill(2) and polls with a backoff starting at 100µs; there a zombie
// is only seen as gone once reaped. The request to stop is SIGTERM
// and the force SIGKILL.
//
// On Windows, which has no SIGTERM, Kill terminates the process through one
// handle opened at the start and waits on that handle for the exit.
func Kill(pid int) bool {
	switch {
	case !validPID(pid):
		return true
	case pid == 1 || pid == os.Getpid():
		return false
	}
	return kill(pid, nil)
}

// KillSlot ends the leaf of slot s, as LiveSlots found it, and reports
// whether it is gone; it is Kill made safe against the pid being recycled
// between the scan and the signal. It reads the slot's pid file again
// (an error if that fails, or if the file no longer names s.PID: the slot
// has a new leaf, which is not signalled), opens a handle to the process,
// and only then checks, on the process behind the handle, that it is the
// leaf: it started no later than 5 seconds after the pid file was last
// written, or (Linux) it uses the slot. A stranger that took the pid is
// never signalled, and the leaf counts as gone. The refusals of Kill (pids
// 0, -1, 1, the caller) hold here too.
//
// The handle is a pidfd on Linux and a process handle on Windows. macOS and
// the BSDs have neither, nor a start time: there KillSlot signals the pid
// as Kill does.
func KillSlot(workspaceDir string, s Slot) (bool, error) {
	switch {
	case !validPID(s.PID):
		return true, nil
	case s.PID == 1 || s.PID == os.Getpid():
		return false, nil
	}
	path := SwarmPath(workspaceDir)
	f, err := openDir(path)
	if err != nil {
		return false, fmt.Errorf("slotgc: stop slot %q: %w", s.Name, err)
	}
	defer f.Close()
	sw := &swarmDir{path: path, f: f, fd: f.Fd()}
	pid, written, err := readPIDFile(sw, s.Name)
	switch {
	case err != nil:
		return false, fmt.Errorf("slotgc: stop slot %q: %w", s.Name, err)
	case pid != s.PID:
		return false, fmt.Errorf("slotgc: stop slot %q: %w: it names pid %d, not %d", s.Name, ErrPIDFileChanged, pid, s.PID)
	}
	return kill(pid, func(start time.Time) bool {
		return !reused(start, written) || sw.usesEntry(s.Name, pid)
	}), nil
}

// ErrPIDFileChanged is KillSlot's cause when the slot's pid file no longer
// names the pid it was asked to stop.
var ErrPIDFileChanged = errors.New("the slot's pid file has changed")

// parsePID parses a pid file's content: ASCII whitespace around decimal
// digits naming a pid from 2 to 2³¹-1.
func parsePID(content []byte) (int, error) {
	digits := trimASCIISpace(content)
	if len(digits) == 0 {
		return 0, errEmptyPIDFile
	}
	// Counted in 64 bits whatever int's width: the check after each digit
	// keeps the count below 2³¹·10, so it can never wrap around, as a
	// 32-bit int would for 4294967964 (2³² + 668), read as 668.
	var pid uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errNotAPID
		}
		pid = pid*10 + uint64(c-'0')
		if pid > math.MaxInt32 {
			return 0, errPIDRange
		}
	}
	if pid < 2 {
		return 0, errPIDRange
	}
	return int(pid), nil
}

var (
	errEmptyPIDFile = errors.New("pid file is empty")
	errNotAPID      = errors.New("pid file does not hold a decimal number")
	errPIDRange     = errors.New("pid file names a pid outside 2..2147483647")
	errNotRegular   = errors.New("pid file is not a regular file")
	errTooLarge     = errors.New("pid file is larger than 64 bytes")
)

func trimASCIISpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// reused reports whether a process that started at start cannot be the
// leaf that wrote its pid file at written. A zero start (unknown) is never
// reused.
func reused(start, written time.Time) bool {
	return !start.IsZero() && start.After(written.Add(startTolerance))
}

// checkPIDFileInfo applies the rules a pid file's metadata must meet.
func checkPIDFileInfo(regular bool, size int64) error {
	switch {
	case !regular:
		return errNotRegular
	case size > maxPIDFileSize:
		return errTooLarge
	}
	return nil
}

// parsePIDContent checks and parses what was read from a pid file.
func parsePIDContent(content []byte) (int, error) {
	if len(content) > maxPIDFileSize {
		return 0, errTooLarge
	}
	return parsePID(content)
}

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
