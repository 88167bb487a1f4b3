package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The scan's mechanics come from each system (slotgc_unix.go,
// slotgc_windows.go, proc_linux.go, proc_other.go, dirent_linux.go,
// dirent_other.go, prune_linux.go, prune_path.go, users_linux.go), besides
// readPIDFile (see pidfile.go):
//
//	type probeScope
//	type dirEntry struct{ name string; isDir bool; ... }
//	openDir(path string) (*os.File, error)
//	readSwarmEntries(sw *swarmDir) ([]dirEntry, error)
//	inspect(pid int, ps *probeScope) (gone bool, start time.Time, why error)
//	(*swarmDir).usesEntry(entry string, pid int) bool
//	(*swarmDir).fileClockOffset() (time.Duration, error)

// Scan reads every slot directory of the workspace and classifies it. The
// result is sorted by name and holds one entry per real directory directly
// under the swarm directory, SwarmPath(workspaceDir); files, symlinks and
// PruneDead's own entries there are not slots. A missing swarm directory
// yields nil, nil; any other failure to read it is an error naming the
// path.
//
// A pid file is usable when it is a regular file (a symlink, FIFO, device or
// directory is not) of at most 64 bytes whose content, with ASCII whitespace
// trimmed, is a decimal number from 2 to 2³¹-1. It is never followed, never
// read past 64 bytes and never blocked on: it is opened without following
// symlinks and without blocking, and its type is checked on the open file
// before anything is read, so a FIFO or device there is opened but never
// read.
//
// A usable pid file is Gone when no process has the pid (or only its
// zombie remains), Reused when the process there started more than 5
// seconds after the pid file was last written and does not use the slot,
// and Live otherwise; the package doc's Verdicts and Systems sections say
// what each system can see.
//
// Scan only reads: it takes the pid files' times to be stamped by a clock
// that agrees with this machine's, which a file server's may not (see
// PruneDead, which measures that).
func Scan(workspaceDir string) ([]SlotStatus, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	statuses, _ := sw.classifyAll(entries)
	return statuses, nil
}

// DeadSlots returns the names, sorted, of the slots whose pid file is usable
// and names a process that is gone or whose pid was reused (see Scan).
// Slots without a usable pid file are never reported. A missing swarm
// directory yields nil, nil.
func DeadSlots(workspaceDir string) ([]string, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	var dead []string
	var ps probeScope
	for _, e := range entries {
		if e.isSlot() {
			if s := sw.classify(e.name, &ps); s.State.Dead() {
				dead = append(dead, s.Name)
			}
		}
	}
	return dead, nil
}

// LiveSlots returns the slots, sorted by name, whose pid file is usable and
// names a live process (see Scan). Every slot with a usable pid file is in
// exactly one of DeadSlots and LiveSlots. A missing swarm directory yields
// nil, nil.
func LiveSlots(workspaceDir string) ([]Slot, error) {
	sw, entries, err := openSwarm(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	var live []Slot
	var ps probeScope
	for _, e := range entries {
		if e.isSlot() {
			if s := sw.classify(e.name, &ps); s.State == Live {
				live = append(live, Slot{Name: s.Name, PID: s.PID})
			}
		}
	}
	return live, nil
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
		if e.isTrash() {
			detached = append(detached, sw.classify(e.name, &ps))
		}
	}
	return detached, nil
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

// isSlot reports whether the swarm directory's entry e is a slot.
func (e dirEntry) isSlot() bool { return e.isDir && !strings.HasPrefix(e.name, TrashPrefix) }

// isTrash reports whether the swarm directory's entry e is a tree PruneDead
// detached.
func (e dirEntry) isTrash() bool { return e.isDir && strings.HasPrefix(e.name, TrashPrefix) }

// openSwarm opens the swarm directory at path and reads its entries,
// sorted by name. A missing swarm directory yields a nil swarmDir and no
// error.
func openSwarm(path string) (*swarmDir, []dirEntry, error) {
	sw, err := openSwarmDir(path)
	if sw == nil || err != nil {
		return nil, nil, err
	}
	entries, err := readSwarmEntries(sw)
	if err != nil {
		sw.close()
		return nil, nil, fmt.Errorf("slotgc: read swarm directory: %w", err)
	}
	slices.SortFunc(entries, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return sw, entries, nil
}

// openSwarmDir opens the swarm directory at path without reading it. A
// missing swarm directory yields nil, nil.
func openSwarmDir(path string) (*swarmDir, error) {
	f, err := openDir(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("slotgc: read swarm directory: %w", err)
	}
	return &swarmDir{path: path, f: f, fd: f.Fd()}, nil
}

func (sw *swarmDir) close() { sw.f.Close() }

// classifyAll classifies the slot directories among entries, and lists the
// trash entries PruneDead left there. Files and symlinks are skipped.
func (sw *swarmDir) classifyAll(entries []dirEntry) (statuses []SlotStatus, trash []string) {
	statuses = make([]SlotStatus, 0, len(entries))
	var ps probeScope
	for _, e := range entries {
		switch {
		case e.isSlot():
			statuses = append(statuses, sw.classify(e.name, &ps))
		case e.isTrash():
			trash = append(trash, e.name)
		}
	}
	return statuses, trash
}

// classify reaches the verdict on the entry of the swarm directory named
// entry.
func (sw *swarmDir) classify(entry string, ps *probeScope) SlotStatus {
	pid, written, _, err := readPIDFile(sw, entry)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return SlotStatus{Name: entry, State: NoPIDFile, Err: err}
	case err != nil:
		return SlotStatus{Name: entry, State: BadPIDFile, Err: err}
	}
	gone, start, _ := inspect(pid, ps)
	state := Live
	switch {
	case gone:
		state = Gone
	case reused(start, written) && !sw.mayUseEntry(entry, pid) && sw.fileClockAgrees():
		state = Reused
	}
	return SlotStatus{Name: entry, PID: pid, State: state}
}

// entryPath returns the path of an entry of the swarm directory, for
// messages.
func (sw *swarmDir) entryPath(entry string) string { return filepath.Join(sw.path, entry) }

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

// clockProbePrefix starts the names of the files that measure the swarm
// directory's clock.
const clockProbePrefix = TrashPrefix + "clock."

// clockProbeName returns the name of a new clock probe file.
func clockProbeName() string { return trashName("clock.") }

// testHookClockProbe, when set by a test, is called with the path of the
// clock probe file right after it is made, before its time is read.
var testHookClockProbe func(path string)
