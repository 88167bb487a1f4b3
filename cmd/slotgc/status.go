package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bones-swarm/slotgc"
)

// stateText is how the text output names a state.
var stateText = map[slotgc.State]string{
	slotgc.Live:       "live",
	slotgc.Gone:       "dead (gone)",
	slotgc.Reused:     "dead (reused)",
	slotgc.NoPIDFile:  "no pid file",
	slotgc.BadPIDFile: "unusable pid file",
}

func (c cli) status(size bool) int {
	if ok, code := c.checkWorkspace(); !ok {
		return code
	}
	statuses, err := slotgc.Scan(c.workspace)
	if err != nil {
		return c.fail(err)
	}
	detached, err := slotgc.Detached(c.workspace)
	if err != nil {
		return c.fail(err)
	}
	var dead []string
	counts := make(map[string]int)
	for _, s := range statuses {
		counts[s.State.String()]++
		if s.State.Dead() {
			dead = append(dead, s.Name)
		}
	}
	users := map[string][]slotgc.Process{}
	if len(dead) > 0 {
		// A slot that cannot be looked into is still shown; the error says
		// why its users are unknown.
		if users, err = slotgc.Users(c.workspace, dead...); err != nil {
			c.report(err)
		}
	}
	code := exitOK
	var sizes map[string]int64
	if size {
		names := make([]string, len(statuses))
		for i, s := range statuses {
			names[i] = s.Name
		}
		if sizes, err = slotgc.DiskUse(c.workspace, names...); err != nil {
			c.report(err)
		}
	}
	recoveries, err := slotgc.Recoveries(c.workspace)
	if err != nil {
		c.report(err)
		code = exitSlotFailed
	}
	settings, settingsErr := slotgc.PruneOptionsFromEnv()
	if settingsErr != nil {
		c.report(fmt.Errorf("%w; prune removes nothing until it is fixed", settingsErr))
		code = exitSlotFailed
	}
	if c.json {
		slots := make([]slotJSON, 0, len(statuses))
		for _, s := range statuses {
			j := newSlotJSON(s, users[s.Name])
			if n, ok := sizes[s.Name]; ok {
				j.Bytes = &n
			}
			slots = append(slots, j)
		}
		trees := make([]slotJSON, 0, len(detached))
		for _, s := range detached {
			trees = append(trees, newSlotJSON(s, nil))
		}
		out := statusJSON{Counts: counts, Detached: trees, Recoveries: newRecoveriesJSON(recoveries), Recovery: slotgc.RecoveryPath(c.workspace),
			Settings: newSettingsJSON(settings, settingsErr), Slots: slots, placeJSON: c.place()}
		if jsonCode := c.printJSON(out); jsonCode != exitOK {
			return jsonCode
		}
		return code
	}
	fmt.Fprintf(c.stdout, "swarm directory %s\n", displayName(c.swarm))
	w := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	if size {
		fmt.Fprintln(w, "SLOT\tPID\tSIZE\tSTATE")
	} else {
		fmt.Fprintln(w, "SLOT\tPID\tSTATE")
	}
	for _, s := range statuses {
		if size {
			sizeText := "?"
			if n, ok := sizes[s.Name]; ok {
				sizeText = bytesText(n)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", displayName(s.Name), pidText(s.PID), sizeText, stateLine(s, users[s.Name]))
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\n", displayName(s.Name), pidText(s.PID), stateLine(s, users[s.Name]))
		}
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%s: %d live, %d dead (%d gone, %d reused), %d without a pid file, %d with an unusable one\n",
		count(len(statuses), "slot"), counts["live"], counts["gone"]+counts["reused"], counts["gone"], counts["reused"], counts["no-pid-file"], counts["bad-pid-file"])
	for _, s := range detached {
		fmt.Fprintf(c.stdout, "detached tree %s, waiting for removal: %s\n", displayName(s.Name), detachedText(s))
	}
	c.printRecoveries(recoveries, settings)
	c.printSettings(settings)
	return code
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

// stateLine is how the text output describes a slot's state.
func stateLine(s slotgc.SlotStatus, users []slotgc.Process) string {
	state := stateText[s.State]
	if s.State == slotgc.BadPIDFile {
		state += ": " + cause(s.Err)
	}
	if len(users) > 0 {
		state += ", in use by " + processList(users) + " (kept by prune)"
	}
	return state
}

func processList(users []slotgc.Process) string {
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = fmt.Sprintf("pid %d (%s)", u.PID, displayName(u.Command))
	}
	return strings.Join(names, ", ")
}

// detachedText says what the next prune does with a detached tree, and why.
func detachedText(s slotgc.SlotStatus) string {
	switch {
	case s.State == slotgc.Live:
		return fmt.Sprintf("holds live pid %d, so prune keeps it", s.PID)
	case s.State == slotgc.BadPIDFile:
		return "its pid file is unusable (" + cause(s.Err) + "), so prune keeps it"
	case s.State == slotgc.NoPIDFile:
		return "no pid file; the next prune removes it unless a prune is at work on it"
	}
	return fmt.Sprintf("pid %d is %s; the next prune removes it unless a prune is at work on it", s.PID, stateText[s.State])
}

// displayName is a name as text output shows it: as it is when it is
// printable, quoted with Go's escapes otherwise, so that a name holding a
// newline or a terminal escape cannot fake or hide lines.
func displayName(name string) string {
	for _, r := range name {
		if !unicode.IsPrint(r) || r == utf8.RuneError {
			return strconv.Quote(name)
		}
	}
	if name == "" || !utf8.ValidString(name) {
		return strconv.Quote(name)
	}
	return name
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
