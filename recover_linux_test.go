//go:build linux

package slotgc

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestRecoveryOnAnotherMount puts the recovery directory where no rename
// from the swarm directory can reach: on a tmpfs mounted over it (another
// file system, refused before the slot is touched) and on a bind mount of
// the same file system (another mount, which only the rename tells, after
// the slot was detached). Either way a recoverable prune keeps the slot
// whole at its name, with an error saying why, and removes nothing; a
// leftover meant to be recovered stays too, and Restore refuses.
func TestRecoveryOnAnotherMount(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, fstype string
		// why is what the error says of the recovery directory.
		why string
	}{
		{"tmpfs", "tmpfs", "on another file system"},
		{"bind mount", "", "on another mount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, swarm := workspace(t)
			dead := pidLine(deadPID(t))
			slot := addSlot(t, swarm, "work", dead)
			addWorktree(t, slot)
			leftover := addSlot(t, swarm, recoverTrashName("crashed"), dead)
			addWorktree(t, leftover)
			recovery := filepath.Join(ws, RecoveryDir)
			mkdirs(t, recovery)
			source := "tmpfs"
			if tc.fstype == "" {
				source = filepath.Join(ws, "elsewhere")
				mkdirs(t, source)
			}
			mount(t, source, recovery, tc.fstype)
			want := readTree(t, slot)

			report, err := Prune(ws, PruneOptions{Keep: retention})
			got := outcomes(report)["work"]
			if got.Action != Kept || !errors.Is(got.Reason, ErrNotRecoverable) || !strings.Contains(got.Reason.Error(), tc.why) {
				t.Errorf("Prune(ws, Keep) = %+v, want work kept, not recoverable as %s", got, tc.why)
			}
			if failed := failedSlots(err); !slices.Equal(failed, []string{"work", filepath.Base(leftover)}) {
				t.Errorf("Prune(ws, Keep) error names %v, want work and the leftover", failed)
			}
			if after := readTree(t, slot); !maps.Equal(after, want) {
				t.Errorf("after Prune(ws, Keep), work holds %v, want all it held", slices.Sorted(maps.Keys(after)))
			}
			if files := readTree(t, leftover); len(files) != len(worktreeFiles)+1 {
				t.Errorf("after Prune(ws, Keep), the leftover holds %v, want all it held", slices.Sorted(maps.Keys(files)))
			}
			if detached, _ := Detached(ws); len(detached) != 1 {
				t.Errorf("Detached(ws) = %+v, want only the leftover, no tree of work", detached)
			}
			if entries, err := Recoveries(ws); len(entries) != 0 || err != nil {
				t.Errorf("Recoveries(ws) = %+v, %v, want none", entries, err)
			}
			if records, _ := os.ReadDir(filepath.Join(recovery, recordDirName)); len(records) != 0 {
				t.Errorf("records left for entries never made: %v", records)
			}

			// PruneDead, told by the environment, keeps the slot alike.
			t.Setenv(KeepEnv, retention.String())
			if removed, err := PruneDead(ws); len(removed) != 0 || !errors.Is(err, ErrNotRecoverable) || !exists(t, filepath.Join(slot, PIDFile)) {
				t.Errorf("PruneDead(ws) with %s set = %v, %v, want nothing removed, not recoverable", KeepEnv, removed, err)
			}

			// An entry on the other mount cannot be renamed into the swarm.
			entry := filepath.Join(recovery, "other-1764700000")
			mkdirs(t, entry)
			writeFile(t, filepath.Join(entry, "README"), "on the other mount\n")
			if _, err := Restore(ws, "other"); err == nil || exists(t, filepath.Join(swarm, "other")) || !exists(t, filepath.Join(entry, "README")) {
				t.Errorf("Restore(ws, other) across mounts = %v, slot made %v, want a refusal leaving the entry", err, exists(t, filepath.Join(swarm, "other")))
			}
		})
	}
}

// TestGracePeriodFollowsNoLink: a dead slot whose only recent thing is
// what a symlink in it points to, outside, is not recently changed. The
// links' own times are set back without following them.
func TestGracePeriodFollowsNoLink(t *testing.T) {
	ws, swarm := workspace(t)
	outside := filepath.Join(tempDir(t), "outside")
	mkdirs(t, outside)
	writeFile(t, filepath.Join(outside, "fresh"), "just written\n")
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	addWorktree(t, slot)
	for link, target := range map[string]string{"wt/to-file": filepath.Join(outside, "fresh"), "wt/to-dir": outside} {
		if err := os.Symlink(target, filepath.Join(slot, link)); err != nil {
			t.Fatal(err)
		}
		lbackdate(t, filepath.Join(slot, link), longAgo)
	}
	backdateTree(t, slot, longAgo)

	report, err := Prune(ws, PruneOptions{Idle: gracePeriod})
	if got := outcomes(report)["s"]; err != nil || got.Action != Removed {
		t.Errorf("Prune(ws, Idle) = %+v, %v, want s removed: what its links point to is not in it", got, err)
	}
	if !exists(t, filepath.Join(outside, "fresh")) {
		t.Error("the symlinks' target is gone")
	}
}

// lbackdate sets the times of the symlink at path to age ago, without
// following it, which os.Chtimes cannot do.
func lbackdate(t *testing.T, path string, age time.Duration) {
	t.Helper()
	then := syscall.NsecToTimespec(time.Now().Add(-age).UnixNano())
	ts := [2]syscall.Timespec{then, then}
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	cwd := atFDCWD
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(cwd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0)
	if errno != 0 {
		t.Fatalf("utimensat %s: %v", path, errno)
	}
}
