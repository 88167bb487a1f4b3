package slotgc_test

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

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
