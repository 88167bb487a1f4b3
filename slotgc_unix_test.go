//go:build unix

package slotgc

import (
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the unprivileged user the tests drop to when run as root.
const nobody = 65534

// requireRootEnv, when set to 1 (as CI does), turns the skip of a test that
// needs root into a failure, so that CI cannot pass without the
// permission tests.
const requireRootEnv = "SLOTGC_TEST_REQUIRE_ROOT"

// needRoot skips the test unless it runs as root, which it needs to drop
// to uid 65534 and to own files nobody may not touch.
func needRoot(t *testing.T) {
	t.Helper()
	switch {
	case os.Getuid() == 0:
	case os.Getenv(requireRootEnv) == "1":
		t.Fatalf("needs root to drop to uid %d, and %s=1 forbids skipping", nobody, requireRootEnv)
	default:
		t.Skipf("needs root to drop to uid %d", nobody)
	}
}

func ignoreTerm() { signal.Ignore(syscall.SIGTERM) }

func killedPolitely(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// scanWithin runs Scan(ws) and fails the test if it does not return
// within settleTimeout: the pid files under test could block a reader.
func scanWithin(t *testing.T, ws string) []SlotStatus {
	t.Helper()
	type result struct {
		statuses []SlotStatus
		err      error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Scan(ws)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Scan(ws) error: %v", r.err)
		}
		return r.statuses
	case <-time.After(settleTimeout):
		t.Fatalf("Scan(ws) still running after %v: it blocked on a pid file", settleTimeout)
		return nil
	}
}

// TestSpecialPIDFiles puts files that are no regular files, or far too
// large, where the pid file goes: each must be refused without blocking,
// without reading it whole and without following it.
func TestSpecialPIDFiles(t *testing.T) {
	ws, swarm := workspace(t)
	dead := deadPID(t)
	tests := []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o644) }},
		{"fifo-with-writer", func(path string) error {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				return err
			}
			// A writer holding the FIFO open: a reader would get data.
			w, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { w.Close() })
			_, err = w.WriteString(pidLine(dead))
			return err
		}},
		{"sparse-terabyte", func(path string) error {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString(pidLine(dead)); err != nil {
				return err
			}
			return f.Truncate(1 << 40)
		}},
		{"symlink-to-dead-pid", func(path string) error {
			target := filepath.Join(t.TempDir(), "pid")
			if err := os.WriteFile(target, []byte(pidLine(dead)), 0o644); err != nil {
				return err
			}
			return os.Symlink(target, path)
		}},
		{"dangling-symlink", func(path string) error { return os.Symlink("/nonexistent/leaf.pid", path) }},
		{"unix-socket", func(path string) error {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { syscall.Close(fd) })
			return syscall.Bind(fd, &syscall.SockaddrUnix{Name: path})
		}},
	}
	for _, tc := range tests {
		dir := addSlot(t, swarm, tc.name, noPIDFile)
		if err := tc.make(filepath.Join(dir, PIDFile)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	if os.Getuid() == 0 {
		// The null device, as root can make it; refused, never opened.
		dir := addSlot(t, swarm, "char-device", noPIDFile)
		if err := syscall.Mknod(filepath.Join(dir, PIDFile), syscall.S_IFCHR|0o644, 1<<8|3); err != nil {
			t.Logf("no character device case: mknod: %v", err)
			os.Remove(dir)
		}
	}
	got := states(scanWithin(t, ws))
	if len(got) < len(tests) {
		t.Errorf("Scan(ws) = %v, want all %d slots", got, len(tests))
	}
	for name, state := range got {
		t.Run(name, func(t *testing.T) {
			if state != BadPIDFile {
				t.Errorf("Scan(ws) says %s, want %s", state, BadPIDFile)
			}
		})
	}
	if dead, err := DeadSlots(ws); dead != nil || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want nil, nil", dead, err)
	}
}

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

// asNobody runs the slotgc call in a copy of the test binary as uid and gid
// 65534 and returns its result. Only root can do that: see needRoot.
func asNobody(t *testing.T, call, arg string) callResult {
	t.Helper()
	cmd := nobodyCmd(t, "call", call, arg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s(%s) as uid %d: %v", call, arg, nobody, err)
	}
	var r callResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s(%s) as uid %d printed %q: %v", call, arg, nobody, out, err)
	}
	return r
}

