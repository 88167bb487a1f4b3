//go:build linux

package slotgc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Users that move while the guard looks: its passes over /proc and its
// walks of a tree are made one after the other, and a process may act
// between any two of them.

var _ = registerHelper("steps", func() {
	// Start in the directory SLOTGC_TEST_ARG names, say "ready", then run
	// each line of stdin, commands separated by ";", and say "ok" or
	// "err <why>":
	//
	//	cd DIR      change the working directory
	//	rmrf PATH   remove a tree
	//	hold PATH   open PATH to append (making it), write to it, keep it
	//	drop PATH   close what hold opened at PATH
	//	rm PATH     unlink PATH
	//	dir PATH    open the directory PATH and keep it; "@" in later
	//	            paths names it (/proc/self/fd/N), as a process
	//	            working through a directory descriptor does
	if err := os.Chdir(os.Getenv(helperArgEnv)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	held := map[string]*os.File{}
	at := "@"
	fmt.Println("ready")
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		var err error
		for cmd := range strings.SplitSeq(lines.Text(), ";") {
			verb, arg, _ := strings.Cut(strings.TrimSpace(cmd), " ")
			arg = strings.ReplaceAll(arg, "@", at)
			switch verb {
			case "cd":
				err = os.Chdir(arg)
			case "rmrf":
				err = os.RemoveAll(arg)
			case "hold":
				var f *os.File
				if f, err = os.OpenFile(arg, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
					_, err = fmt.Fprintf(f, "work of pid %d\n", os.Getpid())
					held[arg] = f
				}
			case "drop":
				if f := held[arg]; f != nil {
					err = f.Close()
					delete(held, arg)
				}
			case "rm":
				err = os.Remove(arg)
			case "dir":
				var fd int
				fd, err = syscall.Open(arg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
				at = fmt.Sprintf("/proc/self/fd/%d", fd)
			default:
				err = fmt.Errorf("unknown command %q", verb)
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			fmt.Println("err", err)
		} else {
			fmt.Println("ok")
		}
	}
	time.Sleep(childLifetime)
})

// stepper is a running "steps" helper.
type stepper struct {
	cmd   *exec.Cmd
	stdin io.Writer
	said  *bufio.Reader
}

// startStepper starts a "steps" helper in dir and waits until it is
// ready; it is killed and reaped when the test ends.
func startStepper(t *testing.T, dir string) *stepper {
	t.Helper()
	cmd := helperCmd(t, testBinary(t), "steps")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &stepper{cmd: cmd, stdin: stdin, said: bufio.NewReader(stdout)}
	if line, _ := s.said.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("setup: the stepper said %q, want ready", line)
	}
	return s
}

// do has the stepper run cmds and waits until it has.
func (s *stepper) do(t *testing.T, cmds string) {
	t.Helper()
	fmt.Fprintln(s.stdin, cmds)
	if line, _ := s.said.ReadString('\n'); strings.TrimSpace(line) != "ok" {
		t.Errorf("setup: the stepper ran %q and said %q", cmds, line)
	}
}

func (s *stepper) pid() int { return s.cmd.Process.Pid }

// betweenPassAndWalk has the guard call steps[i] in its i-th look at a
// tree (the check's, then the recheck's), between its first pass over
// /proc and its walk; a nil step does nothing.
func betweenPassAndWalk(t *testing.T, steps ...func()) {
	t.Helper()
	looks := 0
	testHookLooking = func(_ string, afterWalk bool) {
		if afterWalk {
			return
		}
		if looks < len(steps) && steps[looks] != nil {
			steps[looks]()
		}
		looks++
	}
	t.Cleanup(func() { testHookLooking = nil })
}

// TestPruneSeesUserBetweenWalkAndPass has a late user, whose working
// directory is in a detached slot when the recheck's first pass over
// /proc reads it, make a file there once the walk is done, hold it open
// and leave before the second pass: the first pass saw a directory the
// walk found, and the slot is put back.
func TestPruneSeesUserBetweenWalkAndPass(t *testing.T) {
	ws, swarm := workspace(t)
	wt := filepath.Join(addSlot(t, swarm, "s", pidLine(deadPID(t))), "wt")
	mkdirs(t, wt)
	writeFile(t, filepath.Join(wt, "source.go"), "package main\n")
	p := startStepper(t, "/")
	testHookChecked = func(string) { p.do(t, "cd "+wt) }
	t.Cleanup(func() { testHookChecked = nil })
	testHookLooking = func(_ string, afterWalk bool) {
		if afterWalk {
			p.do(t, "hold made-late.txt; cd /")
		}
	}
	t.Cleanup(func() { testHookLooking = nil })
	wantKeptInUse(t, ws, filepath.Join(wt, "made-late.txt"), p.pid())
}

// TestPruneSeesUserMovingWithinSlot has a process working in a dead
// slot's worktree move, between a pass over /proc and the walk after it,
// to another directory of the slot that was there all along, and remove
// the one it left, as a shell running `cd .. && rm -rf build` does; then
// it holds a file of the slot. The pass before the walk saw a directory
// the walk no longer finds, so the pass after the walk must see it.
//
//   - "all along": it is in wt/a from the start, and moves in both looks
//     (wt/a to wt/b in the check's, wt/b to wt in the recheck's);
//   - "late leaf": it goes into wt/a once the check let the slot go and
//     before it is detached, and moves in the recheck's look.
func TestPruneSeesUserMovingWithinSlot(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "all along", true: "late leaf"}[late], func(t *testing.T) {
			ws, swarm := workspace(t)
			wt := filepath.Join(addSlot(t, swarm, "s", pidLine(deadPID(t))), "wt")
			mkdirs(t, filepath.Join(wt, "a"), filepath.Join(wt, "b"))
			writeFile(t, filepath.Join(wt, "work.txt"), "precious uncommitted work\n")
			writeFile(t, filepath.Join(wt, "a", "scratch.o"), "x")
			writeFile(t, filepath.Join(wt, "b", "scratch.o"), "x")

			var p *stepper
			if late {
				p = startStepper(t, "/")
				testHookChecked = func(string) { p.do(t, "cd "+filepath.Join(wt, "a")) }
				t.Cleanup(func() { testHookChecked = nil })
				betweenPassAndWalk(t, nil, func() { p.do(t, "cd ..; rmrf a; hold work.txt") })
			} else {
				p = startStepper(t, filepath.Join(wt, "a"))
				betweenPassAndWalk(t,
					func() { p.do(t, "cd ../b; rmrf ../a") },
					func() { p.do(t, "cd ..; rmrf b; hold work.txt") },
				)
			}
			wantKeptInUse(t, ws, filepath.Join(wt, "work.txt"), p.pid())
		})
	}
}

