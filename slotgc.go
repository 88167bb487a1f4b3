package slotgc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// startTolerance is how much later than its pid file's modification time
// a process may have started and still count as the leaf that wrote it.
// It absorbs timestamp granularity (FAT keeps file times to 2 seconds,
// /proc start times to 10ms) and small clock slew.
const startTolerance = 5 * time.Second

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

// Process is a process found using a slot: its pid and command name.
type Process struct {
	PID     int
	Command string
}

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Command) }

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

// SlotError is the error for one entry of the swarm directory — a slot, or
// one of PruneDead's TrashPrefix entries — that a call could not finish
// with: PruneDead's for one it could not remove, Users' for one it could
// not look into, KillSlot's for a leaf it could not stop, Restore's for
// one it could not restore. Prune's errors for a recovery entry it could
// not remove once its retention passed have Op "expire" and Slot the
// entry's name in the recovery directory, or Slot "" when the recovery
// directory itself could not be read. Like
// fs.PathError it records the operation and the path along with the
// cause, which it wraps, so errors.Is(err, fs.ErrPermission) works.
type SlotError struct {
	Op   string // what was being done: "prune", "find users of", "stop", "restore", "measure" or "expire"
	Slot string // the entry's name in the swarm directory (see above for "expire")
	Path string // the entry's path
	Err  error
}

func (e *SlotError) Error() string {
	switch {
	case e.Op == opExpire && e.Slot != "":
		return fmt.Sprintf("slotgc: %s recovery entry %q: %v", e.Op, e.Slot, e.Err)
	case e.Slot == "":
		return fmt.Sprintf("slotgc: %s %s: %v", e.Op, e.Path, e.Err)
	}
	return fmt.Sprintf("slotgc: %s slot %q: %v", e.Op, e.Slot, e.Err)
}

func (e *SlotError) Unwrap() error { return e.Err }

// The operations of a SlotError.
const (
	opPrune = "prune"
	opUsers = "find users of"
	opStop  = "stop"
)

var (
	// ErrMountInside is the cause PruneDead gives for a slot it keeps
	// because a mount point is inside it (or it is one).
	ErrMountInside = errors.New("a mount point is inside; unmount it first")
	// ErrInUse is the cause PruneDead gives for a dead slot it keeps
	// because some process still uses it.
	ErrInUse = errors.New("in use")
	// ErrPIDFileChanged is KillSlot's cause when the slot's pid file no
	// longer names the pid it was asked to stop.
	ErrPIDFileChanged = errors.New("the slot's pid file has changed")
)
