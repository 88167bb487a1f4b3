package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// pruneRun is what one Prune call shares between its slots.
type pruneRun struct {
	opts PruneOptions
	// start is when the call began: the entries it makes are not its to
	// expire.
	start time.Time
	// measure asks for each taken slot's Bytes.
	measure bool
	// stateDir holds the swarm directory and the recovery directory.
	stateDir string
	// recovery is the recovery directory, opened (made if missing) when a
	// slot first needs it; recoveryErr is why it could not be.
	recovery    *recoveryDir
	recoveryErr error
	// detached holds the outcomes of the leftovers finished.
	detached []SlotOutcome

	// mu keeps the slots' takings, which may run at once (see
	// removalGroup), to one recovery at a time, and to one Progress call
	// at a time, counting the slots settled in settled, of total.
	mu             sync.Mutex
	settled, total int
	// progressPanic is what Progress panicked with, raised again once
	// every slot is settled; no call of Progress follows it.
	progressPanic any
}

func prune(workspaceDir string, opts PruneOptions, measure bool) (PruneReport, error) {
	if err := opts.check(); err != nil {
		return PruneReport{}, err
	}
	swarm := SwarmPath(workspaceDir)
	sw, entries, err := openSwarm(swarm)
	if sw == nil {
		return PruneReport{}, err
	}
	defer sw.close()
	unlock, err := sw.lockForPrune()
	if err != nil {
		return PruneReport{}, fmt.Errorf("slotgc: prune: %w", err)
	}
	defer unlock()
	sw.checkFileClock = true
	statuses, trash := sw.classifyAll(entries)
	run := &pruneRun{opts: opts, start: time.Now(), measure: measure, stateDir: filepath.Dir(swarm)}
	defer run.close()
	total := 0
	for _, s := range statuses {
		if s.State.Dead() {
			total++
		}
	}
	takings := make([]taking, 0, total)
	for _, s := range statuses {
		if s.State.Dead() {
			takings = append(takings, taking{run: run, out: SlotOutcome{Slot: s.Name}})
		}
	}
	run.total = len(takings)
	var guard pruneGuard
	var removals removalGroup
	// Should anything panic here, the slots detached so far are still
	// settled, before the descriptors they are worked through are closed.
	defer removals.wait()
	var batch detachedBatch
	// Should anything panic before the batch is looked at, its slots go
	// back to their names: nothing goes without the look.
	defer batch.putBack(sw)
	for i := range takings {
		sw.prune(takings[i].out.Slot, &guard, &batch, &removals, &takings[i])
	}
	sw.letGo(&batch, &guard, &removals)
	removals.wait()
	var report PruneReport
	var errs []error
	if len(takings) > 0 {
		report.Slots = make([]SlotOutcome, len(takings))
	}
	for i, t := range takings {
		report.Slots[i] = t.out
		if t.err != nil {
			errs = append(errs, sw.slotError(opPrune, t.out.Slot, t.err))
		}
	}
	// The leftovers and recovery entries looked at from here are looked
	// at after every removal: with what is in use read anew.
	guard.forget()
	if !opts.DryRun {
		for _, name := range trash {
			if err := sw.finishLeftover(name, &guard, run); err != nil {
				errs = append(errs, sw.slotError(opPrune, name, err))
			}
		}
		for _, e := range entries {
			if !e.isDir && strings.HasPrefix(e.name, clockProbePrefix) {
				if err := sw.removeStaleProbe(e.name); err != nil {
					errs = append(errs, sw.slotError(opPrune, e.name, err))
				}
			}
		}
	}
	report.Detached = run.detached
	if opts.Keep > 0 {
		expired, err := run.expire(sw, &guard)
		report.Expired = expired
		if err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, guard.uninspectedError())
	if run.progressPanic != nil {
		panic(run.progressPanic)
	}
	return report, errors.Join(errs...)
}

func (r *pruneRun) close() {
	if r.recovery != nil {
		r.recovery.close()
	}
}

// recoveryDir opens the recovery directory, making it if missing, once
// per call.
// A dry run makes nothing: where the directory is missing it yields nil,
// nil, and what it would be made on goes unchecked.
func (r *pruneRun) recoveryDir() (*recoveryDir, error) {
	if r.recovery == nil && r.recoveryErr == nil {
		r.recovery, r.recoveryErr = openRecoveryDir(r.stateDir, !r.opts.DryRun)
	}
	return r.recovery, r.recoveryErr
}

