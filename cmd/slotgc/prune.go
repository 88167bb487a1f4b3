package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/bones-swarm/slotgc"
)

// pruneCommand parses prune's flags and prunes. -idle and -keep take the
// place of SLOTGC_IDLE and SLOTGC_KEEP; the environment is read only where
// a flag is not given, so a bad value there stops only a prune that does
// not give both.
func (c cli) pruneCommand(args []string) int {
	sub := c.subFlags("prune")
	dryRun := sub.Bool("n", false, "only say what would be done")
	idle := sub.Duration("idle", 0, "keep a dead slot holding anything modified within `DURATION` (default $"+slotgc.IdleEnv+")")
	keep := sub.Duration("keep", 0, "move each dead slot's worktree into the recovery directory, and remove what a prune put there once older than `DURATION` (default $"+slotgc.KeepEnv+")")
	if code, done := c.parse(sub, args); done {
		return code
	}
	if sub.NArg() > 0 {
		return c.usageError("prune takes no arguments but -n, -idle and -keep")
	}
	given := map[string]bool{}
	sub.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *idle < 0 || *keep < 0 {
		return c.usageError("-idle and -keep take durations of 0 or more")
	}
	opts := slotgc.PruneOptions{Idle: *idle, Keep: *keep, DryRun: *dryRun}
	if !given["idle"] || !given["keep"] {
		env, err := slotgc.PruneOptionsFromEnv()
		if err != nil {
			return c.fail(fmt.Errorf("%w (or give -idle and -keep)", err))
		}
		if !given["idle"] {
			opts.Idle = env.Idle
		}
		if !given["keep"] {
			opts.Keep = env.Keep
		}
	}
	return c.prune(opts)
}

func (c cli) prune(opts slotgc.PruneOptions) int {
	if ok, code := c.checkWorkspace(); !ok {
		return code
	}
	dryRun := opts.DryRun
	before, err := slotgc.Detached(c.workspace)
	if err != nil {
		return c.fail(err)
	}
	var p *progress
	if isTerminal(c.stderr) {
		p = startProgress(c.stderr, c.progressAfter, dryRun)
		opts.Progress = p.update
	}
	report, err := slotgc.Prune(c.workspace, opts)
	p.stop() // before anything else is written
	var slotErr *slotgc.SlotError
	if err != nil && !errors.As(err, &slotErr) && !errors.Is(err, slotgc.ErrUninspected) {
		return c.fail(err) // the swarm directory itself could not be read
	}
	code := exitOK
	if err != nil {
		c.report(err)
		code = exitSlotFailed
	}
	finished, kept, detachedErr := c.detachedOutcome(before, dryRun)
	if detachedErr != nil {
		c.report(detachedErr)
		code = exitSlotFailed
	}
	names := report.Taken()
	if c.json {
		out := pruneJSON{DetachedFinished: finished, DetachedKept: kept, DryRun: dryRun, Expired: newRecoveriesJSON(report.Expired),
			Report: newOutcomesJSON(report.Slots), Settings: newSettingsJSON(opts, nil), Slots: names, placeJSON: c.place()}
		if out.Slots == nil {
			out.Slots = []string{} // scripts read a list, even an empty one, never null
		}
		if err != nil {
			out.Error = err.Error()
		}
		if jsonCode := c.printJSON(out); jsonCode != exitOK {
			return jsonCode
		}
		return code
	}
	c.printOutcomes(report, dryRun)
	finishVerb := "finished removing"
	if dryRun {
		finishVerb = "would finish removing"
	}
	for _, name := range finished {
		fmt.Fprintln(c.stdout, finishVerb, "detached tree", displayName(name))
	}
	for _, name := range kept {
		fmt.Fprintf(c.stdout, "kept detached tree %s: %s\n", displayName(name), keptReason(before, name, err))
	}
	c.printPruneSummary(report, dryRun)
	return code
}

