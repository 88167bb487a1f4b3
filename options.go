package slotgc

import (
	"errors"
	"fmt"
	"os"
	"strings"
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
	// it. Should Progress panic, it is not called again, and Prune panics
	// with the same value once every slot is settled, from the caller's
	// goroutine: no slot is left half taken.
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