// recoveryPath is the recovery directory's path, for messages.
func (r *pruneRun) recoveryPath() string { return filepath.Join(r.stateDir, recoveryName) }

// taking is one dead slot on its way through Prune: what the options
// decide for it and what became of it.
type taking struct {
	run *pruneRun
	out SlotOutcome
	// recover says the slot has a worktree to move into the recovery
	// directory, under a detached name that says so (trash).
	recover bool
	trash   string
	// err is why the slot was kept by a failure, or why its remains
	// could not be removed.
	err error
}

// judge decides, for the locked dead slot that passed the guards, whether
// it goes now: a slot changed within the grace period stays, as does one
// whose worktree could not be moved where removal is to be recoverable; a
// dry run stops here, saying what it would do. done reports that the slot
// stays, with err if that is a failure.
func (t *taking) judge(sw *swarmDir, l *entryLock, slot string) (done bool, err error) {
	opts := t.run.opts
	if opts.Idle > 0 || t.run.measure {
		w := treeWalk{strict: opts.Idle > 0}
		if opts.Idle > 0 {
			w.cutoff = time.Now().Add(-opts.Idle)
		}
		err := sw.walkLocked(l, slot, &w)
		switch {
		case !w.recentAt.IsZero():
			t.out.Action, t.out.Reason = Kept, &recentError{w.recent, w.recentAt, opts.Idle}
			return true, nil
		case err != nil && w.strict:
			return true, fmt.Errorf("cannot tell whether it changed within the grace period of %v, so it is kept: %w", opts.Idle, err)
		}
		t.out.Bytes = w.bytes
	}
	if opts.Keep > 0 {
		has, err := sw.hasWorktree(l, slot)
		if err != nil {
			return true, fmt.Errorf("cannot tell whether it has a worktree to recover, so it is kept: %w", err)
		}
		if has {
			if err := t.canRecover(sw, l, slot); err != nil {
				return true, err
			}
		}
	}
	if opts.DryRun {
		t.out.Action = Removed
		if t.recover {
			t.out.Action = Recovered
			t.out.Recovery = filepath.Join(t.run.recoveryPath(), recoveryEntryName(slot, time.Now().Unix()))
		}
		return true, nil
	}
	return false, nil
}

// canRecover checks what can be checked before the slot is detached: the
// recovery directory opens, sits on the slot's file system, and can hold
// the names the slot's worktree passes through.
func (t *taking) canRecover(sw *swarmDir, l *entryLock, slot string) error {
	rd, err := t.run.recoveryDir()
	if err != nil {
		return notRecoverable(t.run.recoveryPath(), err)
	}
	if rd != nil {
		if err := rd.sameFileSystem(sw, l, slot); err != nil {
			return notRecoverable(rd.path, err)
		}
	}
	t.recover = true
	t.trash = recoverTrashName(slot)
	if len(t.trash) > maxNameLen || len(recoveryEntryName(slot, time.Now().Unix()))+1 > maxNameLen {
		return notRecoverable(t.run.recoveryPath(), fmt.Errorf("the slot's name is too long to pass through %s and recovery names", TrashPrefix))
	}
	return nil
}

// maxNameLen is the longest name, in bytes, a file system is sure to take
// (NAME_MAX on Linux; 255 UTF-16 units on Windows hold at least as many
// of the bytes here).
const maxNameLen = 255

// trashName returns the name the slot is detached under: one that tells a
// later prune to recover its worktree first, if this one will.
func (t *taking) trashName() string {
	if t.recover {
		return t.trash
	}
	return trashName("")
}

// recoverPrefix starts the detached names of slots whose worktree is to
// be recovered; the slot's name follows the pid and random part.
const recoverPrefix = TrashPrefix + "recover."

// recoverTrashName returns a new detached name for slot whose worktree is
// to be recovered.
func recoverTrashName(slot string) string { return trashName("recover.") + "." + slot }