// detachedOutcome compares the detached trees before a prune with those
// after it: the ones gone were finished, the ones still there kept. For a
// dry run it tells which the prune would finish: those that are surely
// garbage.
func (c cli) detachedOutcome(before []slotgc.SlotStatus, dryRun bool) (finished, kept []string, err error) {
	finished, kept = []string{}, []string{}
	if dryRun {
		for _, s := range before {
			if s.State.Dead() || s.State == slotgc.NoPIDFile {
				finished = append(finished, s.Name)
			} else {
				kept = append(kept, s.Name)
			}
		}
		return finished, kept, nil
	}
	after, err := slotgc.Detached(c.workspace)
	if err != nil {
		return finished, kept, err
	}
	left := make(map[string]bool, len(after))
	for _, s := range after {
		left[s.Name] = true
	}
	for _, s := range before {
		if left[s.Name] {
			kept = append(kept, s.Name)
		} else {
			finished = append(finished, s.Name)
		}
	}
	return finished, kept, nil
}

// keptReason says why a prune kept the detached tree name: the error it
// gave for it, else that another prune holds it.
func keptReason(before []slotgc.SlotStatus, name string, pruneErr error) string {
	if joined, ok := pruneErr.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if se, ok := e.(*slotgc.SlotError); ok && se.Slot == name {
				return se.Err.Error()
			}
		}
	}
	for _, s := range before {
		if s.Name == name && !s.State.Dead() && s.State != slotgc.NoPIDFile {
			return detachedText(s)
		}
	}
	return "another prune is at work on it"
}

// printOutcomes says, a line per dead slot, what the prune did with it.
// A slot kept by a failure is said on standard error, with the failure.
func (c cli) printOutcomes(report slotgc.PruneReport, dryRun bool) {
	would := func(verb, dry string) string {
		if dryRun {
			return dry
		}
		return verb
	}
	for _, o := range report.Slots {
		name := displayName(o.Slot)
		switch {
		case o.Action == slotgc.Removed:
			fmt.Fprintf(c.stdout, "%s %s (%s)\n", would("removed", "would remove"), name, bytesText(o.Bytes))
		case o.Action == slotgc.Recovered:
			fmt.Fprintf(c.stdout, "%s %s to %s (%s)\n", would("recovered", "would recover"), name, displayName(o.Recovery), bytesText(o.Bytes))
		case errors.Is(o.Reason, slotgc.ErrRecentlyChanged):
			fmt.Fprintf(c.stdout, "%s %s: %v\n", would("kept", "would keep"), name, o.Reason)
		}
	}
	for _, o := range report.Detached {
		if o.Action == slotgc.Recovered {
			fmt.Fprintf(c.stdout, "recovered the worktree of detached tree %s to %s\n", displayName(o.Slot), displayName(o.Recovery))
		}
	}
	for _, e := range report.Expired {
		fmt.Fprintf(c.stdout, "%s recovery entry %s, made %s ago (%s)\n", would("expired", "would expire"), displayName(e.Name), ageText(time.Since(e.Made)), bytesText(e.Bytes))
	}
}

// printPruneSummary ends a prune's text output: the dead slots removed,
// then, where there are any, those recovered and those the grace period
// kept.
func (c cli) printPruneSummary(report slotgc.PruneReport, dryRun bool) {
	var removed, recovered, recent int
	var freed, moved int64
	for _, o := range report.Slots {
		switch {
		case o.Action == slotgc.Removed:
			removed++
			freed += o.Bytes
		case o.Action == slotgc.Recovered:
			recovered++
			moved += o.Bytes
		case errors.Is(o.Reason, slotgc.ErrRecentlyChanged):
			recent++
		}
	}
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	fmt.Fprintf(c.stdout, "%s %s\n", verb, count(removed, "dead slot"))
	if recovered > 0 {
		verb = "recovered"
		if dryRun {
			verb = "would recover"
		}
		fmt.Fprintf(c.stdout, "%s %s into %s (%s)\n", verb, count(recovered, "dead slot"), displayName(slotgc.RecoveryPath(c.workspace)), bytesText(moved))
	}
	if recent > 0 {
		verb = "kept"
		if dryRun {
			verb = "would keep"
		}
		fmt.Fprintf(c.stdout, "%s %s changed within the grace period\n", verb, count(recent, "dead slot"))
	}
}
