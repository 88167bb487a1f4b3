// Command slotgc shows, prunes and stops the worker slots of a swarm
// workspace, using package slotgc: it is for operators who need that
// without the whole swarm CLI.
//
// Usage:
//
//	slotgc [-C workspace] [-json] [status [-size]]
//	slotgc [-C workspace] [-json] prune [-n] [-idle DURATION] [-keep DURATION]
//	slotgc [-C workspace] [-json] restore SLOT
//	slotgc [-C workspace] [-json] down [-n]
//	slotgc demo DIR
//
// status (the default) prints one line per slot directory: its name, the
// pid its pid file names, and its state (live, dead (gone), dead (reused),
// no pid file, unusable pid file), then a summary; with -size, each slot's
// disk use too. It then lists the recovery directory's entries with their
// age and size, and the prune settings the environment sets (SLOTGC_IDLE,
// SLOTGC_KEEP), when there are any.
//
// prune settles the dead slots: it removes them, or with -keep moves each
// one's worktree into the recovery directory, <state dir>/recovery, as
// <slot>-<unix seconds>, where `bones apply --slot` finds it, and removes
// the rest; the entries it made are removed by later prunes once older
// than the -keep duration. With -idle, a dead slot holding anything
// modified within that duration is kept. Without the flags, prune takes
// them from SLOTGC_IDLE and SLOTGC_KEEP, as the library's PruneDead does.
// On a terminal, a prune that takes more than a second shows its progress
// on standard error. restore moves the newest recovery entry of SLOT back
// to SLOT/wt in the swarm directory, as a half-built slot (no pid file, so
// no prune takes it), and refuses when SLOT is there. down ends every live
// leaf, all at once. With -n, prune and down only say what they would do.
// demo makes a workspace in DIR with a live leaf, a dead one, a half-built
// slot and a broken pid file, to try the other commands on.
//
// Results go to standard output, as text or, with -json, as one JSON
// object (its shape is in the README); errors go to standard error, naming
// the path and the cause. The exit code is 0 when all went well, 1 when
// some slot could not be pruned or some leaf not stopped, and 2 for a usage
// error or a workspace that cannot be read. A directory without .bones is
// no workspace: slotgc says so and exits 0.
//
// As in the swarm CLI, the environment variable BONES_DIR, when set and not
// empty, relocates the state directory: the slots are then read from
// $BONES_DIR/swarm, the workspace needs no .bones of its own, and status
// says which swarm directory it read.
//
// slotgc -h, -help or help prints the usage on standard output.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bones-swarm/slotgc"
)

// Exit codes.
const (
	exitOK         = 0
	exitSlotFailed = 1
	exitUsage      = 2
)

