package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/bones-swarm/slotgc"
)

// TestPruneKeepsUnrecoverable mounts a tmpfs over the recovery directory:
// a prune with -keep cannot rename a worktree there, so it keeps the slot,
// says why on standard error and in the report, and exits 1.
func TestPruneKeepsUnrecoverable(t *testing.T) {
	needRoot(t)
	ws := t.TempDir()
	work := makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), "work", strconv.Itoa(deadPID(t))+"\n")
	makeWorktree(t, work, "uncommitted\n")
	recovery := filepath.Join(ws, slotgc.RecoveryDir)
	if err := os.MkdirAll(recovery, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", recovery, "tmpfs", 0, ""); err != nil {
		if os.Getenv("SLOTGC_TEST_REQUIRE_ROOT") == "1" {
			t.Fatalf("mount a tmpfs on %s: %v, and SLOTGC_TEST_REQUIRE_ROOT=1 forbids skipping", recovery, err)
		}
		t.Skipf("mounting is forbidden here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(recovery, syscall.MNT_DETACH) })

	r := runSlotgc(t, "-C", ws, "-json", "prune", "-keep", "24h")
	var got pruneJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("slotgc -json prune -keep 24h printed %q: %v", r.stdout, err)
	}
	if r.code != 1 || !strings.Contains(r.stderr, `"work"`) || len(got.Report) != 1 || got.Report[0].Action != "kept" ||
		!strings.Contains(got.Report[0].Reason, "cannot be moved into the recovery directory") {
		t.Errorf("slotgc -json prune -keep 24h = %+v, report %+v, want exit 1 and work kept, not recoverable", r, got.Report)
	}
	if content, err := os.ReadFile(filepath.Join(work, slotgc.WorktreeDir, "src", "notes.txt")); string(content) != "uncommitted\n" {
		t.Errorf("work's notes after the prune = %q, %v, want them whole", content, err)
	}
}

// progressLines matches what a prune draws on a terminal: lines rewritten
// in place, never a new line, and the last erased.
var progressLines = regexp.MustCompile(`^(\rslotgc: pruning: (reading the slots|\d of 3 dead slots settled, \d+(\.\d)? (B|KiB), )[^\r\n]*\x1b\[K)+\r\x1b\[K$`)

// openPTY opens a pseudo-terminal and returns its two ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatalf("unlock pseudo-terminal: %v", errno)
	}
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Fatalf("pseudo-terminal number: %v", errno)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// readAll reads what the terminal master holds once its slave is closed;
// Linux then ends the reads with EIO.
func readAll(t *testing.T, master *os.File) string {
	t.Helper()
	var out bytes.Buffer
	_, err := io.Copy(&out, master)
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	return out.String()
}

// TestPruneProgress prunes with standard error on a real terminal: a
// prune that has run past the delay draws its progress on one line and
// erases it at the end; one that has not, or whose standard error is no
// terminal, draws nothing.
func TestPruneProgress(t *testing.T) {
	tests := []struct {
		name     string
		after    time.Duration
		terminal bool
		want     bool
	}{
		{"past the delay", 0, true, true},
		{"within the delay", time.Hour, true, false},
		{"no terminal", 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			dead := strconv.Itoa(deadPID(t)) + "\n"
			for _, name := range []string{"a", "b", "c"} {
				makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), name, dead)
			}
			master, slave := openPTY(t)
			var stdout, pipe bytes.Buffer
			c := cli{workspace: ws, swarm: slotgc.SwarmPath(ws), stdout: &stdout, stderr: slave, progressAfter: tc.after}
			if !tc.terminal {
				c.stderr = &pipe
			}
			code := c.prune(slotgc.PruneOptions{})
			slave.Close()
			drawn := readAll(t, master) + pipe.String()
			if code != exitOK || !strings.HasSuffix(stdout.String(), "removed 3 dead slots\n") {
				t.Errorf("prune = exit %d, stdout %q, want exit 0 and 3 slots removed", code, stdout.String())
			}
			if !tc.want {
				if drawn != "" {
					t.Errorf("prune drew %q on standard error, want nothing", drawn)
				}
				return
			}
			if !progressLines.MatchString(drawn) {
				t.Errorf("prune drew %q on the terminal, want progress lines matching %s, the last erased", drawn, progressLines)
			}
		})
	}
}
