//go:build unix

package slotgc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The baselines are what a caller would write without this package: read
// each pid file whole, parse it, and ask os.Process.Signal(0). They have no
// zombie or reuse check and work on Unix only; they are here only to be
// measured against in the same run.

func naiveDeadSlots(ws string) ([]string, error) {
	var dead []string
	err := naiveEach(ws, func(name string, alive bool) {
		if !alive {
			dead = append(dead, name)
		}
	})
	return dead, err
}

func naiveLiveSlots(ws string) ([]Slot, error) {
	var live []Slot
	err := naiveEach(ws, func(name string, alive bool) {
		if alive {
			live = append(live, Slot{Name: name})
		}
	})
	return live, err
}

func naiveEach(ws string, found func(name string, alive bool)) error {
	swarm := filepath.Join(ws, SwarmDir)
	entries, err := os.ReadDir(swarm)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		content, err := os.ReadFile(filepath.Join(swarm, e.Name(), PIDFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(content)))
		if err != nil || pid < 2 {
			continue
		}
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		found(e.Name(), p.Signal(syscall.Signal(0)) == nil)
		p.Release()
	}
	return nil
}

// benchWorkspace makes a workspace of n slots whose pid files name the
// pids in turn.
func benchWorkspace(b *testing.B, n int, pids []int) string {
	b.Helper()
	ws := b.TempDir()
	swarm := filepath.Join(ws, SwarmDir)
	for i := range n {
		dir := filepath.Join(swarm, fmt.Sprintf("slot-%05d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(pidLine(pids[i%len(pids)])), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return ws
}

// liveLeaves is how many live children the LiveSlots benchmark spreads its
// slots over: enough that no single /proc entry stays hot in every cache.
const liveLeaves = 16

var benchSizes = []int{10, 1000, 10000}

func BenchmarkDeadSlots(b *testing.B) {
	benchScan(b, []int{deadPID(b)}, DeadSlots, naiveDeadSlots)
}

func BenchmarkLiveSlots(b *testing.B) {
	var live []int
	for range liveLeaves {
		live = append(live, startChild(b, "sleep").Process.Pid)
	}
	benchScan(b, live, LiveSlots, naiveLiveSlots)
}

// benchScan times a scan and its naive baseline, side by side, on
// workspaces of each of the benchSizes whose slots name pids in turn; every
// slot must be in the result.
func benchScan[R any](b *testing.B, pids []int, scan, naive func(string) ([]R, error)) {
	for _, n := range benchSizes {
		ws := benchWorkspace(b, n, pids)
		for _, impl := range []struct {
			name string
			call func(string) ([]R, error)
		}{{"slotgc", scan}, {"naive", naive}} {
			b.Run(fmt.Sprintf("slots=%d/impl=%s", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					got, err := impl.call(ws)
					if len(got) != n || err != nil {
						b.Fatalf("%s(ws) = %d slots, %v, want %d, nil", impl.name, len(got), err, n)
					}
				}
			})
		}
	}
}

// naiveKill is the baseline for Kill: SIGTERM, then a check every 50ms.
func naiveKill(pid int) bool {
	const pollEvery = 50 * time.Millisecond
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	if p.Signal(syscall.SIGTERM) != nil {
		return true
	}
	for deadline := time.Now().Add(killGrace); time.Now().Before(deadline); {
		time.Sleep(pollEvery)
		if p.Signal(syscall.Signal(0)) != nil {
			return true
		}
	}
	return false
}

// BenchmarkKill times killing a child that exits at once on SIGTERM, from
// the call to its return; starting and reaping the child are not timed.
// A reaper waits for the child meanwhile, as an init would (the baseline's
// Signal(0) cannot tell a zombie from a live process), and the time from
// the reaper's wake-up to Kill's return is reported as
// us-after-exit/op: how late Kill notices the exit.
func BenchmarkKill(b *testing.B) {
	type reaped struct {
		err error
		at  time.Time
	}
	for _, impl := range []struct {
		name string
		kill func(int) bool
	}{{"slotgc", Kill}, {"naive", naiveKill}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			var lateness time.Duration
			for b.Loop() {
				b.StopTimer()
				cmd := helperCmd(b, testBinary(b), "sleep")
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				awaitReady(b, "sleep", stdout)
				reaper := make(chan reaped, 1)
				go func() {
					err := cmd.Wait()
					reaper <- reaped{err, time.Now()}
				}()
				b.StartTimer()
				gone := impl.kill(cmd.Process.Pid)
				returned := time.Now()
				b.StopTimer()
				r := <-reaper
				if !gone || r.err == nil {
					b.Fatalf("%s(%d) = %v, child ended with %v", impl.name, cmd.Process.Pid, gone, r.err)
				}
				lateness += returned.Sub(r.at)
				b.StartTimer()
			}
			b.ReportMetric(float64(lateness.Microseconds())/float64(b.N), "us-after-exit/op")
		})
	}
}
