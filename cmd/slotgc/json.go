package main

import (
	"encoding/json"
	"time"

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
	Counts     map[string]int `json:"counts"` // by state, only the states that occur
	Detached   []slotJSON     `json:"detached"`
	Recoveries []recoveryJSON `json:"recoveries"`
	Recovery   string         `json:"recovery"` // the recovery directory
	Settings   settingsJSON   `json:"settings"`
	Slots      []slotJSON     `json:"slots"`
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
	Bytes  *int64        `json:"bytes,omitempty"` // with status -size
}

// processJSON is a process that uses a slot.
type processJSON struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

// pruneJSON is the output of prune.
type pruneJSON struct {
	DetachedFinished []string       `json:"detached_finished"`
	DetachedKept     []string       `json:"detached_kept"`
	DryRun           bool           `json:"dry_run"`
	Error            string         `json:"error,omitempty"`
	Expired          []recoveryJSON `json:"expired"`
	Report           []outcomeJSON  `json:"report"`
	Settings         settingsJSON   `json:"settings"`
	Slots            []string       `json:"slots"` // removed or recovered
	placeJSON
}

// outcomeJSON is what prune did with one dead slot.
type outcomeJSON struct {
	Slot     string `json:"slot"`
	Action   string `json:"action"` // removed, recovered or kept
	Reason   string `json:"reason,omitempty"`
	Bytes    int64  `json:"bytes"`
	Recovery string `json:"recovery,omitempty"`
}

// recoveryJSON is one entry of the recovery directory.
type recoveryJSON struct {
	Name       string `json:"name"`
	Slot       string `json:"slot"`
	Made       string `json:"made"` // RFC 3339
	AgeSeconds int64  `json:"age_seconds"`
	Bytes      int64  `json:"bytes"`
	BySlotgc   bool   `json:"by_slotgc"`
}

// settingsJSON is the prune options in force: for status, those the
// environment sets; for prune, those used. A duration is a Go duration
// string, "" when the option is off.
type settingsJSON struct {
	Idle  string `json:"idle"`
	Keep  string `json:"keep"`
	Error string `json:"error,omitempty"`
}

// restoreJSON is the output of restore.
type restoreJSON struct {
	Entry string `json:"entry,omitempty"`
	Error string `json:"error,omitempty"`
	Slot  string `json:"slot"`
	placeJSON
	Worktree string `json:"worktree,omitempty"`
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

func newOutcomesJSON(outcomes []slotgc.SlotOutcome) []outcomeJSON {
	out := make([]outcomeJSON, len(outcomes))
	for i, o := range outcomes {
		out[i] = outcomeJSON{Slot: o.Slot, Action: o.Action.String(), Bytes: o.Bytes, Recovery: o.Recovery}
		if o.Reason != nil {
			out[i].Reason = o.Reason.Error()
		}
	}
	return out
}

func newRecoveriesJSON(entries []slotgc.Recovery) []recoveryJSON {
	out := make([]recoveryJSON, len(entries))
	for i, e := range entries {
		out[i] = recoveryJSON{Name: e.Name, Slot: e.Slot, Made: e.Made.UTC().Format(time.RFC3339), AgeSeconds: int64(time.Since(e.Made).Seconds()),
			Bytes: e.Bytes, BySlotgc: e.BySlotgc}
	}
	return out
}

func newSettingsJSON(opts slotgc.PruneOptions, err error) settingsJSON {
	var s settingsJSON
	if opts.Idle > 0 {
		s.Idle = opts.Idle.String()
	}
	if opts.Keep > 0 {
		s.Keep = opts.Keep.String()
	}
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

func (c cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return exitOK
}
