package slotgc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slotgc's calls must never hang on a FUSE mount whose server stopped
// answering, whether the mount is a slot itself or has nothing to do with
// the workspace but a process works in it, which the /proc pass then
// meets. Each call runs in a child with a deadline: one that misses it is
// killed and fails the test naming the call, rather than hanging the run.

// callDeadline is how long a slotgc call in a child may take, its start-up
// included, before it counts as hung. A scan of a few slots takes
// milliseconds; a race-enabled child starts in well under a second.
const callDeadline = 10 * time.Second

// The fuse-call helper runs the slotgc call its arguments name on the
// workspace after it (and, for Users, the slots after that), and
// prints the result as a fuseCallResult.
var _ = registerHelper("fuse-call", func() {
	os.Exit(runFUSECall(os.Args[2], os.Args[3], os.Args[4:]))
})

// fuseCallResult is what a fuse-call helper prints: the call's result as
// fmt prints it, and its error, whole and (Errs) one by one.
type fuseCallResult struct {
	Got  string
	Err  string
	Errs []fuseCallError
}

// fuseCallError is one of the errors a call's error joins (errors.Join),
// or the call's error alone, as far as a test needs to see it.
type fuseCallError struct {
	Msg string
	// SlotError says whether the error is a *SlotError, and Slot is then
	// its entry's name.
	SlotError bool
	Slot      string
	// Errno is the errno errors.As finds in the error, 0 for none; so
	// errors.Is(error, Errno) holds.
	Errno int
}

// callErrors returns the errors err joins, or err alone, as the
// fuse-call helper reports them.
func callErrors(err error) []fuseCallError {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	out := make([]fuseCallError, len(errs))
	for i, e := range errs {
		out[i].Msg = e.Error()
		if se, ok := e.(*SlotError); ok {
			out[i].SlotError, out[i].Slot = true, se.Slot
		}
		var errno syscall.Errno
		if errors.As(e, &errno) {
			out[i].Errno = int(errno)
		}
	}
	return out
}

func runFUSECall(call, ws string, slots []string) int {
	var got any
	var err error
	switch call {
	case "Scan":
		var statuses []SlotStatus
		statuses, err = Scan(ws)
		got = states(statuses)
	case "DeadSlots":
		got, err = DeadSlots(ws)
	case "LiveSlots":
		got, err = LiveSlots(ws)
	case "PruneDead":
		got, err = PruneDead(ws)
	case "Users":
		got, err = Users(ws, slots...)
	default:
		fmt.Fprintln(os.Stderr, "unknown call", call)
		return 2
	}
	r := fuseCallResult{Got: fmt.Sprint(got), Errs: callErrors(err)}
	if err != nil {
		r.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 2
	}
	return 0
}

// stallCase is a slotgc call to run beside a FUSE mount, and the answer it
// must give within callDeadline.
type stallCase struct {
	call    string
	ws      string
	slots   []string // Users' slot arguments
	want    []string // the result as fmt prints it: any one of these
	wantErr string   // text the error must hold; "" for no error
	after   []string // if not nil, the names in the swarm directory after the call
}

func (tc stallCase) String() string {
	args := "ws"
	for _, s := range tc.slots {
		args += ", " + strconv.Quote(s)
	}
	return tc.call + "(" + args + ")"
}

