package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/bones-swarm/slotgc"
)

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
