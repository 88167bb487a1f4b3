//go:build unix

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// nobody is the unprivileged user the tests drop to when run as root.
const nobody = 65534

// killedPolitely reports whether the process ended by the SIGTERM that
// slotgc.Kill sends before it forces.
func killedPolitely(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// needRoot skips the test unless it runs as root, or fails it where
// SLOTGC_TEST_REQUIRE_ROOT=1 (as in CI) forbids skipping.
func needRoot(t *testing.T) {
	t.Helper()
	switch {
	case os.Getuid() == 0:
	case os.Getenv("SLOTGC_TEST_REQUIRE_ROOT") == "1":
		t.Fatalf("needs root to drop to uid %d, and SLOTGC_TEST_REQUIRE_ROOT=1 forbids skipping", nobody)
	default:
		t.Skipf("needs root to drop to uid %d", nobody)
	}
}

// asNobody runs the command under test as uid and gid 65534.
func asNobody(t *testing.T, args ...string) result {
	t.Helper()
	cmd := slotgcCmd(args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return runCmd(t, cmd)
}

// giveToNobody hands the workspace to nobody, all but the skipped paths,
// and opens the way to it.
func giveToNobody(t *testing.T, ws string, skip ...string) {
	t.Helper()
	for p := filepath.Dir(ws); p != filepath.Dir(p); p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm&0o005 != 0o005 {
			if err := os.Chmod(p, perm|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := filepath.WalkDir(ws, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, s := range skip {
			if path == s {
				return fs.SkipDir
			}
		}
		return os.Lchown(path, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
}
