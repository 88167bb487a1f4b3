package slotgc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The leader-exit helper ends its main thread, the thread-group leader,
// while another thread lives on; helpers run from init, on the main
// thread (see helperModes).
var _ = registerHelper("leader-exit", func() {
	runtime.LockOSThread()
	go func() {
		time.Sleep(childLifetime)
		os.Exit(0)
	}()
	// exit(2), unlike exit_group(2), ends only the calling thread.
	syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0)
})

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
	if emulated {
		t.Skip("under user-mode emulation /proc/self/stat is the emulator's own make-up")
	}
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
		{"a 64-byte name ending in a paren", "42 (" + strings.Repeat("x", 63) + ")" + ")" + tail("R", 2, 5), procStat{'R', 2, 5}, false},
		{"a name past 64 bytes", "42 (" + strings.Repeat("x", 65) + ")" + tail("R", 2, 5), procStat{}, true},
		{"a paren in a later field", "42 (x)" + tail("S", 1, 3) + ")", procStat{'S', 1, 3}, false},
		{"two spaces between fields", "42 (x) " + tail("S", 1, 3), procStat{}, true},
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
	f.Add([]byte("3 (a) b (c d)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n"))
	f.Add([]byte("4 (" + strings.Repeat("n", 63) + ")) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		st, err := parseProcStat(line)
		if err != nil {
			if st != (procStat{}) {
				t.Fatalf("parseProcStat(%q) = %+v with error %v", line, st, err)
			}
			return
		}
		// The fields picked are the ones after the name, which ends at the
		// last ')' within maxCommLen bytes of the first '(': the kernel
		// writes no longer name.
		open := strings.IndexByte(string(line), '(')
		name := line[open+1 : min(len(line), open+1+maxCommLen+1)]
		i := open + 1 + strings.LastIndexByte(string(name), ')')
		// The kernel separates fields with spaces and ends the line with a
		// newline; nothing else separates them.
		fields := strings.FieldsFunc(string(line[i+1:]), func(r rune) bool { return r == ' ' || r == '\n' })
		threads, err1 := strconv.Atoi(fields[17])
		start, err2 := strconv.ParseUint(fields[19], 10, 64)
		if string([]byte{st.state}) != fields[0] || err1 != nil || threads != st.threads || err2 != nil || start != st.startTicks {
			t.Fatalf("parseProcStat(%q) = %+v, fields %q", line, st, fields)
		}
	})
}

// The pidns-scan helper runs as pid 1 of a pid namespace of its own,
// with the /proc of the namespace it came from. SLOTGC_TEST_ARG holds a
// pid and a workspace, split by a newline: it starts a sleeper that
// gets that pid in the new namespace, names it in the pid file of slot
// "inner", scans, asks KillSlot to stop it, and prints the slot's
// state, the sleeper's pid, Alive's answer, KillSlot's, whether its
// error is ErrUnidentified and whether the sleeper still runs.
var _ = registerHelper("pidns-scan", func() {
	if err := pidnsScan(strings.Split(os.Getenv(helperArgEnv), "\n")); err != nil {
		fmt.Fprintln(os.Stderr, "pidns-scan:", err)
		os.Exit(2)
	}
	os.Exit(0)
})

func pidnsScan(args []string) error {
	pid, _ := strconv.Atoi(args[0])
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The first start may spend a pid of its own (os/exec probes for
	// clone's CLONE_PIDFD once with a child), so try again until the
	// sleeper has the pid.
	var sleeper *exec.Cmd
	for range 5 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0o644); err != nil {
			return err
		}
		sleeper = exec.Command(exe, "-test.run=^$")
		sleeper.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := sleeper.Start(); err != nil {
			return err
		}
		if sleeper.Process.Pid == pid {
			break
		}
		sleeper.Process.Kill()
		sleeper.Wait()
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	dir := filepath.Join(args[1], SwarmDir, "inner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(pidLine(sleeper.Process.Pid)), 0o644); err != nil {
		return err
	}
	statuses, err := Scan(args[1])
	if err != nil || len(statuses) != 1 {
		return fmt.Errorf("Scan = %v, %v", statuses, err)
	}
	// KillSlot cannot tell who holds the pid either: it must not signal.
	stopped, err := KillSlot(args[1], Slot{Name: "inner", PID: sleeper.Process.Pid})
	var status syscall.WaitStatus
	exited, _ := syscall.Wait4(sleeper.Process.Pid, &status, syscall.WNOHANG, nil)
	stillThere := exited == 0
	fmt.Println(statuses[0].State, sleeper.Process.Pid, Alive(sleeper.Process.Pid), stopped, errors.Is(err, ErrUnidentified), stillThere)
	return nil
}

// TestScanInAnotherPidNamespace scans from a pid namespace of its own that
// kept the /proc of the namespace it came from: there /proc/<pid> names
// another process. A live leaf whose pid is, outside, a zombie's must read
// live, not gone.
func TestScanInAnotherPidNamespace(t *testing.T) {
	needRoot(t)
	ws := tempDir(t)
	zombie := startChild(t, "exit").Process.Pid // not waited for until cleanup
	waitProcStat(t, zombie, "a settled zombie", func(st procStat) bool { return st.state == 'Z' && st.threads == 1 })
	cmd := helperCmd(t, testBinary(t), "pidns-scan")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+strconv.Itoa(zombie)+"\n"+ws)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the scan in a new pid namespace failed: %v", err)
	}
	var state string
	var innerPID int
	var alive, stopped, unidentified, stillThere bool
	if _, err := fmt.Sscan(string(out), &state, &innerPID, &alive, &stopped, &unidentified, &stillThere); err != nil {
		t.Fatalf("the scan printed %q: %v", out, err)
	}
	if innerPID != zombie {
		t.Fatalf("setup: the leaf got pid %d in its namespace, want %d, the zombie's outside", innerPID, zombie)
	}
	if state != Live.String() || !alive {
		t.Errorf("Scan(ws) in the new pid namespace says %s (Alive %v) for a live leaf whose pid names a zombie outside, want live (true)", state, alive)
	}
	// /proc there describes the zombie, not the process behind the pid:
	// nothing tells whether it is the leaf, so it must not be signalled.
	if stopped || !unidentified || !stillThere {
		t.Errorf("KillSlot in the new pid namespace = %v (ErrUnidentified %v), process still there %v; want false, ErrUnidentified, still there", stopped, unidentified, stillThere)
	}
}
