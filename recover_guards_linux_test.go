//go:build linux

package slotgc

// Attack 16: reproductions of ways the grace period and recoverable
// removal break their promises, with real processes, files and mounts.
// Each test fails while the fault it shows is there.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountNoBirthFS makes a small ext2 file system with 128-byte inodes (which
// keep no birth time, as ext3 file systems made so, XFS v4, NFS and many
// FUSE file systems keep none) on a loop device, mounts it on a new
// directory and returns that; it is unmounted and its loop device freed
// when the test ends.
func mountNoBirthFS(t *testing.T) string {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"mkfs.ext2", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing: %v", tool, err)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	mkdirs(t, mnt)
	if err := os.Truncate(img, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if f, err := os.Create(img); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(32 << 20)
		f.Close()
	}
	if out, err := exec.Command("mkfs.ext2", "-q", "-F", "-I", "128", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext2: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount -o loop: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-d", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// TestAttack16ExpireTakesForeignEntryAfterInodeReuse: a prune recovers a
// slot's worktree as <slot>-<ts>; the entry is then taken away by someone
// else (bones apply, the user), and a later prune with Keep, while the
// retention has not passed, leaves the stale record in place. Someone then
// makes a directory of their own under that name; on a file system that
// keeps no birth time the freed inode number is given out again, and the
// next prune once Keep has passed takes the stranger's directory for
// slotgc's and removes it, with whatever it holds.
func TestAttack16ExpireTakesForeignEntryAfterInodeReuse(t *testing.T) {
	ws := mountNoBirthFS(t)
	swarm := filepath.Join(ws, SwarmDir)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	addWorktree(t, slot)
	const keep = 2 * time.Second

	report, err := Prune(ws, PruneOptions{Keep: keep})
	got := outcomes(report)["s"]
	if err != nil || got.Action != Recovered {
		t.Fatalf("setup: Prune(ws, Keep) = %+v, %v, want s recovered", got, err)
	}
	entry := got.Recovery
	var before syscall.Stat_t
	if err := syscall.Stat(entry, &before); err != nil {
		t.Fatal(err)
	}

	// The entry is consumed by someone else.
	if err := os.RemoveAll(entry); err != nil {
		t.Fatal(err)
	}
	// A prune within the retention passes the stale record over.
	if _, err := Prune(ws, PruneOptions{Keep: keep}); err != nil {
		t.Fatalf("Prune(ws, Keep) with the entry gone: %v", err)
	}
	record := filepath.Join(ws, RecoveryDir, recordDirName, filepath.Base(entry))
	t.Logf("record of the entry after it was removed by hand and a prune ran: exists=%v", exists(t, record))

	// A directory that is not slotgc's takes the name. The file system
	// gives out the lowest free inode numbers first: the stranger's
	// directories (kept, each under a name of its own) take the numbers
	// the removal freed, until one lands on the entry's.
	var after syscall.Stat_t
	for i := 0; ; i++ {
		if i == 64 {
			t.Skipf("setup: no new directory got inode %d back", before.Ino)
		}
		mkdirs(t, entry)
		if err := syscall.Stat(entry, &after); err != nil {
			t.Fatal(err)
		}
		if after.Ino == before.Ino {
			break
		}
		if err := os.Rename(entry, filepath.Join(ws, fmt.Sprintf("other-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(entry, "mine"), "work slotgc never had\n")
	t.Logf("inode of slotgc's entry %d, of the stranger's directory %d", before.Ino, after.Ino)

	time.Sleep(keep + 100*time.Millisecond)
	report, err = Prune(ws, PruneOptions{Keep: keep})
	if !exists(t, filepath.Join(entry, "mine")) {
		t.Errorf("Prune(ws, Keep) removed %s, a directory slotgc did not make (expired: %+v, err %v)", entry, report.Expired, err)
	}
}

// TestAttack16GraceMissesCopiedInWork: a dead slot whose worktree just
// received files by cp -a (as rsync -a, tar x and unzip do, the files keep
// the times they had where they came from, and cp -a gives the worktree
// directory its source's time too) is not seen as recently changed: the
// walk reads modification times only, though every entry's change time
// (ctime, which no caller can set back) says it changed a moment ago. A
// prune with a grace period then removes the work just put there.
func TestAttack16GraceMissesCopiedInWork(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	addWorktree(t, slot)
	backdateTree(t, slot, longAgo)

	// Work brought in from elsewhere, its times old.
	src := filepath.Join(tempDir(t), "src")
	mkdirs(t, filepath.Join(src, "pkg"))
	writeFile(t, filepath.Join(src, "pkg", "fix.go"), "package pkg // the fix, not committed\n")
	backdateTree(t, src, longAgo)
	if out, err := exec.Command("cp", "-a", src+"/.", filepath.Join(slot, WorktreeDir)).CombinedOutput(); err != nil {
		t.Skipf("cp -a: %v: %s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(slot, WorktreeDir, "pkg", "fix.go"), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("fix.go: mtime %v ago, ctime %v ago",
		time.Since(time.Unix(st.Mtim.Unix())).Round(time.Second), time.Since(time.Unix(st.Ctim.Unix())).Round(time.Second))

	report, err := Prune(ws, PruneOptions{Idle: gracePeriod})
	if got := outcomes(report)["s"]; got.Action != Kept || !errors.Is(got.Reason, ErrRecentlyChanged) {
		t.Errorf("Prune(ws, Idle: %v) = %+v, %v, want s kept: its worktree got pkg/fix.go a moment ago", gracePeriod, got, err)
	}
}

// The attack16-call helper runs the call os.Args[2] names on the
// workspace os.Args[3] (and the slot os.Args[4]) and prints one JSON line:
// the result as fmt prints it and the error.
var _ = registerHelper("attack16-call", func() {
	var got any
	var err error
	ws := os.Args[3]
	switch os.Args[2] {
	case "DiskUse":
		got, err = DiskUse(ws, os.Args[4])
	case "Recoveries":
		got, err = Recoveries(ws)
	case "Restore":
		got, err = Restore(ws, os.Args[4])
	case "PruneKeep":
		var r PruneReport
		r, err = Prune(ws, PruneOptions{Keep: time.Nanosecond})
		got = r
	default:
		fmt.Fprintln(os.Stderr, "unknown call", os.Args[2])
		os.Exit(2)
	}
	r := fuseCallResult{Got: fmt.Sprint(got)}
	if err != nil {
		r.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
})

// attack16Call runs the call in an attack16-call child of m and fails the
// test if it gives no answer within callDeadline.
func attack16Call(t *testing.T, m *fuseMount, call string, args ...string) {
	t.Helper()
	c := m.spawn("attack16-call", "", append([]string{call}, args...)...)
	line, err := c.line(callDeadline)
	if errors.Is(err, errNoLine) {
		waits := waitsIn(c.pid())
		c.cmd.Process.Kill()
		t.Errorf("%s(%s) did not return within %v and was killed; it waited in %s", call, strings.Join(args, ", "), callDeadline, waits)
		return
	}
	t.Logf("%s(%s) = %s, %v", call, strings.Join(args, ", "), line, err)
}

// TestAttack16StalledFUSEInSlotHangsDiskUse: a worker mounted a FUSE file
// system (sshfs, say) inside its worktree, and its server stopped. DiskUse
// (and so `slotgc status -size`) promises not to cross a mount, but its
// walk statx(2)es the mount point itself, which asks the stalled server:
// the call never returns.
func TestAttack16StalledFUSEInSlotHangsDiskUse(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	mnt := filepath.Join(addWorktree(t, slot), "remote")
	mkdirs(t, mnt)
	m := mountFUSE(t, mnt)
	m.stall()
	attack16Call(t, m, "DiskUse", ws, "s")
}

// TestAttack16StalledFUSEInRecoveryEntryHangsPrune: someone mounted a FUSE
// file system inside a recovery entry slotgc made (to look at the work
// from another machine, say), and its server stopped. Once the entry's
// retention has passed, a prune with Keep measures the entry before it
// expires it, and that walk statx(2)es the mount point, asking the stalled
// server: the prune (the CLI's hub start, through PruneDead) never
// returns. Recoveries, which `slotgc status` calls, hangs alike.
func TestAttack16StalledFUSEInRecoveryEntryHangsPrune(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	addWorktree(t, slot)
	report, err := Prune(ws, PruneOptions{Keep: retention})
	got := outcomes(report)["s"]
	if err != nil || got.Action != Recovered {
		t.Fatalf("setup: Prune(ws, Keep) = %+v, %v, want s recovered", got, err)
	}
	mnt := filepath.Join(got.Recovery, "remote")
	mkdirs(t, mnt)
	m := mountFUSE(t, mnt)
	m.stall()
	attack16Call(t, m, "Recoveries", ws)
	attack16Call(t, m, "PruneKeep", ws)
}

// TestAttack16RecordForgedByAnotherUser: where the recovery directory is
// shared (a team's state directory, group- or world-writable, as a swarm
// directory others may write is elsewhere taken into account), another
// user makes recovery/.slotgc before any prune does and writes in it a
// record naming the CLI's own entry, with the identity (device, inode,
// birth time) that statx(2) gives anyone who can look at the directory.
// slotgc believes whatever records it finds there, whoever owns the
// directory and the records, and expires the CLI's entry: the worktree
// in it is gone.
func TestAttack16RecordForgedByAnotherUser(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv is missing")
	}
	ws, _ := workspace(t)
	for dir := ws; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	recovery := filepath.Join(ws, RecoveryDir)
	mkdirs(t, recovery)
	if err := os.Chmod(recovery, 0o1777); err != nil { // shared, even sticky
		t.Fatal(err)
	}
	// The CLI's own entry, private to its owner.
	entry := filepath.Join(recovery, "cli-1764700000")
	if err := os.Mkdir(entry, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(entry, "uncommitted.go"), "package work\n")

	// What anyone may read of the entry: statx on its path.
	rfd, err := syscall.Open(recovery, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := statAt(rfd, filepath.Base(entry))
	syscall.Close(rfd)
	if err != nil {
		t.Fatal(err)
	}
	forged := record{made: time.Now().Add(-48 * time.Hour), id: st.id}
	asUser(t, fmt.Sprintf("mkdir %s && printf 'slotgc recovery entry\\nmade %d\\ndev %d\\nino %d\\nbirth %d\\n' > %s",
		filepath.Join(recovery, recordDirName), forged.made.UnixNano(), forged.id.dev, forged.id.ino, forged.id.birth,
		filepath.Join(recovery, recordDirName, filepath.Base(entry))))

	report, err := Prune(ws, PruneOptions{Keep: retention})
	if !exists(t, filepath.Join(entry, "uncommitted.go")) {
		t.Errorf("Prune(ws, Keep) removed the CLI's entry %s on a record uid 65534 wrote (expired %+v, err %v)", entry, report.Expired, err)
	}
}

// TestAttack16ProgressPanicStrandsSlot: a Progress callback panics (a bug
// in the hub's reporting) and the caller recovers, as a long-running hub
// does per request. Prune unwinds without waiting for the slots it had
// detached: the one whose taking was still pending never runs, and its
// lock is never let go. Its tree stays under a TrashPrefix name, with its
// worktree: not at its slot name, not in the recovery directory (Restore
// and bones apply cannot find it), and every later prune in the process
// finds it locked and passes it over without a word, for as long as the
// process lives.
func TestAttack16ProgressPanicStrandsSlot(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	for _, s := range []string{"a", "b"} {
		addWorktree(t, addSlot(t, swarm, s, dead))
		backdateTree(t, filepath.Join(swarm, s), longAgo)
	}
	addSlot(t, swarm, "c", dead) // changed just now: the grace period keeps it
	func() {
		defer func() { t.Logf("the caller recovered: %v", recover()) }()
		Prune(ws, PruneOptions{Idle: gracePeriod, Keep: retention, Progress: func(done, total int, last SlotOutcome) {
			if last.Slot == "c" {
				panic("a bug in the caller's progress report")
			}
		}})
	}()
	time.Sleep(time.Second) // let whatever still runs finish

	report, err := Prune(ws, PruneOptions{Keep: retention})
	t.Logf("a later Prune(ws, Keep) = %+v, %v", report, err)
	if _, err := Restore(ws, "b"); err != nil {
		names, _ := swarmNames(swarm)
		t.Errorf("after a panicking Progress and another prune, Restore(ws, b) = %v; the swarm directory holds %v", err, names)
	}
}
