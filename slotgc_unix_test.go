//go:build unix

package slotgc

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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
