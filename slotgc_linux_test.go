//go:build linux

package slotgc

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	// The leader-exit helper must run its main goroutine on the main
	// thread, the thread-group leader; init runs there.
	if os.Getenv(helperEnv) == "leader-exit" {
		runtime.LockOSThread()
		go func() {
			time.Sleep(childLifetime)
			os.Exit(0)
		}()
		// exit(2), unlike exit_group(2), ends only the calling thread.
		syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0)
	}
}

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

func TestZombie(t *testing.T) {
	ws, swarm := workspace(t)
	cmd := startChild(t, "exit") // not waited for until cleanup: a zombie
	pid := cmd.Process.Pid
	// While exit_group(2) ends the other threads, the leader already shows
	// Z; the zombie is settled once it is the only thread left.
	waitProcStat(t, pid, "a settled zombie", func(st procStat) bool { return st.state == 'Z' && st.threads == 1 })
	addSlot(t, swarm, "zombie", pidLine(pid))

	if got, err := DeadSlots(ws); len(got) != 1 || got[0] != "zombie" || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want [zombie], nil", got, err)
	}
	if Alive(pid) {
		t.Errorf("Alive(%d) = true for a zombie, want false", pid)
	}
	start := time.Now()
	if !Kill(pid) {
		t.Errorf("Kill(%d) = false for a zombie, want true", pid)
	}
	if took := time.Since(start); took > promptKill {
		t.Errorf("Kill of a zombie took %v, want under %v", took, promptKill)
	}
	if _, err := readProcStat(pid); err != nil {
		t.Errorf("the zombie was reaped by someone: %v", err)
	}
}

// TestKillOwnUnreapedChild kills a live child nobody waits for: the child
// turns zombie on SIGTERM, and Kill must see that at once.
func TestKillOwnUnreapedChild(t *testing.T) {
	cmd := startChild(t, "sleep")
	start := time.Now()
	if !Kill(cmd.Process.Pid) {
		t.Fatalf("Kill(%d) = false, want true", cmd.Process.Pid)
	}
	if took := time.Since(start); took > promptKill {
		t.Errorf("Kill of an unreaped child took %v, want under %v", took, promptKill)
	}
	st := waitProcStat(t, cmd.Process.Pid, "a zombie", func(st procStat) bool { return true })
	if st.state != 'Z' {
		t.Errorf("after Kill the unreaped child is in state %c, want Z", st.state)
	}
}

// TestLeaderExited checks a process whose main thread exited while other
// threads run: its /proc stat shows Z, yet the process is alive.
func TestLeaderExited(t *testing.T) {
	ws, swarm := workspace(t)
	cmd := startChild(t, "leader-exit")
	pid := cmd.Process.Pid
	st := waitProcStat(t, pid, "a running process with an exited leader", func(st procStat) bool { return st.state == 'Z' })
	if st.threads < 2 {
		t.Fatalf("setup: pid %d shows %d threads, want more than the exited leader", pid, st.threads)
	}
	addSlot(t, swarm, "leader-exited", pidLine(pid))
	if got, err := LiveSlots(ws); len(got) != 1 || got[0] != (Slot{"leader-exited", pid}) || err != nil {
		t.Errorf("LiveSlots(ws) = %v, %v, want [{leader-exited %d}], nil", got, err, pid)
	}
	if !Alive(pid) {
		t.Errorf("Alive(%d) = false for a process whose leader thread exited, want true", pid)
	}
	if !Kill(pid) {
		t.Errorf("Kill(%d) = false, want true", pid)
	}
	if err := cmd.Wait(); err == nil || !killedPolitely(cmd.ProcessState) {
		t.Errorf("child ended with %v, want SIGTERM", err)
	}
}

func TestProcStatOfSelf(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'R' && st.state != 'S' || st.threads < 1 || st.startTicks == 0 {
		t.Errorf("readProcStat(self) = %+v, want a running or sleeping process with a start time", st)
	}
	var ps probeScope
	boot, ok := ps.boot()
	if !ok {
		t.Fatal("no btime in /proc/stat")
	}
	// This process started after boot and before now.
	started := boot.Add(time.Duration(st.startTicks) * (time.Second / userHZ))
	if started.Before(boot) || started.After(time.Now().Add(startTolerance)) {
		t.Errorf("own start time %v is outside boot %v .. now", started, boot)
	}
}

func TestParseProcStat(t *testing.T) {
	tail := func(state string, threads int, start uint64) string {
		// Fields 3 to 52: state, then 16 numbers, the thread count, one
		// number, the start time and 30 more.
		return fmt.Sprintf(" %s%s %d 0 %d%s\n", state, strings.Repeat(" 1", 16), threads, start, strings.Repeat(" 0", 30))
	}
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{"plain", "42 (sleep)" + tail("S", 1, 12345), procStat{'S', 1, 12345}, false},
		{"spaces and parens in the name", "42 (a) b (c d)" + tail("Z", 1, 7), procStat{'Z', 1, 7}, false},
		{"threaded zombie leader", "42 (srv)" + tail("Z", 5, 9), procStat{'Z', 5, 9}, false},
		{"no closing paren", "42 (sleep S 1 2 3", procStat{}, true},
		{"truncated", "42 (sleep) S 1 2 3\n", procStat{}, true},
		{"long state", "42 (x)" + tail("SS", 1, 1), procStat{}, true},
		{"bad start", "42 (x)" + strings.Replace(tail("S", 1, 1), " 0 1 ", " 0 x ", 1), procStat{}, true},
		{"empty", "", procStat{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.line))
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("parseProcStat(%q) = %+v, %v, want %+v, error %v", tc.line, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProcStatExited(t *testing.T) {
	tests := []struct {
		st   procStat
		want bool
	}{
		{procStat{state: 'R', threads: 1}, false},
		{procStat{state: 'S', threads: 1}, false},
		{procStat{state: 'D', threads: 1}, false},
		{procStat{state: 'T', threads: 1}, false},
		{procStat{state: 'Z', threads: 1}, true},
		{procStat{state: 'Z', threads: 0}, true},
		{procStat{state: 'Z', threads: 3}, false},
		{procStat{state: 'X', threads: 0}, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%c/%d", tc.st.state, tc.st.threads), func(t *testing.T) {
			if got := tc.st.exited(); got != tc.want {
				t.Errorf("%+v.exited() = %v, want %v", tc.st, got, tc.want)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 17 1000 1 18446744073709551615"))
	f.Add([]byte("2 ()) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, line []byte) {
		st, err := parseProcStat(line)
		if err != nil {
			if st != (procStat{}) {
				t.Fatalf("parseProcStat(%q) = %+v with error %v", line, st, err)
			}
			return
		}
		// The fields picked are the ones after the last ')'.
		i := strings.LastIndexByte(string(line), ')')
		fields := strings.Fields(string(line[i+1:]))
		threads, err1 := strconv.Atoi(fields[17])
		start, err2 := strconv.ParseUint(fields[19], 10, 64)
		if string([]byte{st.state}) != fields[0] || err1 != nil || threads != st.threads || err2 != nil || start != st.startTicks {
			t.Fatalf("parseProcStat(%q) = %+v, fields %q", line, st, fields)
		}
	})
}
