package slotgc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// waitProcStat waits until the /proc stat of pid satisfies ok and returns
// it, failing the test after settleTimeout.
func waitProcStat(t *testing.T, pid int, what string, ok func(procStat) bool) procStat {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		st, err := readProcStat(pid)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup: pid %d not %s after %v: %+v, %v", pid, what, settleTimeout, st, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// mount mounts source on target (a tmpfs when fstype is "tmpfs", a bind
// mount when it is ""), checks that /proc/self/mountinfo lists it, and
// unmounts it when the test ends. Where mounting is forbidden the test is
// skipped, unless SLOTGC_TEST_REQUIRE_ROOT=1 forbids skipping.
func mount(t *testing.T, source, target, fstype string) {
	t.Helper()
	flags := uintptr(0)
	if fstype == "" {
		flags = syscall.MS_BIND
	}
	if err := syscall.Mount(source, target, fstype, flags, ""); err != nil {
		if os.Getenv(requireRootEnv) == "1" {
			t.Fatalf("mount %s on %s: %v, and %s=1 forbids skipping", source, target, err, requireRootEnv)
		}
		t.Skipf("mounting is forbidden here: mount %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
	points := readMountPoints()
	if !slices.Contains(points, target) {
		t.Fatalf("setup: %s is not in /proc/self/mountinfo after mounting it", target)
	}
}

// backdate sets a pid file's times an hour back: the same arithmetic as a
// wall clock stepped an hour forward while the leaf ran.
func backdate(t *testing.T, slotDir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(slotDir, PIDFile), old, old); err != nil {
		t.Fatal(err)
	}
}

// nsLastPID is where root sets the last pid handed out in its pid
// namespace: the next process started gets the one after it, if free.
const nsLastPID = "/proc/sys/kernel/ns_last_pid"

// startChildWithPID starts a sleep helper child with pid, retrying while
// other processes that fork meanwhile take it first.
func startChildWithPID(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	const tries = 50
	for range tries {
		if err := os.WriteFile(nsLastPID, []byte(strconv.Itoa(pid-1)), 0o644); err != nil {
			t.Fatalf("setup: %v", err)
		}
		cmd := startChild(t, "sleep")
		if cmd.Process.Pid == pid {
			return cmd
		}
	}
	t.Fatalf("setup: no child got pid %d in %d tries", pid, tries)
	return nil
}
