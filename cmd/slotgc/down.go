package main

import (
	"fmt"
	"sync"

	"github.com/bones-swarm/slotgc"
)

// maxStopping bounds how many leaves down stops at the same time.
const maxStopping = 64

func (c cli) down(dryRun bool) int {
	if ok, code := c.checkWorkspace(); !ok {
		return code
	}
	live, err := slotgc.LiveSlots(c.workspace)
	if err != nil {
		return c.fail(err)
	}
	stopped := make([]bool, len(live))
	errs := make([]error, len(live))
	if !dryRun {
		// All at once, but no more than maxStopping: each stop holds a
		// process handle (a pidfd) while it waits.
		var wg sync.WaitGroup
		slots := make(chan struct{}, maxStopping)
		for i, s := range live {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				stopped[i], errs[i] = slotgc.KillSlot(c.workspace, s)
			})
		}
		wg.Wait()
	}
	code := exitOK
	for i, s := range live {
		switch {
		case dryRun || stopped[i]:
		case errs[i] != nil:
			c.report(errs[i])
			code = exitSlotFailed
		default:
			fmt.Fprintf(c.stderr, "slotgc: could not stop the leaf of slot %q (pid %d)\n", s.Name, s.PID)
			code = exitSlotFailed
		}
	}
	if c.json {
		leaves := make([]leafJSON, len(live))
		for i, s := range live {
			leaves[i] = leafJSON{Name: s.Name, PID: s.PID, Stopped: stopped[i]}
		}
		if jsonCode := c.printJSON(downJSON{DryRun: dryRun, Leaves: leaves, placeJSON: c.place()}); jsonCode != exitOK {
			return jsonCode
		}
		return code
	}
	for i, s := range live {
		switch {
		case dryRun:
			fmt.Fprintf(c.stdout, "would stop %s (pid %d)\n", displayName(s.Name), s.PID)
		case stopped[i]:
			fmt.Fprintf(c.stdout, "stopped %s (pid %d)\n", displayName(s.Name), s.PID)
		default:
			fmt.Fprintf(c.stdout, "still running %s (pid %d)\n", displayName(s.Name), s.PID)
		}
	}
	n := 0
	for _, ok := range stopped {
		if ok {
			n++
		}
	}
	if dryRun {
		fmt.Fprintf(c.stdout, "would stop %s\n", count(len(live), "live leaf"))
	} else {
		fmt.Fprintf(c.stdout, "stopped %d of %s\n", n, count(len(live), "live leaf"))
	}
	return code
}
