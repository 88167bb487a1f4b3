package main

import (
	"encoding/json"

	"github.com/bones-swarm/slotgc"
)

// The shapes of the -json output. The envelopes list their fields in the
// sorted order of their keys, the order the command has always printed (the
// envelopes were maps, whose keys encoding/json sorts), so that the output
// stays byte for byte what scripts have seen; the parts inside them were
// structs from the start, in the README's order. Every shape is a promise
// the README makes: no key may be renamed or dropped.

// placeJSON is what every envelope carries: the workspace asked about and
// the swarm directory read for it. Its keys sort after every other key, so
// it is embedded last.
type placeJSON struct {
	Swarm     string `json:"swarm"`
	Workspace string `json:"workspace"`
}

// noteJSON is the output of any command run on a directory that is not a
// workspace.
type noteJSON struct {
	Note string `json:"note"`
	placeJSON
}

// statusJSON is the output of status.
type statusJSON struct {
	Counts   map[string]int `json:"counts"` // by state, only the states that occur
	Detached []slotJSON     `json:"detached"`
	Slots    []slotJSON     `json:"slots"`
	placeJSON
}

// slotJSON is one slot, or detached tree, in the output of status.
type slotJSON struct {
	Name   string        `json:"name"`
	PID    int           `json:"pid,omitempty"`
	State  string        `json:"state"`
	Dead   bool          `json:"dead"`
	Error  string        `json:"error,omitempty"`
	UsedBy []processJSON `json:"used_by,omitempty"`
}

// processJSON is a process that uses a slot.
type processJSON struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

// pruneJSON is the output of prune.
type pruneJSON struct {
	DetachedFinished []string `json:"detached_finished"`
	DetachedKept     []string `json:"detached_kept"`
	DryRun           bool     `json:"dry_run"`
	Error            string   `json:"error,omitempty"`
	Slots            []string `json:"slots"`
	placeJSON
}

// downJSON is the output of down.
type downJSON struct {
	DryRun bool       `json:"dry_run"`
	Leaves []leafJSON `json:"leaves"`
	placeJSON
}

// leafJSON is one live leaf in the output of down.
type leafJSON struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Stopped bool   `json:"stopped"`
}

func (c cli) place() placeJSON {
	return placeJSON{Swarm: c.swarm, Workspace: c.workspace}
}

func newSlotJSON(s slotgc.SlotStatus, users []slotgc.Process) slotJSON {
	j := slotJSON{Name: s.Name, PID: s.PID, State: s.State.String(), Dead: s.State.Dead(), Error: cause(s.Err)}
	for _, u := range users {
		j.UsedBy = append(j.UsedBy, processJSON{u.PID, u.Command})
	}
	return j
}

func (c cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return exitOK
}