// TestPruneSeesUserHoldingJobsInTurn has a process working from /, through
// a directory descriptor (which does not count as a use), go through the
// job files of a queue in a dead slot holding one at a time: between each
// look's first pass and its walk, it takes the next job, which was there
// all along, and removes the one it held.
func TestPruneSeesUserHoldingJobsInTurn(t *testing.T) {
	ws, swarm := workspace(t)
	queue := filepath.Join(addSlot(t, swarm, "s", pidLine(deadPID(t))), "wt", "queue")
	mkdirs(t, queue)
	for i := 1; i <= 3; i++ {
		writeFile(t, filepath.Join(queue, fmt.Sprintf("job%d", i)), fmt.Sprintf("job %d\n", i))
	}
	p := startStepper(t, "/")
	p.do(t, "dir "+queue+"; hold @/job1")
	betweenPassAndWalk(t,
		func() { p.do(t, "hold @/job2; drop @/job1; rm @/job1") },
		func() { p.do(t, "hold @/job3; drop @/job2; rm @/job2") },
	)
	wantKeptInUse(t, ws, filepath.Join(queue, "job3"), p.pid())
}

// wantKeptInUse prunes ws, whose one dead slot pid uses, and fails unless
// the slot stays in use with its file kept.
func wantKeptInUse(t *testing.T, ws, kept string, pid int) {
	t.Helper()
	got, err := PruneDead(ws)
	if len(got) != 0 || !errors.Is(err, ErrInUse) {
		t.Errorf("PruneDead(ws) = %v, %v, want [] and an ErrInUse: pid %d works in the slot", got, err, pid)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("%s, which pid %d holds open, is gone: %v", kept, pid, err)
	}
}

