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

// The environment variables with which an operator sets PruneDead's
// options for a caller that passes none, such as the swarm CLI's hub
// start: each holds a Go duration string (time.ParseDuration).
const (
	// IdleEnv sets PruneOptions.Idle, the grace period.
	IdleEnv = "SLOTGC_IDLE"
	// KeepEnv sets PruneOptions.Keep, the retention of recoverable
	// removal.
	KeepEnv = "SLOTGC_KEEP"
)

// PruneOptions choose how Prune treats the dead slots it finds. The zero
// value is PruneDead's rule of old: every dead slot goes at once, whole.
type PruneOptions struct {
	// Idle, when positive, is the grace period: a dead slot that holds any
	// entry (itself, its pid file, a file or directory of its worktree)
	// modified less than Idle ago is kept, its outcome's Reason wrapping
	// ErrRecentlyChanged. So is one whose tree cannot be looked through
	// to the end, as an error. The walk stops at the first recent entry,
	// never follows a symlink and never crosses a mount.
	Idle time.Duration
	// Keep, when positive, makes removal recoverable: a dead slot's
	// worktree, its directory WorktreeDir when it has one, is moved by
	// one rename into the recovery directory (see RecoveryPath) as
	// <slot>-<unix seconds>, and the rest of the slot removed. Where that
	// rename cannot be done (the recovery directory on another file
	// system, no permission) the slot is kept whole, with an error
	// wrapping ErrNotRecoverable: it is never removed instead. Recovery
	// entries a prune made are removed by later prunes whose Keep has
	// passed since; entries others made are never touched.
	Keep time.Duration
	// DryRun judges every dead slot as Prune would, locks and guards
	// included, and reports what it would do, changing nothing: no slot,
	// detached tree or recovery entry is touched, and no recovery
	// directory made. As it holds each slot's lock for a moment, a prune
	// running at the same time may pass a slot over, for its next call.
	DryRun bool
	// Progress, when not nil, is called after each dead slot is settled,
	// with how many of the call's dead slots are settled and how many
	// there are. The calls come one at a time, from the goroutine that
	// called Prune or, on Linux, from one removing a detached tree beside
	// it.
	Progress func(done, total int, last SlotOutcome)
}

// String describes the options as the environment would set them, for
// messages: "SLOTGC_IDLE=10m0s SLOTGC_KEEP=168h0m0s", or "" for the zero
// value.
func (o PruneOptions) String() string {
	var parts []string
	if o.Idle > 0 {
		parts = append(parts, IdleEnv+"="+o.Idle.String())
	}
	if o.Keep > 0 {
		parts = append(parts, KeepEnv+"="+o.Keep.String())
	}
	return strings.Join(parts, " ")
}

// PruneOptionsFromEnv returns the options the environment sets: Idle from
// IdleEnv and Keep from KeepEnv. A variable unset or empty leaves its
// option zero; one that does not parse as a Go duration, or is negative,
// is an error naming it, and the options are then not to be used. The
// environment is read on every call.
func PruneOptionsFromEnv() (PruneOptions, error) {
	idle, idleErr := envDuration(IdleEnv)
	keep, keepErr := envDuration(KeepEnv)
	return PruneOptions{Idle: idle, Keep: keep}, errors.Join(idleErr, keepErr)
}

// envDuration reads the duration the environment variable name holds: 0
// when it is unset or empty.
func envDuration(name string) (time.Duration, error) {
	value := os.Getenv(name)
	if value == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(value)
	switch {
	case err != nil:
		return 0, fmt.Errorf("slotgc: %s=%q: not a duration such as 30m or 168h: %w", name, value, err)
	case d < 0:
		return 0, fmt.Errorf("slotgc: %s=%q: negative", name, value)
	}
	return d, nil
}

// check refuses options no caller can mean.
func (o PruneOptions) check() error {
	if o.Idle < 0 || o.Keep < 0 {
		return fmt.Errorf("slotgc: prune: negative option (Idle %v, Keep %v)", o.Idle, o.Keep)
	}
	return nil
}

// Action is what Prune did with a dead slot, or with DryRun would do.
type Action int

// The actions of a SlotOutcome.
const (
	// Removed: the slot's whole tree is gone.
	Removed Action = iota + 1
	// Recovered: the slot's worktree is in the recovery directory, at
	// SlotOutcome.Recovery, and the rest of the slot is gone.
	Recovered
	// Kept: the slot is still there; SlotOutcome.Reason says why.
	Kept
)

