//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Slots detached in one batch, looked at together.

// TestPruneSeesUserMovingBesideBigSlots has the only user of dead slot b,
// a shell, move every 20 ms to a new directory of the slot and move the
// one it left out of it, while b is looked at in one batch with dead
// slots a and c, whose walks take longer than that: b's look passes over
// /proc on each side of b's own walk, not only before a's and after c's,
// so the shell is seen.
func TestPruneSeesUserMovingBesideBigSlots(t *testing.T) {
	const hop = "0.02" // seconds, shorter than a walk of a big slot
	ws, swarm := workspace(t)
	big := func(name string) {
		dir := addSlot(t, swarm, name, pidLine(deadPID(t)))
		for i := range 150 {
			for j := range 150 {
				mkdirs(t, filepath.Join(dir, "wt", fmt.Sprint(i), fmt.Sprint(j)))
			}
		}
	}
	big("a")
	b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(b, "wt", "x"))
	writeFile(t, filepath.Join(b, "wt", "work.txt"), "precious uncommitted work\n")
	big("c")
	shell := exec.Command("sh", "-c", `cd -P "$1/wt/x"; p=x; n=0; while :; do n=$((n+1)); mkdir ../d$n; cd -P ../d$n; mv ../$p "$2/$n"; p=d$n; sleep $3; done`,
		"sh", b, tempDir(t), hop)
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shell.Process.Kill(); shell.Wait() })

	got, err := PruneDead(ws)
	if !slices.Equal(got, []string{"a", "c"}) || !errors.Is(err, ErrInUse) {
		t.Errorf("PruneDead(ws) = %v, %v, want [a c] and an ErrInUse for b", got, err)
	}
	if _, err := os.Stat(filepath.Join(b, "wt", "work.txt")); err != nil {
		t.Errorf("slot b, whose shell (pid %d) works in it throughout, was removed: %v", shell.Process.Pid, err)
	}
}

// TestBatchIsLookedAtBeforeSlowProgress has a late user come to slot a
// after its check, so that a, detached, must go back, and a slow Progress
// for slot b, kept at its check: a is back at its name before Progress is
// called, not left detached while it runs.
func TestBatchIsLookedAtBeforeSlowProgress(t *testing.T) {
	ws, swarm := workspace(t)
	a := addSlot(t, swarm, "a", pidLine(deadPID(t)))
	writeFile(t, filepath.Join(a, "work.txt"), "precious\n")
	b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
	startStepper(t, b) // in use all along: kept at its check
	late := startStepper(t, "/")
	testHookChecked = func(slot string) {
		if slot == "a" {
			late.do(t, "cd "+a)
		}
	}
	t.Cleanup(func() { testHookChecked = nil })
	var atName bool
	progress := func(_, _ int, o SlotOutcome) {
		if o.Slot == "b" {
			_, err := os.Stat(filepath.Join(a, "work.txt"))
			atName = err == nil
		}
	}
	report, err := Prune(ws, PruneOptions{Progress: progress})
	if !errors.Is(err, ErrInUse) || len(report.Slots) != 2 || report.Slots[0].Action != Kept {
		t.Errorf("Prune(ws) = %+v, %v, want both slots kept in use", report, err)
	}
	if !atName {
		t.Error("slot a, refused by the look once detached, was not back at its name when Progress was called for slot b")
	}
}

// TestExpiryKeepsEntryItCouldNotPutBack has a process come to a recovery
// entry once the expiry detached it, and the entry's name taken
// meanwhile: the entry, refused and kept under its detached name, is
// removed by no later prune while the process works in it.
func TestExpiryKeepsEntryItCouldNotPutBack(t *testing.T) {
	ws, swarm := workspace(t)
	a := addSlot(t, swarm, "a", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(a, "wt"))
	writeFile(t, filepath.Join(a, "wt", "work.txt"), "rescued work\n")
	first, err := Prune(ws, PruneOptions{Keep: time.Nanosecond})
	if err != nil || len(first.Slots) != 1 || first.Slots[0].Recovery == "" {
		t.Fatalf("setup: Prune = %+v, %v, want slot a recovered", first, err)
	}
	entry := first.Slots[0].Recovery
	p := startStepper(t, "/")
	var detached string
	testHookLooking = func(path string, afterWalk bool) {
		if afterWalk || detached != "" || !strings.HasPrefix(filepath.Base(path), TrashPrefix+"expire.") {
			return
		}
		detached = path
		p.do(t, "cd "+path)
		if err := os.Mkdir(entry, 0o755); err != nil {
			t.Errorf("setup: %v", err)
		}
	}
	t.Cleanup(func() { testHookLooking = nil })
	if _, err := Prune(ws, PruneOptions{Keep: time.Nanosecond}); !errors.Is(err, ErrInUse) || detached == "" || !strings.Contains(err.Error(), detached) {
		t.Fatalf("setup: Prune(ws, Keep 1ns) = %v, want an ErrInUse naming where the entry is kept", err)
	}
	testHookLooking = nil

	for range 2 {
		Prune(ws, PruneOptions{Keep: time.Nanosecond})
	}
	if _, err := os.Stat(filepath.Join(detached, "work.txt")); err != nil {
		t.Errorf("the entry kept at %s, in use by pid %d, was removed: %v", detached, p.pid(), err)
	}
}
