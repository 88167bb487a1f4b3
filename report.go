package slotgc

import (
	"errors"
	"fmt"
	"time"
)

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
