package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

func TestAlive(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"self", os.Getpid(), true},
		{"live child", startChild(t, "sleep").Process.Pid, true},
		{"dead child", deadPID(t), false},
		{"zero", 0, false},
		{"minus one", -1, false},
	}
	if pid, ok := pastMaxPID(1); ok {
		tests = append(tests, struct {
			name string
			pid  int
			want bool
		}{"past 2^31-1", pid, false})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Alive(tc.pid); got != tc.want {
				t.Errorf("Alive(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
}

func TestKillRefuses(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"process group", 0, true},
		{"every process", -1, true},
		{"other group", -2, true},
		{"init", 1, false},
		{"self", os.Getpid(), false},
	}
	if pid, ok := pastMaxPID(2); ok {
		tests = append(tests, struct {
			name string
			pid  int
			want bool
		}{"past 2^31-1", pid, true})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Kill(tc.pid); got != tc.want {
				t.Errorf("Kill(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
	// Still here: neither this process nor its group was signalled.
}

func TestKill(t *testing.T) {
	t.Run("already dead", func(t *testing.T) {
		if pid := deadPID(t); !Kill(pid) {
			t.Errorf("Kill(%d) = false for a reaped child, want true", pid)
		}
	})
	t.Run("sleeping child", func(t *testing.T) {
		cmd := startChild(t, "sleep")
		start := time.Now()
		if !Kill(cmd.Process.Pid) {
			t.Fatalf("Kill(%d) = false, want true", cmd.Process.Pid)
		}
		if took := time.Since(start); took > promptKill {
			t.Errorf("Kill took %v for a child that dies on the first request, want under %v", took, promptKill)
		}
		err := cmd.Wait()
		if err == nil || !killedPolitely(cmd.ProcessState) {
			t.Errorf("child ended with %v, want the polite request (SIGTERM on Unix, termination on Windows)", err)
		}
		if Alive(cmd.Process.Pid) {
			t.Errorf("Alive(%d) = true after Kill", cmd.Process.Pid)
		}
	})
}

// TestKillSlot stops a slot's live leaf, and refuses when the pid file no
// longer names the pid asked for.
func TestKillSlot(t *testing.T) {
	ws, swarm := workspace(t)
	leaf := startChild(t, "sleep")
	pid := leaf.Process.Pid
	addSlot(t, swarm, "leaf", pidLine(pid))
	if gone, err := KillSlot(ws, Slot{"leaf", pid + 1}); gone || !errors.Is(err, ErrPIDFileChanged) {
		t.Errorf("KillSlot(ws, {leaf %d}) = %v, %v, want false and %v", pid+1, gone, err, ErrPIDFileChanged)
	}
	if !Alive(pid) {
		t.Fatal("KillSlot of a pid the slot does not name stopped the leaf")
	}
	if gone, err := KillSlot(ws, Slot{"leaf", pid}); !gone || err != nil {
		t.Errorf("KillSlot(ws, {leaf %d}) = %v, %v, want true, nil", pid, gone, err)
	}
	if err := leaf.Wait(); err == nil || !killedPolitely(leaf.ProcessState) {
		t.Errorf("the leaf ended with %v, want the polite request", err)
	}
	if gone, err := KillSlot(ws, Slot{"missing", pid}); gone || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("KillSlot(ws, {missing %d}) = %v, %v, want false and an error wrapping fs.ErrNotExist", pid, gone, err)
	}
}