// runWithin starts every case's call at once, each in a child, and checks
// each in a subtest: a call with no answer callDeadline after the start is
// killed, and fails naming the call and where in the kernel it waited.
func (m *fuseMount) runWithin(t *testing.T, cases []stallCase) {
	t.Helper()
	children := make([]*fuseChild, len(cases))
	for i, tc := range cases {
		children[i] = m.spawn("fuse-call", "", append([]string{tc.call, tc.ws}, tc.slots...)...)
	}
	deadline := time.Now().Add(callDeadline)
	type outcome struct {
		line  string
		err   error
		waits string // where a hung call waited
	}
	outcomes := make([]outcome, len(cases))
	for i, c := range children {
		outcomes[i].line, outcomes[i].err = c.line(time.Until(deadline))
	}
	// Read where every hung call waits before killing any: one may wait on
	// a lookup another started, and wake when that one dies.
	for i, c := range children {
		if errors.Is(outcomes[i].err, errNoLine) {
			outcomes[i].waits = waitsIn(c.pid())
		}
	}
	for i, c := range children {
		if errors.Is(outcomes[i].err, errNoLine) {
			c.cmd.Process.Kill()
		}
	}
	for i, tc := range cases {
		t.Run(strings.Join(append([]string{tc.call}, tc.slots...), " "), func(t *testing.T) {
			o := outcomes[i]
			if errors.Is(o.err, errNoLine) {
				t.Fatalf("%s did not return within %v and was killed; it waited in %s", tc, callDeadline, o.waits)
			}
			var r fuseCallResult
			err := o.err
			if err == nil {
				err = json.Unmarshal([]byte(o.line), &r)
			}
			if err != nil {
				t.Fatalf("%s: %v (output %q)", tc, err, o.line)
			}
			wantErr := "nil"
			if tc.wantErr != "" {
				wantErr = "an error holding " + tc.wantErr
			}
			if !slices.Contains(tc.want, r.Got) || (r.Err == "") != (tc.wantErr == "") || !strings.Contains(r.Err, tc.wantErr) {
				t.Errorf("%s = %s, %q, want %s, %s", tc, r.Got, r.Err, strings.Join(tc.want, " or "), wantErr)
			} else {
				t.Logf("%s = %s, %q", tc, r.Got, r.Err)
			}
			if tc.after == nil {
				return
			}
			if names, err := swarmNames(SwarmPath(tc.ws)); !slices.Equal(names, tc.after) || err != nil {
				t.Errorf("after %s the swarm directory holds %v (%v), want %v", tc, names, err, tc.after)
			}
		})
	}
}

// call runs a slotgc call on ws in a fuse-call child and returns its
// result. A call with no answer within callDeadline is killed, and fails
// the test naming where it waited.
func (m *fuseMount) call(call, ws string) fuseCallResult {
	t := m.t
	t.Helper()
	c := m.spawn("fuse-call", "", call, ws)
	line, err := c.line(callDeadline)
	if errors.Is(err, errNoLine) {
		waits := waitsIn(c.pid())
		c.cmd.Process.Kill()
		t.Fatalf("%s(ws) did not return within %v and was killed; it waited in %s", call, callDeadline, waits)
	}
	var r fuseCallResult
	if err == nil {
		err = json.Unmarshal([]byte(line), &r)
	}
	if err != nil {
		t.Fatalf("%s(ws): %v (output %q)", call, err, line)
	}
	return r
}

