package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

// PruneDead's mechanics come from each system (prune_linux.go,
// users_linux.go and removeall_parallel_linux.go on Linux, prune_path.go
// and removals_other.go elsewhere, with the locks of slotgc_unix.go and
// slotgc_windows.go):
//
//	(*swarmDir).lockForPrune() (unlock func(), err error)
//	(*swarmDir).lockEntry(name string) (*entryLock, error)
//	(*entryLock).release()
//	(*entryLock).is(sw *swarmDir, name string) bool
//	(*swarmDir).renameEntry(from, to string) error
//	(*swarmDir).restoreEntry(from, to string) error
//	(*swarmDir).removeLocked(l *entryLock, name string) error
//	(*swarmDir).holdsNoFiles(l *entryLock, name string) (bool, error)
//	(*swarmDir).removeStaleProbe(name string) error
//	(*pruneGuard).check(sw *swarmDir, l *entryLock, name string) error
//	(*pruneGuard).recheck(sw *swarmDir, detached []detachedSlot) []error
//	(*pruneGuard).forget()
//	(*pruneGuard).users(sw *swarmDir, name string) ([]Process, error)
//	(*removalGroup).run(remove func()), (*removalGroup).wait()

// PruneDead removes the directory tree of every dead slot (see DeadSlots)
// and returns the names removed, sorted. It takes nothing that is not
// garbage:
//
//   - Each slot is opened and locked before anything else, so several
//     PruneDead calls, in one process or many, may run at once and never
//     work on the same slot together.
//   - Each is checked again right before it goes, detached by renaming it
//     to a TrashPrefix name inside the swarm directory, and checked once
//     more there, with up to 15 others detached after it (on Linux that
//     look walks each tree between two passes over /proc, and the trees
//     of a batch share the passes between their walks; a slot waits for
//     others 50 ms, and for the check of one more); a slot that came
//     back to life in between is renamed back, never replacing a slot
//     that took its name meanwhile. So a concurrent creator of the same
//     slot name never meets a half-deleted tree.
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
//   - A tree is removed without following any symlink in it or crossing a
//     mount; where the caller owns a directory it may not write or read
//     (0555, as Go's module cache leaves them, or 0000), that directory is
//     made usable (u+rwx) first. What another user owns is never changed.
//     On Linux the trees of a call, and the parts of a big one, are
//     removed by several goroutines at once: the caller's and up to 2 per
//     GOMAXPROCS less one more (7 to 15), which all PruneDead calls in the
//     process share.
//
// A TrashPrefix entry that no running PruneDead holds (one that crashed,
// or failed to remove a tree) is finished by the next PruneDead when it is
// garbage by the rules for slots, whoever gave it its name: its pid file
// names a dead process, or it holds no pid file and no other file, only
// empty directories. Any other is left in place, with an error. A tree's
// pid file is removed last, so an interrupted removal leaves it judgeable.
//
// A failure on one slot does not stop the others: err joins one *SlotError
// per failed slot (or trash entry), which names it and wraps the cause, so
// errors.Is(err, fs.ErrPermission) works; the names removed are returned
// with it. Processes of the caller's own user that could not be looked
// into are named in an error wrapping ErrUninspected (see the package doc,
// Systems). Any other error that holds no *SlotError means the swarm
// directory itself could not be read, or the environment's options do not
// parse. A missing swarm directory yields nil, nil.
//
// PruneDead is Prune with the options the environment sets (see
// PruneOptionsFromEnv): with IdleEnv (SLOTGC_IDLE) and KeepEnv
// (SLOTGC_KEEP) unset or empty it removes every dead slot at once, as it
// always has; a value that does not parse is an error, and nothing is
// removed. It then returns the names of the slots it took, removed or
// recovered, and measures nothing. A detached tree whose name says its
// pruner meant to recover its worktree has the worktree recovered before
// it is removed, whatever the options (see Prune).
//
// How much of each guard a system can give is in the package doc, Systems.
func PruneDead(workspaceDir string) ([]string, error) {
	return pruneDead(workspaceDir)
}