func main() {
	if pidFile := os.Getenv(demoLeafEnv); pidFile != "" {
		os.Exit(runDemoLeaf(pidFile))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// cli is one invocation: where to look, how to print, where to write.
type cli struct {
	workspace string
	swarm     string // the swarm directory the library reads for workspace
	json      bool
	stdout    io.Writer
	stderr    io.Writer
	// progressAfter is how long a prune runs before it shows its progress
	// on a terminal.
	progressAfter time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("slotgc", flag.ContinueOnError)
	flags.SetOutput(stderr)
	c := cli{stdout: stdout, stderr: stderr, progressAfter: progressAfter}
	flags.StringVar(&c.workspace, "C", ".", "the workspace `directory`")
	flags.BoolVar(&c.json, "json", false, "print results as JSON")
	// The flag package prints its own message for a bad flag; the usage
	// follows it there, or goes to stdout when asked for.
	flags.Usage = func() {}
	if code, done := c.parse(flags, args); done {
		return code
	}
	c.swarm = slotgc.SwarmPath(c.workspace)
	command, rest := "status", flags.Args()
	if len(rest) > 0 {
		command, rest = rest[0], rest[1:]
	}
	switch command {
	case "help":
		c.printUsage(c.stdout, flags)
		return exitOK
	case "status":
		sub := c.subFlags(command)
		size := sub.Bool("size", false, "show each slot's disk use")
		if code, done := c.parse(sub, rest); done {
			return code
		}
		if sub.NArg() > 0 {
			return c.usageError("status takes no arguments but -size")
		}
		return c.status(*size)
	case "prune":
		return c.pruneCommand(rest)
	case "restore":
		if len(rest) != 1 {
			return c.usageError("restore takes one argument, the slot to restore")
		}
		return c.restore(rest[0])
	case "down":
		sub := c.subFlags(command)
		dryRun := sub.Bool("n", false, "only say what would be done")
		if code, done := c.parse(sub, rest); done {
			return code
		}
		if sub.NArg() > 0 {
			return c.usageError(command + " takes no arguments but -n")
		}
		return c.down(*dryRun)
	case "demo":
		if len(rest) != 1 {
			return c.usageError("demo takes one argument, the directory to make the workspace in")
		}
		return c.demo(rest[0])
	}
	return c.usageError(fmt.Sprintf("unknown command %q", command))
}

const usage = `usage:
  slotgc [-C workspace] [-json] [status [-size]]
  slotgc [-C workspace] [-json] prune [-n] [-idle DURATION] [-keep DURATION]
  slotgc [-C workspace] [-json] restore SLOT
  slotgc [-C workspace] [-json] down [-n]
  slotgc demo DIR
  slotgc help
BONES_DIR, when set, is the state directory: slots are read from $BONES_DIR/swarm.
SLOTGC_IDLE and SLOTGC_KEEP, when set, are prune's -idle and -keep where those are not given.
`

// subFlags returns the flag set of a command, which reports bad flags as
// parse does.
func (c cli) subFlags(command string) *flag.FlagSet {
	sub := flag.NewFlagSet(command, flag.ContinueOnError)
	sub.SetOutput(c.stderr)
	sub.Usage = func() {}
	return sub
}

// parse parses args into flags. On -h or -help it prints the usage on
// stdout and is done with exit code 0, as flag.ExitOnError would be; on a
// bad flag, whose message the flag package has written to stderr, it
// prints the usage there and is done with exitUsage.
func (c cli) parse(flags *flag.FlagSet, args []string) (code int, done bool) {
	err := flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.printUsage(c.stdout, flags)
		return exitOK, true
	case err != nil:
		c.printUsage(c.stderr, flags)
		return exitUsage, true
	}
	return exitOK, false
}

// printUsage writes the usage and the flags' defaults to w.
func (c cli) printUsage(w io.Writer, flags *flag.FlagSet) {
	fmt.Fprint(w, usage)
	flags.SetOutput(w)
	flags.PrintDefaults()
	flags.SetOutput(c.stderr)
}

func (c cli) usageError(msg string) int {
	fmt.Fprintf(c.stderr, "slotgc: %s\n%s", msg, usage)
	return exitUsage
}

func (c cli) fail(err error) int {
	c.report(err)
	return exitUsage
}

// report writes err to stderr, a line for each error it joins, each line
// starting "slotgc: " once.
func (c cli) report(err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(c.stderr, "slotgc: %s\n", strings.TrimPrefix(line, "slotgc: "))
	}
}

// checkWorkspace tells whether the workspace can be read and has a state
// directory: its .bones, or the one BONES_DIR names. A missing state
// directory is said so on stdout (in JSON, as the note), naming it.
func (c cli) checkWorkspace() (ok bool, code int) {
	if _, err := os.Stat(c.workspace); err != nil {
		return false, c.fail(fmt.Errorf("workspace: %w", err))
	}
	stateDir := filepath.Dir(c.swarm)
	_, err := os.Stat(stateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		note := fmt.Sprintf("no state directory %s: not a swarm workspace, nothing to do", stateDir)
		if c.json {
			return false, c.printJSON(noteJSON{Note: note, placeJSON: c.place()})
		}
		fmt.Fprintln(c.stdout, note)
		return false, exitOK
	case err != nil:
		return false, c.fail(err)
	}
	return true, exitOK
}

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

// cause is the innermost message of a pid-file error: the path is the
// slot's, already on the line.
func cause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if err != nil {
		return err.Error()
	}
	return ""
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

// count says "1 slot", "2 slots", "1 live leaf", "3 live leaves", "2
// recovery entries".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "leaf") {
		return fmt.Sprintf("%d %sves", n, strings.TrimSuffix(noun, "f"))
	}
	if strings.HasSuffix(noun, "entry") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
