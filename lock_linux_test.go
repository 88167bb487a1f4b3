package slotgc

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestPruneKeepsWhatItCannotLock puts a workspace on a FUSE mount whose
// server refuses every lock, as an NFS server refuses a lock on a
// descriptor open only for reading (EBADF), or one with no lock manager
// (ENOLCK). What PruneDead cannot lock it cannot tell free of another
// PruneDead: it must keep it, return a *SlotError for it that says it
// cannot be locked and wraps the server's errno, and ask the server for
// no change at all.
//
// PruneDead locks a slot's directory, and a stale clock probe, a file,
// before it removes either. Linux asks a FUSE server about the locks of
// files only: the kernel takes flock on a FUSE directory itself (its
// directories' file operations have no flock; neither have NFS's), so no
// server can refuse it. The slot case is skipped where the check shows
// that, as it does on Linux 6.18; the probe case does reach the server.
func TestPruneKeepsWhatItCannotLock(t *testing.T) {
	for _, lockErr := range []struct {
		name  string
		errno syscall.Errno
	}{
		{"EBADF", syscall.EBADF},
		{"ENOLCK", syscall.ENOLCK},
	} {
		for _, tc := range []struct {
			name      string
			entry     string // the swarm entry PruneDead must lock, and keep
			file      string // the one file of the swarm, relative to entry: "" for entry itself
			content   func(t *testing.T) string
			wantDead  string // DeadSlots(ws) as fmt prints it
			directory bool   // whether entry is a directory
		}{
			{
				name: "dead slot", entry: "dead", file: PIDFile,
				content:  func(t *testing.T) string { return pidLine(deadPID(t)) },
				wantDead: "[dead]", directory: true,
			},
			{
				name: "stale clock probe", entry: clockProbeName(), file: "",
				content:  func(*testing.T) string { return "" },
				wantDead: "[]",
			},
		} {
			t.Run(tc.name+" "+lockErr.name, func(t *testing.T) {
				file := path.Join(SwarmDir, tc.entry, tc.file)
				m := mountServed(t, tempDir(t), "fuse-tree", strconv.Itoa(int(lockErr.errno)), file, tc.content(t))
				ws := m.Dir
				entryPath := filepath.Join(SwarmPath(ws), tc.entry)
				if r := m.call("DeadSlots", ws); r.Got != tc.wantDead || r.Err != "" {
					t.Fatalf("setup: DeadSlots(ws) = %s, %q, want %s, nil", r.Got, r.Err, tc.wantDead)
				}
				checkLockRefused(t, m, entryPath, lockErr.errno, tc.directory)

				before := m.requests()
				r := m.call("PruneDead", ws)
				asked := requestsSince(before, m.requests())
				t.Logf("PruneDead(ws) = %s, %q; the server was asked for %v", r.Got, r.Err, asked)
				e := fuseCallError{}
				if len(r.Errs) == 1 {
					e = r.Errs[0]
				}
				if r.Got != "[]" || len(r.Errs) != 1 || !e.SlotError || e.Slot != tc.entry ||
					!strings.Contains(e.Msg, "cannot be locked") || e.Errno != int(lockErr.errno) {
					t.Errorf("PruneDead(ws) = %s, %q, want nil and a SlotError for %q that cannot lock, wrapping %s",
						r.Got, r.Err, tc.entry, lockErr.name)
				}
				if asked["SETLK/flock"] == 0 {
					t.Errorf("PruneDead(ws) never asked the server for a flock lock, so the refusal it met was not the server's")
				}
				var changes []string
				for _, name := range fuseChanges {
					if asked[name] > 0 {
						changes = append(changes, fmt.Sprintf("%s=%d", name, asked[name]))
					}
				}
				if len(changes) > 0 {
					t.Errorf("PruneDead(ws) asked the server for changes %v of what it could not lock, want none", changes)
				}
			})
		}
	}
}

// checkLockRefused checks, in a child, that flock on path, the entry of
// the swarm on m that PruneDead will lock, goes to m's server and gets
// its errno; it skips the test where path is a directory whose lock the
// kernel takes without asking the server.
func checkLockRefused(t *testing.T, m *fuseMount, path string, errno syscall.Errno, directory bool) {
	t.Helper()
	before := m.requests()
	got := m.flock(path)
	asked := requestsSince(before, m.requests())["SETLK/flock"]
	switch {
	case got == errno && asked == 1:
		return
	case directory && got == 0 && asked == 0:
		t.Skipf("flock on %s, a directory on FUSE, succeeded without the server being asked, though it negotiated FUSE_FLOCK_LOCKS to refuse it with %v: this kernel locks directories itself, so no server can refuse PruneDead's lock of a slot", path, errno)
	}
	t.Fatalf("setup: flock %s = %v, with the server asked %d times, want %v, from the server asked once", path, got, asked, errno)
}

// requestsSince returns how many requests of each kind the server read
// between the counts before and after.
func requestsSince(before, after map[string]int) map[string]int {
	since := make(map[string]int)
	for name, n := range after {
		if n > before[name] {
			since[name] = n - before[name]
		}
	}
	return since
}