// recoverSlotOf returns the slot whose worktree the detached tree trash
// is to recover, if its name says so.
func recoverSlotOf(trash string) (string, bool) {
	rest, ok := strings.CutPrefix(trash, recoverPrefix)
	if !ok {
		return "", false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 || parts[2] == "" {
		return "", false
	}
	return parts[2], true
}

// take disposes of the locked slot, detached under trash: its worktree
// into the recovery directory if it is to be recovered, then the rest
// removed. A worktree that cannot be moved keeps the slot: it is renamed
// back to its name, and never removed instead.
func (t *taking) take(sw *swarmDir, l *entryLock, slot, trash string) error {
	if t.recover {
		entry, err := t.run.recoverWorktree(sw, l, slot, trash)
		if err != nil {
			if rerr := sw.restoreEntry(trash, slot); rerr != nil {
				return fmt.Errorf("%w; its tree is kept at %s, whose worktree later prunes recover: %v", err, sw.entryPath(trash), rerr)
			}
			return err
		}
		if entry != "" {
			t.out.Action, t.out.Recovery = Recovered, entry
		}
	}
	if err := sw.removeLocked(l, trash); err != nil {
		if errors.Is(err, ErrInUse) {
			// A process came to use what is left of the slot: what is
			// left goes back to its name (its worktree, if recovered,
			// stays recovered).
			return sw.putBack(trash, slot, err)
		}
		return fmt.Errorf("remove detached tree %s (the next PruneDead retries): %w", sw.entryPath(trash), err)
	}
	if t.out.Action == 0 {
		t.out.Action = Removed
	}
	return nil
}

// settle completes the slot's outcome once it is done with: taken, kept
// by a failure, or passed over (no longer dead, gone, or held by another
// PruneDead, which a look at the slot now tells apart; that happens only
// before a slot is detached, on the goroutine that called Prune), and
// reports it to Progress.
func (t *taking) settle(sw *swarmDir, taken bool, err error) {
	t.err = err
	t.complete(sw, taken, err)
	if t.run.opts.Progress != nil {
		t.run.mu.Lock()
		defer t.run.mu.Unlock()
		t.run.settled++
		t.run.progress(t.out)
	}
}

// progress calls Progress, with mu held, unless it panicked before. A
// panic is held back: raised on a removal goroutine it would end the
// program, and raised on the caller's it would leave the slots detached
// so far unsettled.
func (r *pruneRun) progress(last SlotOutcome) {
	if r.progressPanic != nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			r.progressPanic = v
		}
	}()
	r.opts.Progress(r.settled, r.total, last)
}

func (t *taking) complete(sw *swarmDir, taken bool, err error) {
	switch {
	case err != nil && t.out.Action == Recovered:
		t.out.Reason = err
	case err != nil:
		t.out.Action, t.out.Reason, t.out.Bytes = Kept, err, 0
	case taken || t.out.Action != 0:
	default:
		t.out.Action, t.out.Bytes = Kept, 0
		var ps probeScope
		_, statErr := os.Lstat(sw.entryPath(t.out.Slot))
		switch {
		case errors.Is(statErr, fs.ErrNotExist):
			t.out.Reason = errGoneMeanwhile
		case !sw.classify(t.out.Slot, &ps).State.Dead():
			t.out.Reason = errNoLongerDead
		default:
			t.out.Reason = errBusy
		}
	}
}

// takeLeftover removes the locked detached tree name, which an earlier
// pruner left. When its name says that pruner meant to recover its
// worktree, whatever this call's options, the worktree first goes into the
// recovery directory, and where that cannot be done the tree stays: a
// crash between the detach and the rename loses nothing.
func (r *pruneRun) takeLeftover(sw *swarmDir, l *entryLock, name string) error {
	out := SlotOutcome{Slot: name, Action: Removed}
	if slot, meant := recoverSlotOf(name); meant {
		has, err := sw.hasWorktree(l, name)
		if err != nil {
			return fmt.Errorf("cannot tell whether detached tree %s has a worktree to recover; left in place: %w", sw.entryPath(name), err)
		}
		if has {
			entry, err := r.recoverWorktree(sw, l, slot, name)
			if err != nil {
				return fmt.Errorf("detached tree %s left in place: %w", sw.entryPath(name), err)
			}
			if entry != "" {
				out.Action, out.Recovery = Recovered, entry
			}
		}
	}
	if err := sw.removeLocked(l, name); err != nil {
		return fmt.Errorf("finish removing detached tree %s: %w", sw.entryPath(name), err)
	}
	r.detached = append(r.detached, out)
	return nil
}
