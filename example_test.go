package slotgc_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bones-swarm/slotgc"
)

// exampleWorkspace builds a workspace with three slots: one whose leaf is
// this very process, one whose leaf has exited, and one still being built
// (no pid file yet).
func exampleWorkspace() string {
	ws, err := os.MkdirTemp("", "slotgc-example-")
	if err != nil {
		log.Fatal(err)
	}
	// A leaf that has exited: any short-lived process, waited for.
	done := exec.Command(os.Args[0], "-test.run=^$")
	if err := done.Run(); err != nil {
		log.Fatal(err)
	}
	for slot, pid := range map[string]int{"alpha": os.Getpid(), "beta": done.Process.Pid, "gamma": 0} {
		dir := filepath.Join(ws, slotgc.SwarmDir, slot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
		if pid != 0 {
			content := []byte(strconv.Itoa(pid) + "\n")
			if err := os.WriteFile(filepath.Join(dir, slotgc.PIDFile), content, 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
	return ws
}

func ExampleDeadSlots() {
	ws := exampleWorkspace()
	defer os.RemoveAll(ws)

	dead, err := slotgc.DeadSlots(ws)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stale slots:", dead)
	// Output: stale slots: [beta]
}

func ExampleLiveSlots() {
	ws := exampleWorkspace()
	defer os.RemoveAll(ws)

	live, err := slotgc.LiveSlots(ws)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range live {
		fmt.Println(s.Name, "is run by this process:", s.PID == os.Getpid())
	}
	// Output: alpha is run by this process: true
}

func ExampleScan() {
	ws := exampleWorkspace()
	defer os.RemoveAll(ws)

	statuses, err := slotgc.Scan(ws)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range statuses {
		fmt.Printf("%s: %s (dead: %v)\n", s.Name, s.State, s.State.Dead())
	}
	// Output:
	// alpha: live (dead: false)
	// beta: gone (dead: true)
	// gamma: no-pid-file (dead: false)
}

func ExamplePruneDead() {
	ws := exampleWorkspace()
	defer os.RemoveAll(ws)

	removed, err := slotgc.PruneDead(ws)
	for _, name := range removed {
		fmt.Println("removed", name)
	}
	if err != nil {
		// Some slots could not be removed; the error names each.
		log.Print(err)
	}
	// Output: removed beta
}

func ExamplePrune() {
	ws := exampleWorkspace()
	defer os.RemoveAll(ws)
	// beta's leaf has exited, leaving work in its worktree, edited just now.
	worktree := filepath.Join(ws, slotgc.SwarmDir, "beta", slotgc.WorktreeDir)
	if err := os.MkdirAll(worktree, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(worktree, "notes.txt"), []byte("half done\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	// A grace period keeps a dead slot that changed within it.
	report, err := slotgc.Prune(ws, slotgc.PruneOptions{Idle: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range report.Slots {
		fmt.Println(o.Slot, o.Action, "as recently changed:", errors.Is(o.Reason, slotgc.ErrRecentlyChanged))
	}

	// Recoverable removal moves its worktree into the recovery directory,
	// whence Restore brings it back.
	report, err = slotgc.Prune(ws, slotgc.PruneOptions{Keep: 7 * 24 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range report.Slots {
		fmt.Println(o.Slot, o.Action, "into", filepath.Base(filepath.Dir(o.Recovery)))
	}
	entries, err := slotgc.Recoveries(ws)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println("recovery entry of", e.Slot, "made by slotgc:", e.BySlotgc)
	}
	restored, err := slotgc.Restore(ws, "beta")
	if err != nil {
		log.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(worktree, "notes.txt"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("restored %s: %s", restored.Slot, notes)
	// Output:
	// beta kept as recently changed: true
	// beta recovered into recovery
	// recovery entry of beta made by slotgc: true
	// restored beta: half done
}

func ExampleKill() {
	// Kill ends a leaf and reports whether it is gone; see LiveSlots for
	// where the pids come from.
	leaf := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	if err := leaf.Start(); err != nil {
		log.Fatal(err)
	}
	defer leaf.Wait()
	fmt.Println("gone:", slotgc.Kill(leaf.Process.Pid))
	fmt.Println("pid 0 is a process group, never signalled:", slotgc.Kill(0))
	fmt.Println("the caller itself is never signalled:", slotgc.Kill(os.Getpid()))
	// Output:
	// gone: true
	// pid 0 is a process group, never signalled: true
	// the caller itself is never signalled: false
}
