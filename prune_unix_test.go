//go:build unix

package slotgc

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

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
