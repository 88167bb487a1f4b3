package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bones-swarm/slotgc"
)

// demoLeafEnv, when set, makes slotgc act as a demo leaf instead: write its
// own pid into the file the variable names, as a real leaf does, then wait
// to be stopped.
const demoLeafEnv = "SLOTGC_DEMO_LEAF"

// demoLeafLifetime bounds how long a demo leaf lives if nobody stops it.
const demoLeafLifetime = 30 * time.Minute

func runDemoLeaf(pidFile string) int {
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "slotgc demo leaf: %v\n", err)
		return 1
	}
	time.Sleep(demoLeafLifetime)
	return 0
}

// demo makes a workspace in dir with four slots: alpha, run by a live demo
// leaf; beta, whose leaf has exited; gamma, half built, with no pid file;
// delta, whose pid file holds no pid.
func (c cli) demo(dir string) int {
	livePID, err := makeDemo(dir)
	if err != nil {
		return c.fail(fmt.Errorf("demo: %w", err))
	}
	fmt.Fprintf(c.stdout, "made a demo workspace in %s: alpha is live (pid %d), beta is dead, gamma has no pid file, delta an unusable one\n", dir, livePID)
	fmt.Fprintf(c.stdout, "try: slotgc -C %s status; slotgc -C %s prune -n; slotgc -C %s down\n", dir, dir, dir)
	return exitOK
}

func makeDemo(dir string) (livePID int, err error) {
	swarm := filepath.Join(dir, slotgc.SwarmDir)
	for _, name := range []string{"alpha", "beta", "gamma", "delta"} {
		if err := os.MkdirAll(filepath.Join(swarm, name), 0o755); err != nil {
			return 0, err
		}
	}
	pidFile := func(slot string) string { return filepath.Join(swarm, slot, slotgc.PIDFile) }
	// beta's leaf writes its pid and is stopped at once: a dead leaf.
	beta, err := startDemoLeaf(pidFile("beta"))
	if err != nil {
		return 0, err
	}
	beta.Process.Kill()
	beta.Wait()
	// alpha's leaf lives on after this command exits, until stopped.
	alpha, err := startDemoLeaf(pidFile("alpha"))
	if err != nil {
		return 0, err
	}
	livePID = alpha.Process.Pid
	alpha.Process.Release()
	if err := os.WriteFile(pidFile("delta"), []byte("starting\n"), 0o644); err != nil {
		return 0, err
	}
	return livePID, nil
}

// startDemoLeaf starts this program as a demo leaf and returns once the leaf
// has written its pid into pidFile.
func startDemoLeaf(pidFile string) (*exec.Cmd, error) {
	const (
		patience = 10 * time.Second
		pause    = 5 * time.Millisecond
	)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), demoLeafEnv+"="+pidFile)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(patience); time.Now().Before(deadline); time.Sleep(pause) {
		if info, err := os.Stat(pidFile); err == nil && info.Size() > 0 {
			return cmd, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("demo leaf did not write %s within %v", pidFile, patience)
}