// TestExpiryLooksAfterTheRemovals has a process come to a recovery entry
// old enough to expire while a prune removes a dead slot, before the
// expiry looks at the entries: the look must see it, not reuse what the
// slot's recheck read before the removals. The process works in the
// entry, or mounts a tmpfs inside it in a mount namespace of its own.
func TestExpiryLooksAfterTheRemovals(t *testing.T) {
	for _, user := range []string{"working directory", "mount in another namespace"} {
		t.Run(user, func(t *testing.T) {
			ws, swarm := workspace(t)
			a := addSlot(t, swarm, "a", pidLine(deadPID(t)))
			mkdirs(t, filepath.Join(a, "wt", "cache"))
			writeFile(t, filepath.Join(a, "wt", "work.txt"), "rescued work\n")
			first, err := Prune(ws, PruneOptions{Keep: time.Nanosecond})
			if err != nil || len(first.Slots) != 1 || first.Slots[0].Recovery == "" {
				t.Fatalf("setup: Prune = %+v, %v, want slot a recovered", first, err)
			}
			entry := first.Slots[0].Recovery
			addSlot(t, swarm, "b", pidLine(deadPID(t)))

			var come func()
			var want error
			switch user {
			case "working directory":
				want = ErrInUse
				come = func() { startStepper(t, "/").do(t, "cd "+entry) }
			default:
				needRoot(t)
				want = ErrMountInside
				come = func() { mountInOwnNamespace(t, filepath.Join(entry, "cache")) }
			}
			report, err := Prune(ws, PruneOptions{Keep: time.Nanosecond, Progress: func(int, int, SlotOutcome) { come() }})
			if len(report.Expired) != 0 || !errors.Is(err, want) {
				t.Errorf("Prune(ws, Keep 1ns) expired %v, %v, want none and an error wrapping %v", report.Expired, err, want)
			}
			if _, err := os.Stat(filepath.Join(entry, "work.txt")); err != nil {
				t.Errorf("the recovery entry was expired while in use: %v", err)
			}
		})
	}
}

// mountInOwnNamespace mounts a tmpfs on dir in a new mount namespace held
// by a child, which is killed and reaped when the test ends.
func mountInOwnNamespace(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs scratch "$1" && cd / && echo ready && exec sleep 60`, "sh", dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("setup: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("setup: the namespace's child said %q, want ready", line)
	}
}

// TestSurveyErrorNamesFirstFailure asks Users about a slot with a mount
// point deep under wt/d00 and one right under wt/d39, which the survey's
// walkers meet in no set order: every answer names the first by path.
func TestSurveyErrorNamesFirstFailure(t *testing.T) {
	needRoot(t)
	const asks = 10
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	deep := filepath.Join(slot, "wt", "d00")
	for i := range 40 {
		deep = filepath.Join(deep, fmt.Sprintf("l%02d", i))
		mkdirs(t, deep)
		for j := range 20 {
			writeFile(t, filepath.Join(deep, fmt.Sprintf("f%02d", j)), "x")
		}
	}
	for i := 1; i < 39; i++ {
		mkdirs(t, filepath.Join(slot, "wt", fmt.Sprintf("d%02d", i)))
	}
	first, last := filepath.Join(deep, "m"), filepath.Join(slot, "wt", "d39", "m")
	mkdirs(t, first, last)
	mount(t, "tmpfs", first, "tmpfs")
	mount(t, "tmpfs", last, "tmpfs")
	for range asks {
		if _, err := Users(ws, "s"); !errors.Is(err, ErrMountInside) || !strings.Contains(err.Error(), first) {
			t.Fatalf("Users(ws, s) = %v, want an ErrMountInside naming %s, the first by path", err, first)
		}
	}
}
