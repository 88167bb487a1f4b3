//go:build unix

package slotgc

import (
	"syscall"
	"testing"
	"time"
)

func TestKillEscalates(t *testing.T) {
	cmd := startChild(t, "ignore-term")
	start := time.Now()
	if !Kill(cmd.Process.Pid) {
		t.Fatalf("Kill(%d) = false for a child ignoring SIGTERM, want true", cmd.Process.Pid)
	}
	if took := time.Since(start); took < killGrace {
		t.Errorf("Kill took %v, want at least the %v grace before SIGKILL", took, killGrace)
	}
	cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child ended with %v, want SIGKILL", cmd.ProcessState)
	}
}

// shortKillGrace stands in for Kill's 2 s grace in the tests whose subject
// is not the grace itself: long enough for a child that obeys SIGTERM to
// exit under a loaded race run, short enough not to dominate the suite.
const shortKillGrace = 500 * time.Millisecond

// shortenKillGrace makes Kill wait shortKillGrace instead of its real
// grace until the test ends. TestKillEscalates keeps the real one.
func shortenKillGrace(t *testing.T) {
	t.Helper()
	real := killGrace
	killGrace = shortKillGrace
	t.Cleanup(func() { killGrace = real })
}

// TestKillByPID runs the kill(2)-and-poll path that systems without pidfds
// use, here where it can be checked against real children.
func TestKillByPID(t *testing.T) {
	shortenKillGrace(t)
	tests := []struct {
		mode       string
		wantSignal syscall.Signal
		minTime    time.Duration
	}{
		{"sleep", syscall.SIGTERM, 0},
		{"ignore-term", syscall.SIGKILL, killGrace},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := startChild(t, tc.mode)
			start := time.Now()
			if !killByPID(cmd.Process.Pid) {
				t.Fatalf("killByPID(%d) = false, want true", cmd.Process.Pid)
			}
			if took := time.Since(start); took < tc.minTime || took > tc.minTime+promptKill {
				t.Errorf("killByPID took %v, want %v to %v", took, tc.minTime, tc.minTime+promptKill)
			}
			cmd.Wait()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != tc.wantSignal {
				t.Errorf("child ended with %v, want %v", cmd.ProcessState, tc.wantSignal)
			}
		})
	}
	if pid := deadPID(t); !killByPID(pid) {
		t.Errorf("killByPID(%d) = false for a reaped child, want true", pid)
	}
}
