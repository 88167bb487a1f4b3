//go:build unix

package slotgc

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// treeBytes returns the disk use of the tree at dir as du -s counts it:
// the allocated 512-byte blocks of every entry, a file with several links
// once.
func treeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		id := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
		if !d.IsDir() && st.Nlink > 1 {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += int64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// addHardLink links the file at path as link too.
func addHardLink(t *testing.T, path, link string) {
	t.Helper()
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
}

// TestGracePeriodCannotLook: with a grace period, a dead slot whose tree
// holds a directory the pruner may not read cannot be told unchanged, so
// it is kept, with an error naming it. PruneDead runs as nobody, on a
// tree nobody owns but for one directory of root's, and takes its grace
// period from the environment, as the swarm CLI's hub start would.
func TestGracePeriodCannotLook(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	addWorktree(t, slot)
	backdateTree(t, slot, longAgo)
	secret := filepath.Join(slot, "wt", "secret")
	mkdirs(t, secret)
	writeFile(t, filepath.Join(secret, "notes"), "root's\n")
	backdateTree(t, slot, longAgo)
	err := filepath.WalkDir(ws, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == secret {
			return os.Chmod(path, 0o700) // root's, unreadable to nobody
		}
		return os.Lchown(path, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(IdleEnv, gracePeriod.String())

	r := asNobody(t, "PruneDead", ws)
	if len(r.Names) != 0 || !slices.Equal(r.Failed, []string{"s"}) || !strings.Contains(r.Err, "cannot tell") || !r.Permission {
		t.Errorf("PruneDead(ws) as nobody with %s=%v = %v, error %q for %v, want s kept with a permission error", IdleEnv, gracePeriod, r.Names, r.Err, r.Failed)
	}
	if !exists(t, filepath.Join(slot, PIDFile)) || !exists(t, filepath.Join(secret, "notes")) {
		t.Error("the slot that could not be looked through lost files")
	}
}