// Prune settles every dead slot of the workspace by opts and reports, per
// slot, what it did: each is Removed, Recovered or Kept, by PruneDead's
// rules (locks, re-checks, guards; see PruneDead) and those of opts, which
// come first. With the zero PruneOptions it removes what PruneDead
// removes; PruneDead is Prune with the options of the environment (see
// PruneOptionsFromEnv), returning only the names taken.
//
// With Keep set, the recovery entries an earlier prune made more than Keep
// ago are removed at the end (see Recoveries); a failure there is in the
// error as a *SlotError whose Op is "expire". A slot kept by a failure,
// or a detached tree left in place, is in the error as with PruneDead, and
// so are the processes that could not be looked into (ErrUninspected).
// Any other error holding no *SlotError means nothing was done: the
// options are negative or the swarm directory could not be read. A
// missing swarm directory yields an empty report and no error.
func Prune(workspaceDir string, opts PruneOptions) (PruneReport, error) {
	return prune(workspaceDir, opts, true)
}

// pruneDead is PruneDead: Prune with the environment's options, which
// measures nothing, as its caller sees only names.
func pruneDead(workspaceDir string) ([]string, error) {
	opts, err := PruneOptionsFromEnv()
	if err != nil {
		return nil, fmt.Errorf("%w; nothing pruned", err)
	}
	report, err := prune(workspaceDir, opts, false)
	return report.Taken(), err
}

// slotError makes the error of operation op on the swarm entry name.
func (sw *swarmDir) slotError(op, name string, err error) *SlotError {
	return &SlotError{Op: op, Slot: name, Path: sw.entryPath(name), Err: err}
}

// errBusy says another PruneDead holds an entry of the swarm directory.
var errBusy = errors.New("another PruneDead is at work on it")

// mountInsideError names the mount points found in a tree.
func mountInsideError(points []string) error {
	return fmt.Errorf("%w: %s", ErrMountInside, strings.Join(points, ", "))
}

// trashName returns a new TrashPrefix name, so that no scan takes the entry
// for a slot: kind, this process's pid and a random suffix.
func trashName(kind string) string {
	return TrashPrefix + kind + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(rand.Uint64(), 36)
}

// prune removes the slot if it is still dead and no guard refuses, or
// keeps or recovers it as t's options say, settling t once it is done.
// The checks and the detaching happen now, in turn with the other slots';
// the look once it is detached, with the slots detached before or after
// it (see detachedBatch); the taking of the detached tree may run beside
// them (see removalGroup), its lock held until it is done.
func (sw *swarmDir) prune(slot string, guard *pruneGuard, batch *detachedBatch, removals *removalGroup, t *taking) {
	if batch.due() {
		sw.letGo(batch, guard, removals)
	}
	lock, trash, err := sw.detach(slot, guard, t)
	if lock == nil {
		if t.run.opts.Progress != nil {
			// Progress may take its time, which the batch's slots, away
			// from their names, do not wait for.
			sw.letGo(batch, guard, removals)
		}
		t.settle(sw, false, err)
		return
	}
	batch.add(detachedSlot{slot: slot, trash: trash, lock: lock, t: t})
	if batch.due() {
		sw.letGo(batch, guard, removals)
	}
}

// detachedSlot is a slot detached at its trash name, its lock held, that
// waits for the guard's look once detached.
type detachedSlot struct {
	slot, trash string
	lock        *entryLock
	t           *taking
}

// detachedBatch gathers detached slots for one look, in which the trees
// share the passes over /proc between their walks (on Linux): looked at
// alone, each would cost two, and a prune of many small slots would spend
// most of its time passing over /proc. A batch is looked at once it holds
// maxDetachedBatch slots, or its first slot has waited batchWait (then
// before the next slot's check), so that a slot a process came to use is
// not long missing from its name before it is put back.
type detachedBatch struct {
	slots []detachedSlot
	since time.Time
}

const (
	maxDetachedBatch = 16
	batchWait        = 50 * time.Millisecond
)

// add adds d to the batch.
func (b *detachedBatch) add(d detachedSlot) {
	if len(b.slots) == 0 {
		b.since = time.Now()
	}
	b.slots = append(b.slots, d)
}

// due reports whether the batch is to be looked at now.
func (b *detachedBatch) due() bool {
	return len(b.slots) >= maxDetachedBatch || len(b.slots) > 0 && time.Since(b.since) >= batchWait
}

// putBack puts the batch's slots back at their names, unlooked at, and
// releases them.
func (b *detachedBatch) putBack(sw *swarmDir) {
	for _, d := range b.slots {
		sw.restoreEntry(d.trash, d.slot)
		d.lock.release()
	}
	b.slots = nil
}

