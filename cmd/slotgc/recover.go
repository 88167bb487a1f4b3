package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bones-swarm/slotgc"
)

// pruneCommand parses prune's flags and prunes. -idle and -keep take the
// place of SLOTGC_IDLE and SLOTGC_KEEP; the environment is read only for a
// flag not given, so a bad value there stops only a prune that would use
// it.
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

// printRecoveries lists the recovery directory's entries, if it has any,
// after status.
func (c cli) printRecoveries(entries []slotgc.Recovery, settings slotgc.PruneOptions) {
	if len(entries) == 0 {
		return
	}
	fmt.Fprintf(c.stdout, "recovery directory %s\n", displayName(slotgc.RecoveryPath(c.workspace)))
	w := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "ENTRY\tAGE\tSIZE\tMADE BY")
	for _, e := range entries {
		by := "another tool, such as the swarm CLI (never removed by slotgc)"
		if e.BySlotgc {
			by = "slotgc (removed by a prune with -keep once older than that)"
			if settings.Keep > 0 {
				by = fmt.Sprintf("slotgc (removed by a prune in %s, by %s=%s)", ageText(max(0, settings.Keep-time.Since(e.Made))), slotgc.KeepEnv, settings.Keep)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", displayName(e.Name), ageText(time.Since(e.Made)), bytesText(e.Bytes), by)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%s; slotgc restore SLOT puts a slot's newest one back\n", count(len(entries), "recovery entry"))
}

// printSettings says which prune options the environment sets, if any.
func (c cli) printSettings(settings slotgc.PruneOptions) {
	if settings.Idle == 0 && settings.Keep == 0 {
		return
	}
	idle := slotgc.IdleEnv + " unset: dead slots go however recently they changed"
	if settings.Idle > 0 {
		idle = fmt.Sprintf("%s=%s: dead slots changed within %s are kept", slotgc.IdleEnv, settings.Idle, settings.Idle)
	}
	keep := slotgc.KeepEnv + " unset: dead slots are removed, worktrees and all"
	if settings.Keep > 0 {
		keep = fmt.Sprintf("%s=%s: dead slots' worktrees go into the recovery directory, kept %s", slotgc.KeepEnv, settings.Keep, settings.Keep)
	}
	fmt.Fprintf(c.stdout, "prune settings from the environment:\n  %s\n  %s\n", idle, keep)
}

func (c cli) restore(slot string) int {
	if ok, code := c.checkWorkspace(); !ok {
		return code
	}
	entry, err := slotgc.Restore(c.workspace, slot)
	worktree := filepath.Join(c.swarm, slot, slotgc.WorktreeDir)
	if err != nil {
		var slotErr *slotgc.SlotError
		if !errors.As(err, &slotErr) {
			return c.fail(err)
		}
		c.report(err)
		if c.json {
			c.printJSON(restoreJSON{Error: err.Error(), Slot: slot, placeJSON: c.place()})
		}
		return exitSlotFailed
	}
	if c.json {
		return c.printJSON(restoreJSON{Entry: entry.Name, Slot: slot, placeJSON: c.place(), Worktree: worktree})
	}
	fmt.Fprintf(c.stdout, "restored %s, made %s ago, to %s\n", displayName(entry.Name), ageText(time.Since(entry.Made)), displayName(worktree))
	fmt.Fprintf(c.stdout, "slot %s has no pid file, so no prune takes it; join it again, or move the worktree where it is needed\n", displayName(slot))
	return exitOK
}

// bytesText says a number of bytes in binary units: "512 B", "4.0 KiB",
// "1.2 GiB".
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, prefix := float64(n)/unit, 0
	for value >= unit && prefix < len("KMGTPE")-1 {
		value /= unit
		prefix++
	}
	return fmt.Sprintf("%.1f %ciB", value, "KMGTPE"[prefix])
}

// ageText says a duration in its largest whole unit: "45s", "12m", "5h",
// "3d".
func ageText(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// isTerminal reports whether w is a terminal (a character device), where
// a line rewritten in place shows as progress.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

const (
	// progressAfter is how long a prune runs before it shows progress: a
	// quick one never draws a line only to erase it.
	progressAfter = time.Second
	// progressEvery is how often the progress line is redrawn.
	progressEvery = 250 * time.Millisecond
)

// progress shows, on a terminal, how far a prune has got, on one line
// rewritten in place, once the prune has run for a while. It is drawn as
// slots are settled and, between them, on a ticker, as one slot's tree may
// take long to remove.
type progress struct {
	w      io.Writer
	dryRun bool
	start  time.Time
	after  time.Duration

	mu          sync.Mutex
	done, total int
	bytes       int64
	drawn       time.Time // when the line was last drawn; zero if never

	quit     chan struct{}
	finished chan struct{}
}

// startProgress starts showing progress on w, a terminal, once the prune
// has run for after.
func startProgress(w io.Writer, after time.Duration, dryRun bool) *progress {
	p := &progress{w: w, dryRun: dryRun, start: time.Now(), after: after, quit: make(chan struct{}), finished: make(chan struct{})}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.finished)
	select {
	case <-time.After(p.after):
	case <-p.quit:
		return
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		p.mu.Lock()
		p.draw()
		p.mu.Unlock()
		select {
		case <-tick.C:
		case <-p.quit:
			return
		}
	}
}

// update is the prune's Progress callback.
func (p *progress) update(done, total int, last slotgc.SlotOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if last.Action == slotgc.Removed || last.Action == slotgc.Recovered {
		p.bytes += last.Bytes
	}
	if time.Since(p.start) >= p.after && time.Since(p.drawn) >= progressEvery {
		p.draw()
	}
}

// draw draws the line; p.mu is held.
func (p *progress) draw() {
	verb := "pruning"
	if p.dryRun {
		verb = "judging"
	}
	// \r returns to the line's start; \x1b[K erases what a longer line
	// left.
	elapsed := time.Since(p.start).Round(time.Second)
	if p.total == 0 {
		fmt.Fprintf(p.w, "\rslotgc: %s: reading the slots, %s\x1b[K", verb, elapsed)
	} else {
		fmt.Fprintf(p.w, "\rslotgc: %s: %d of %d dead slots settled, %s taken, %s\x1b[K",
			verb, p.done, p.total, bytesText(p.bytes), elapsed)
	}
	p.drawn = time.Now()
}

// stop ends the progress, erasing its line if it drew one. It may be
// called on a nil progress, which shows nothing.
func (p *progress) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	<-p.finished
	if !p.drawn.IsZero() {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
