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
	"strings"
	"time"

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