// letGo has the guard look again at the batch's slots, puts back those it
// refuses and settles them, and hands the others to removals, emptying
// the batch.
func (sw *swarmDir) letGo(batch *detachedBatch, guard *pruneGuard, removals *removalGroup) {
	detached := batch.slots
	batch.slots = nil
	if len(detached) == 0 {
		return
	}
	for i, err := range guard.recheck(sw, detached) {
		d := detached[i]
		if err != nil {
			err = sw.putBack(d.trash, d.slot, err)
			d.lock.release()
			d.t.settle(sw, false, err)
			continue
		}
		removals.run(func() {
			defer d.lock.release()
			err := d.t.take(sw, d.lock, d.slot, d.trash)
			d.t.settle(sw, err == nil, err)
		})
	}
}

// detach locks the slot and, if it is still dead, no guard refuses and
// t's options let it go, renames it to a new trash name, returning the
// lock, still held, and that name, for the guard's look once detached. A
// slot that is no longer there, no longer dead, or held by another
// PruneDead yields no lock and no error: another PruneDead, or its owner,
// got to it first. So does one t's options keep, which t says why.
func (sw *swarmDir) detach(slot string, guard *pruneGuard, t *taking) (held *entryLock, trash string, err error) {
	lock, err := sw.lockEntry(slot)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBusy):
		return nil, "", nil
	case err != nil:
		return nil, "", err
	}
	defer func() {
		if held == nil {
			lock.release()
		}
	}()
	var ps probeScope
	if !sw.classify(slot, &ps).State.Dead() {
		return nil, "", nil
	}
	if err := guard.check(sw, lock, slot); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil // its owner removed it while it was being checked
		}
		return nil, "", err
	}
	if done, err := t.judge(sw, lock, slot); done || err != nil {
		return nil, "", err
	}
	if testHookChecked != nil {
		testHookChecked(slot)
	}
	trash = t.trashName()
	if err := sw.renameEntry(slot, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("detach: %w", err)
	}
	if !lock.is(sw, trash) || !sw.classify(trash, &ps).State.Dead() {
		return nil, "", sw.restore(trash, slot)
	}
	return lock, trash, nil
}

// testHookChecked, when set by a test, is called with a slot's name once
// the guards have let it go and before it is detached.
var testHookChecked func(slot string)

// putBack renames a detached tree that a guard refused only once it was
// detached back to its slot name, before anything of it is removed, and
// returns the guard's error, why.
func (sw *swarmDir) putBack(trash, slot string, why error) error {
	if err := sw.restoreEntry(trash, slot); err != nil {
		return fmt.Errorf("%w; and it could not be put back, so its tree is kept at %s: %v", why, sw.entryPath(trash), err)
	}
	return why
}

// restore puts back a slot that came back to life after it was detached,
// or a directory that took its name between the lock and the rename.
func (sw *swarmDir) restore(trashName, slot string) error {
	trash := sw.entryPath(trashName)
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
func (sw *swarmDir) finishLeftover(name string, guard *pruneGuard, run *pruneRun) error {
	lock, err := sw.lockEntry(name)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errBusy):
		return nil
	case err != nil:
		return err
	}
	defer lock.release()
	path := sw.entryPath(name)
	var ps probeScope
	switch st := sw.classify(name, &ps); st.State {
	case Live:
		return fmt.Errorf("detached tree %s holds live pid %d; left in place", path, st.PID)
	case BadPIDFile:
		return fmt.Errorf("detached tree %s has a pid file that cannot tell whether it is garbage; left in place: %w", path, st.Err)
	case NoPIDFile:
		// Garbage by the slot rules only if nothing but empty directories
		// is left: whoever gave the entry its name (in a swarm directory
		// others may write, anyone can), a half-built slot is never taken.
		empty, err := sw.holdsNoFiles(lock, name)
		switch {
		case err != nil:
			return fmt.Errorf("detached tree %s has no pid file and cannot be looked through; left in place: %w", path, err)
		case !empty:
			return fmt.Errorf("detached tree %s has no pid file but holds files, like a half-built slot; left in place", path)
		}
	}
	if err := guard.check(sw, lock, name); err != nil {
		return fmt.Errorf("detached tree %s: %w", path, err)
	}
	return run.takeLeftover(sw, lock, name)
}