var actionNames = [...]string{Removed: "removed", Recovered: "recovered", Kept: "kept"}

// String returns the action's stable, lower-case name, as used by the
// slotgc command: removed, recovered or kept.
func (a Action) String() string {
	if a < Removed || int(a) >= len(actionNames) {
		return fmt.Sprintf("Action(%d)", int(a))
	}
	return actionNames[a]
}

// SlotOutcome is what Prune did with one dead slot, or with one tree a
// pruner had detached (see PruneReport.Detached).
type SlotOutcome struct {
	// Slot is the slot's name, or the detached tree's.
	Slot   string
	Action Action
	// Reason says why a Kept slot was kept; nil otherwise, except for a
	// Recovered slot whose remains could not all be removed. It wraps
	// ErrRecentlyChanged for a slot the grace period kept, which is no
	// failure; for a slot kept by a failure it is the cause that the
	// call's error wraps in a *SlotError naming the slot. A slot this
	// call passed over because it was no longer dead, had gone, or
	// another PruneDead held it is Kept with a reason saying so and no
	// error.
	Reason error
	// Bytes is the disk use of everything the slot held when it was
	// taken, freed or moved into the recovery directory, counted as du
	// does: allocated blocks (st_blocks × 512) of every entry, directories
	// included, a file with several links once; on Windows, file sizes.
	// It is measured by Prune, not by PruneDead, and is 0 for a Kept slot
	// and for detached trees.
	Bytes int64
	// Recovery is the path of the recovery entry a Recovered slot's
	// worktree went to (with DryRun, would go to, give or take the time in
	// its name).
	Recovery string
}

// PruneReport is what one Prune call did.
type PruneReport struct {
	// Slots holds one outcome for every slot the call found dead, sorted
	// by name.
	Slots []SlotOutcome
	// Detached holds the trees an earlier pruner detached and did not
	// finish that this call finished, Removed or Recovered (see
	// PruneDead); those it left are reported in its error.
	Detached []SlotOutcome
	// Expired lists the recovery entries this call removed because they
	// were made by a prune more than Keep ago.
	Expired []Recovery
}

// Taken returns the names of the slots the call took away, Removed or
// Recovered, sorted: what PruneDead returns.
func (r PruneReport) Taken() []string {
	var names []string
	for _, o := range r.Slots {
		if o.Action == Removed || o.Action == Recovered {
			names = append(names, o.Slot)
		}
	}
	return names
}

var (
	// ErrRecentlyChanged is the reason of a dead slot Prune keeps because
	// it holds an entry modified within the grace period, PruneOptions.Idle.
	ErrRecentlyChanged = errors.New("changed within the grace period")
	// ErrNotRecoverable is the cause Prune gives for a dead slot it keeps
	// because, removal being recoverable, its worktree cannot be moved into
	// the recovery directory by a rename.
	ErrNotRecoverable = errors.New("its worktree cannot be moved into the recovery directory")
)

// The reasons a dead slot is passed over without an error.
var (
	errNoLongerDead  = errors.New("no longer dead: a leaf wrote its pid file again")
	errGoneMeanwhile = errors.New("gone before this call got to it")
)

// recentError is the reason of a slot the grace period keeps.
type recentError struct {
	path string
	at   time.Time
	idle time.Duration
}

func (e *recentError) Error() string {
	return fmt.Sprintf("changed %v ago, within the grace period of %v (%s)", time.Since(e.at).Round(time.Second), e.idle, e.path)
}

func (e *recentError) Unwrap() error { return ErrRecentlyChanged }

// notRecoverable is the cause of a slot kept because its worktree cannot
// be moved into the recovery directory.
func notRecoverable(recovery string, err error) error {
	return fmt.Errorf("%w %s, so it is kept: %w", ErrNotRecoverable, recovery, err)
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
	for i := range takings {
		sw.prune(takings[i].out.Slot, &guard, &removals, &takings[i])
	}
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
	errs = append(errs, guard.uninspectedError())
	report.Detached = run.detached
	if opts.Keep > 0 {
		expired, err := run.expire()
		report.Expired = expired
		if err != nil {
			errs = append(errs, err)
		}
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
	if progress := t.run.opts.Progress; progress != nil {
		t.run.mu.Lock()
		defer t.run.mu.Unlock()
		t.run.settled++
		progress(t.run.settled, t.run.total, t.out)
	}
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