// nobodyCmd returns a helper command in mode that runs a copy of the test
// binary as uid and gid 65534.
func nobodyCmd(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	// go test builds its binary in a 0700 directory nobody cannot enter.
	dir, err := os.MkdirTemp("", "slotgc-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "slotgc.test")
	src, err := os.Open(testBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd(t, exe, mode, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd
}

// openToAll makes the path and its parents up to the root searchable by
// every user, so that nobody can reach a workspace under t.TempDir.
func openToAll(t *testing.T, path string) {
	t.Helper()
	for p := path; p != filepath.Dir(p); p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(p, info.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestOtherUsersProcess checks, as uid 65534, the verdicts on a live
// process of root's: kill(2) says EPERM, and that means alive.
func TestOtherUsersProcess(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	root := startChild(t, "sleep").Process.Pid
	if err := syscall.Kill(root, 0); err != nil {
		t.Fatalf("setup: root's child %d is not alive: %v", root, err)
	}
	addSlot(t, swarm, "roots", pidLine(root))

	if r := asNobody(t, "LiveSlots", ws); !slices.Equal(r.Slots, []Slot{{"roots", root}}) || r.Err != "" {
		t.Errorf("LiveSlots(ws) as nobody = %v, %q, want [{roots %d}], no error", r.Slots, r.Err, root)
	}
	if r := asNobody(t, "DeadSlots", ws); r.Names != nil || r.Err != "" {
		t.Errorf("DeadSlots(ws) as nobody = %v, %q, want nil, no error", r.Names, r.Err)
	}
	if r := asNobody(t, "Alive", strconv.Itoa(root)); !r.Bool {
		t.Errorf("Alive(%d) as nobody = false for root's live child, want true", root)
	}
	if r := asNobody(t, "Kill", strconv.Itoa(root)); r.Bool {
		t.Errorf("Kill(%d) as nobody = true for root's child it may not signal, want false", root)
	}
	if err := syscall.Kill(root, 0); err != nil {
		t.Errorf("root's child died when nobody tried to kill it: %v", err)
	}
}

// TestPrunePermissionFailure has nobody prune three dead slots, one of
// which holds a subtree of root's that nobody cannot empty.
func TestPrunePermissionFailure(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	dead := deadPID(t)
	for _, name := range []string{"a", "b", "c"} {
		addSlot(t, swarm, name, pidLine(dead))
	}
	locked := filepath.Join(swarm, "b", "locked")
	if err := os.Mkdir(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(locked, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Everything but the locked subtree belongs to nobody.
	err := filepath.WalkDir(ws, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == locked {
			return err
		}
		if d.IsDir() && strings.HasPrefix(path, locked+string(filepath.Separator)) {
			return fs.SkipDir
		}
		if strings.HasPrefix(path, locked) {
			return nil
		}
		return os.Lchown(path, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}

	r := asNobody(t, "PruneDead", ws)
	if want := []string{"a", "c"}; !slices.Equal(r.Names, want) {
		t.Errorf("PruneDead(ws) as nobody = %v, want %v", r.Names, want)
	}
	if !slices.Equal(r.Failed, []string{"b"}) {
		t.Errorf("PruneDead(ws) as nobody joins errors for slots %v, want [b]", r.Failed)
	}
	if !r.Permission || !strings.Contains(r.Err, `"b"`) {
		t.Errorf("PruneDead(ws) as nobody error %q (errors.Is fs.ErrPermission: %v), want one naming slot \"b\" that is a permission error", r.Err, r.Permission)
	}
	if _, err := os.Stat(filepath.Join(locked, "file")); err == nil {
		t.Error("the locked subtree is still under slot b: PruneDead did not detach it first")
	}
	// The removal stopped short of b's pid file, so its leftover still
	// tells that it is garbage.
	leftovers, err := filepath.Glob(filepath.Join(swarm, TrashPrefix+"*", PIDFile))
	if err != nil || len(leftovers) != 1 {
		t.Errorf("pid files in detached trees after the failure = %v, %v; want b's, removed last", leftovers, err)
	}
	// Root can finish what nobody could not.
	if names, err := PruneDead(ws); names != nil || err != nil {
		t.Errorf("PruneDead(ws) as root after the failure = %v, %v, want nil, nil", names, err)
	}
	entries, err := os.ReadDir(swarm)
	if err != nil || len(entries) != 0 {
		t.Errorf("swarm after the second PruneDead holds %v (%v), want nothing", entries, err)
	}
}

func TestPIDFileUnreadable(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	dir := addSlot(t, swarm, "secret", pidLine(deadPID(t)))
	if err := os.Chmod(filepath.Join(dir, PIDFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := asNobody(t, "DeadSlots", ws); r.Names != nil || r.Err != "" {
		t.Errorf("DeadSlots(ws) as nobody = %v, %q, want nil: an unreadable pid file is unusable", r.Names, r.Err)
	}
	if r := asNobody(t, "PruneDead", ws); r.Names != nil || r.Err != "" {
		t.Errorf("PruneDead(ws) as nobody = %v, %q, want nil, no error", r.Names, r.Err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("slot with an unreadable pid file was removed: %v", err)
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

// exhaustDescriptors opens /dev/null until the process may open no more
// file descriptors, under a lowered limit so that it takes few.
func exhaustDescriptors() {
	// The runtime's poller takes a descriptor of its own the first time a
	// timer is set; let it have it first.
	time.Sleep(time.Millisecond)
	const limit = 64
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit})
	for {
		if _, err := syscall.Open(os.DevNull, syscall.O_RDONLY, 0); err != nil {
			return
		}
	}
}
