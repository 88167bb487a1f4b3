//go:build linux

package slotgc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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

// dirent encodes one linux_dirent64 record, padded to 8 bytes as the
// kernel does.
func dirent(name string, typ byte) []byte {
	reclen := (19 + len(name) + 1 + 7) &^ 7
	rec := make([]byte, reclen)
	binary.NativeEndian.PutUint64(rec[0:], 1)
	binary.NativeEndian.PutUint16(rec[16:], uint16(reclen))
	rec[18] = typ
	copy(rec[19:], name)
	return rec
}

func TestReadSwarmEntries(t *testing.T) {
	ws, swarm := workspace(t)
	for i := range 300 { // more than one getdents64 buffer's worth of names
		addSlot(t, swarm, fmt.Sprintf("slot-%03d-%s", i, strings.Repeat("x", 100)), noPIDFile)
	}
	if err := os.WriteFile(filepath.Join(swarm, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ws, filepath.Join(swarm, "link-to-dir")); err != nil {
		t.Fatal(err)
	}
	sw, got, err := openSwarm(swarm)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.close()
	dirEntries, err := os.ReadDir(swarm)
	if err != nil {
		t.Fatal(err)
	}
	var want []dirEntry
	for _, e := range dirEntries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, dirEntry{name: e.Name(), ino: info.Sys().(*syscall.Stat_t).Ino, isDir: e.IsDir()})
	}
	if !slices.Equal(got, want) {
		t.Errorf("openSwarm(swarm) entries differ from os.ReadDir:\n got %v\nwant %v", got, want)
	}
}

func TestAppendDirents(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "unknown-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	records := slices.Concat(
		dirent(".", 4), dirent("..", 4),
		dirent("a", 4), dirent("file", 8), dirent("link", 10),
		dirent("unknown-dir", 0), dirent("unknown-missing", 0),
	)
	fd, err := syscall.Open(dir, dirFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	got, err := appendDirents(nil, records, fd)
	// dirent numbers every record's inode 1.
	want := []dirEntry{{"a", 1, true}, {"file", 1, false}, {"link", 1, false}, {"unknown-dir", 1, true}, {"unknown-missing", 1, false}}
	if !slices.Equal(got, want) || err != nil {
		t.Errorf("appendDirents = %v, %v, want %v, nil", got, err, want)
	}
	for _, bad := range [][]byte{records[:10], append(dirent("a", 4), 1, 2, 3)} {
		if _, err := appendDirents(nil, bad, fd); !errors.Is(err, errDirent) {
			t.Errorf("appendDirents(%q) error %v, want %v", bad, err, errDirent)
		}
	}
}

func FuzzAppendDirents(f *testing.F) {
	f.Add(slices.Concat(dirent(".", 4), dirent("slot", 4), dirent("f", 8)))
	f.Add(dirent("x", 0))
	f.Add([]byte{})
	fd, err := syscall.Open(f.TempDir(), dirFlags, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { syscall.Close(fd) })
	f.Fuzz(func(t *testing.T, buf []byte) {
		entries, err := appendDirents(nil, buf, fd)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsRune(e.name, 0) {
				t.Fatalf("appendDirents(%q) gave entry %q", buf, e.name)
			}
		}
		// What parsed, encoded again and parsed, gives the same.
		var again []byte
		for _, e := range entries {
			typ := byte(8)
			if e.isDir {
				typ = 4
			}
			again = append(again, dirent(e.name, typ)...)
		}
		if got, err := appendDirents(nil, again, fd); !slices.Equal(got, entries) || err != nil {
			t.Fatalf("round trip of %q: %v, %v, want %v", buf, got, err, entries)
		}
	})
}

// TestKillThreadID asks Kill to kill the id of a thread that is not its
// process's main thread: kill(2) would signal the whole process, so Kill
// must refuse.
func TestKillThreadID(t *testing.T) {
	cmd := startChild(t, "sleep")
	pid := cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, task := range tasks {
		if id, err := strconv.Atoi(task.Name()); err == nil && id != pid {
			tid = id
			break
		}
	}
	if tid == 0 {
		t.Fatalf("setup: child %d shows no thread but its main one: %v", pid, tasks)
	}
	if Kill(tid) {
		t.Errorf("Kill(%d) = true for a thread of process %d, want false", tid, pid)
	}
	if st, err := readProcStat(pid); err != nil || st.state == 'Z' {
		t.Errorf("the thread's process died: %+v, %v", st, err)
	}
}

// The ns-work helper, started in a mount namespace of its own, mounts a
// tmpfs on SLOTGC_TEST_ARG's first path, binds the workspace (the
// second) inside it, and works in the third (the three split by newlines), relative to the workspace,
// through that bind mount: a path that means nothing outside.
var _ = registerHelper("ns-work", func() {
	args := strings.Split(os.Getenv(helperArgEnv), "\n")
	alt := filepath.Join(args[0], "ws")
	err := syscall.Mount("tmpfs", args[0], "tmpfs", 0, "")
	if err == nil {
		err = os.Mkdir(alt, 0o755)
	}
	if err == nil {
		err = syscall.Mount(args[1], alt, "", syscall.MS_BIND, "")
	}
	if err == nil {
		err = os.Chdir(filepath.Join(alt, args[2]))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ns-work:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	time.Sleep(childLifetime)
	os.Exit(0)
})

// The detach helper does the first half of a prune of the slot named
// by SLOTGC_TEST_ARG in the swarm directory of the working directory:
// it locks the slot and renames it to a trash name holding its own pid,
// says "ready" and waits to be killed, a pruner that crashes midway.
var _ = registerHelper("detach", func() {
	sw, _, err := openSwarm(SwarmDir)
	var lock *entryLock
	if err == nil {
		lock, err = sw.lockEntry(os.Getenv(helperArgEnv))
	}
	if err == nil {
		err = sw.renameEntry(os.Getenv(helperArgEnv), TrashPrefix+strconv.Itoa(os.Getpid())+".crashed")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "detach:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	time.Sleep(childLifetime)
	lock.release()
	os.Exit(0)
})

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

// The swap helper swaps the swarm directory (SLOTGC_TEST_ARG's first
// path) for a symlink to another directory (the second) and back, over
// and over, saying "ready" after the first swap, until killed.
var _ = registerHelper("swap", func() {
	args := strings.Split(os.Getenv(helperArgEnv), "\n")
	swarm, outside := args[0], args[1]
	for i := 0; ; i++ {
		os.Rename(swarm, swarm+".real")
		os.Symlink(outside, swarm)
		if i == 0 {
			fmt.Println("ready")
		}
		time.Sleep(swapPause)
		os.Remove(swarm)
		os.Rename(swarm+".real", swarm)
		time.Sleep(swapPause)
	}
})

// swapPause is how long the swap helper leaves each of the two in place.
const swapPause = 50 * time.Microsecond