// swarmNames lists the swarm directory's entries by name alone: an entry
// that is a stalled mount point must not be looked at.
func swarmNames(swarm string) ([]string, error) {
	f, err := os.Open(swarm)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// unrelatedWorkspaces returns the calls to check on workspaces with no
// part on a FUSE mount, each with a workspace of its own, so that they
// can run at once: a live slot, a dead one and one with no pid file.
func unrelatedWorkspaces(t *testing.T) []stallCase {
	t.Helper()
	live := startChild(t, "sleep").Process.Pid
	dead := deadPID(t)
	layout := func() string {
		ws, swarm := workspace(t)
		addSlot(t, swarm, "live", pidLine(live))
		addSlot(t, swarm, "dead", pidLine(dead))
		addSlot(t, swarm, "half-built", noPIDFile)
		return ws
	}
	return []stallCase{
		{call: "Scan", ws: layout(), want: []string{"map[dead:gone half-built:no-pid-file live:live]"}},
		{call: "DeadSlots", ws: layout(), want: []string{"[dead]"}},
		{call: "LiveSlots", ws: layout(), want: []string{fmt.Sprintf("[{live %d}]", live)}},
		{call: "Users", ws: layout(), slots: []string{"dead"}, want: []string{"map[]"}},
		{call: "PruneDead", ws: layout(), want: []string{"[dead]"}, after: []string{"half-built", "live"}},
	}
}

// TestCallsBesideFUSE runs every call on workspaces that have nothing to
// do with a FUSE mount a child works in: first while its server answers,
// which shows the cases right, then while it is stopped, when every stat
// of the child's working directory or open files hangs.
func TestCallsBesideFUSE(t *testing.T) {
	t.Run("answering", func(t *testing.T) {
		m := mountFUSE(t, tempDir(t))
		m.hold()
		m.runWithin(t, unrelatedWorkspaces(t))
	})
	t.Run("stalled", func(t *testing.T) {
		m := stalledFUSE(t, "")
		m.runWithin(t, unrelatedWorkspaces(t))
	})
}

// TestSlotIsFUSEMount mounts the FUSE file system on a slot directory
// itself, with a child working in it, so that the slot's pid file is to
// be looked up on the mount: first while its server answers, then while it
// is stopped. The calls must answer in time, about that slot too, and
// PruneDead must keep it and remove the dead slot beside it.
func TestSlotIsFUSEMount(t *testing.T) {
	for _, stalled := range []bool{false, true} {
		t.Run(map[bool]string{false: "answering", true: "stalled"}[stalled], func(t *testing.T) {
			live := startChild(t, "sleep").Process.Pid
			ws, swarm := workspace(t)
			addSlot(t, swarm, "live", pidLine(live))
			addSlot(t, swarm, "dead", pidLine(deadPID(t)))
			addSlot(t, swarm, "half-built", noPIDFile)
			m := mountFUSE(t, addSlot(t, swarm, "mounted", noPIDFile))
			m.hold()
			if stalled {
				m.stall()
			}
			// Whether a pid file that cannot be reached counts as missing
			// or unusable is the library's to say; either leaves the slot
			// alone.
			wantScan := []string{
				"map[dead:gone half-built:no-pid-file live:live mounted:bad-pid-file]",
				"map[dead:gone half-built:no-pid-file live:live mounted:no-pid-file]",
			}
			m.runWithin(t, []stallCase{
				{call: "Scan", ws: ws, want: wantScan},
				{call: "DeadSlots", ws: ws, want: []string{"[dead]"}},
				{call: "LiveSlots", ws: ws, want: []string{fmt.Sprintf("[{live %d}]", live)}},
				{call: "Users", ws: ws, slots: []string{"mounted"}, want: []string{"map[]"}, wantErr: `"mounted"`},
			})
			// PruneDead last, as it changes what the others would see.
			m.runWithin(t, []stallCase{
				{call: "PruneDead", ws: ws, want: []string{"[dead]"}, after: []string{"half-built", "live", "mounted"}},
			})
		})
	}
}

// TestLeafInFUSEMount names the Holder, a process working in a FUSE mount,
// in a slot's pid file written an hour before it started, by the clocks.
// To tell a leaf whose clock stepped from a stranger that took its pid,
// Scan looks whether the process uses the slot through its /proc links,
// which lead into the mount: first while the server answers, then while
// it is stopped. Each call gets a workspace of its own.
func TestLeafInFUSEMount(t *testing.T) {
	for _, stalled := range []bool{false, true} {
		t.Run(map[bool]string{false: "answering", true: "stalled"}[stalled], func(t *testing.T) {
			m := mountFUSE(t, tempDir(t))
			holder := m.hold().pid()
			if stalled {
				m.stall()
			}
			layout := func() string {
				ws, swarm := workspace(t)
				backdate(t, addSlot(t, swarm, "leaf", pidLine(holder)))
				return ws
			}
			// The Holder does not use the slot, so the slot is reused. Where
			// the Holder's files cannot be looked at, taking it for the
			// leaf is a safe answer too.
			want := func(reused, live string) []string {
				if stalled {
					return []string{reused, live}
				}
				return []string{reused}
			}
			m.runWithin(t, []stallCase{
				{call: "Scan", ws: layout(), want: want("map[leaf:reused]", "map[leaf:live]")},
				{call: "DeadSlots", ws: layout(), want: want("[leaf]", "[]")},
				{call: "LiveSlots", ws: layout(), want: want("[]", fmt.Sprintf("[{leaf %d}]", holder))},
				{call: "PruneDead", ws: layout(), want: want("[leaf]", "[]")},
			})
		})
	}
}
