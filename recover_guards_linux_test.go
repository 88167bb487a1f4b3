//go:build linux

package slotgc

// Reproductions of what an attacker's review found against the grace
// period and recoverable removal (issue 16), with real processes, files
// and mounts, kept as tests of the fixes.

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
// directory and returns that.
func mountNoBirthFS(t *testing.T) string {
	t.Helper()
	return mountLoopFS(t, 32<<20, "mkfs.ext2", "-I", "128")
}

// mountLoopFS makes a file system of size bytes with the mkfs program and
// its args on a loop device, mounts it on a new directory and returns
// that; it is unmounted and its loop device freed when the test ends.
func mountLoopFS(t *testing.T, size int64, mkfs string, args ...string) string {
	t.Helper()
	needRoot(t)
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(requireRootEnv) == "1" {
			t.Fatalf(format+", and %s=1 forbids skipping", append(args, requireRootEnv)...)
		}
		t.Skipf(format, args...)
	}
	for _, tool := range []string{mkfs, "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s is missing: %v", tool, err)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	mkdirs(t, mnt)
	if f, err := os.Create(img); err != nil {
		t.Fatal(err)
	} else {
		err := f.Truncate(size)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(mkfs, append(append([]string{"-q", "-F"}, args...), img)...).CombinedOutput(); err != nil {
		skip("%s: %v: %s", mkfs, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		skip("mount -o loop: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-d", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// TestExpireAfterInodeReuse: a prune recovers a slot's worktree as
// <slot>-<ts>; someone else then takes the entry away (bones apply, the
// user) and makes a directory of their own under that name, which, on a
// file system that keeps no birth time, gets the freed inode number back.
// Once the retention has passed, a prune must not take that directory for
// slotgc's: whether a prune ran in between (which drops the record of an
// entry gone, however young) or not (the directory's time is not the one
// the prune gave the entry).
func TestExpireAfterInodeReuse(t *testing.T) {
	for _, pruneBetween := range []bool{true, false} {
		t.Run(fmt.Sprintf("prune between=%v", pruneBetween), func(t *testing.T) {
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
			if err := os.RemoveAll(entry); err != nil {
				t.Fatal(err)
			}
			record := filepath.Join(ws, RecoveryDir, recordDirName, filepath.Base(entry))
			if pruneBetween {
				if _, err := Prune(ws, PruneOptions{Keep: keep}); err != nil {
					t.Fatalf("Prune(ws, Keep) with the entry gone: %v", err)
				}
				if exists(t, record) {
					t.Errorf("after Prune(ws, Keep) with the entry gone, its record %s is still there", record)
				}
			}

			// The file system gives out the lowest free inode numbers
			// first: the stranger's directories (kept, each under a name
			// of its own) take the numbers the removal freed, until one
			// lands on the entry's.
			var after syscall.Stat_t
			for i := 0; ; i++ {
				if i == 64 {
					t.Fatalf("setup: no new directory got inode %d back", before.Ino)
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
			// The stranger's work goes in later. (A file system without birth
			// times keeps times in steps of up to coarsestTimes: a directory
			// made anew within the step of the entry's time, and left alone
			// since, cannot be told from it; see record.matches.)
			time.Sleep(coarsestTimes)
			writeFile(t, filepath.Join(entry, "mine"), "work slotgc never had\n")

			time.Sleep(keep + 100*time.Millisecond)
			report, err = Prune(ws, PruneOptions{Keep: keep})
			if !exists(t, filepath.Join(entry, "mine")) || len(report.Expired) != 0 || err != nil {
				t.Errorf("Prune(ws, Keep) = expired %+v, %v, want nothing expired and %s, a directory slotgc did not make, kept", report.Expired, err, entry)
			}
			if exists(t, record) {
				t.Errorf("after Prune(ws, Keep), the record %s of an entry gone is still there", record)
			}
		})
	}
}

// The recovery-call helper runs the call os.Args[2] names on the
// workspace os.Args[3] (and the slot os.Args[4]) and prints one JSON line:
// the result as fmt prints it and the error.
var _ = registerHelper("recovery-call", func() {
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

// recoveryCall runs the call in a recovery-call child of m and returns its
// answer; it fails the test if the child gives none within callDeadline.
func recoveryCall(t *testing.T, m *fuseMount, call string, args ...string) fuseCallResult {
	t.Helper()
	c := m.spawn("recovery-call", "", append([]string{call}, args...)...)
	line, err := c.line(callDeadline)
	if errors.Is(err, errNoLine) {
		waits := waitsIn(c.pid())
		c.cmd.Process.Kill()
		t.Fatalf("%s(%s) did not return within %v and was killed; it waited in %s", call, strings.Join(args, ", "), callDeadline, waits)
	}
	if err != nil {
		t.Fatalf("%s(%s): %v", call, strings.Join(args, ", "), err)
	}
	var r fuseCallResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("%s(%s) printed %q: %v", call, strings.Join(args, ", "), line, err)
	}
	return r
}

// TestDiskUseAsksNoStalledMount: a worker mounted a FUSE file system
// (sshfs, say) inside its worktree, and its server stopped. DiskUse (and
// so `slotgc status -size`) does not cross the mount, and its walk asks
// nothing of the mount point that the kernel would ask the stalled server:
// it answers, passing the mount over.
func TestDiskUseAsksNoStalledMount(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "s", pidLine(deadPID(t)))
	mnt := filepath.Join(addWorktree(t, slot), "remote")
	mkdirs(t, mnt)
	m := mountFUSE(t, mnt)
	m.stall()
	if r := recoveryCall(t, m, "DiskUse", ws, "s"); r.Err != "" || !strings.HasPrefix(r.Got, "map[s:") {
		t.Errorf("DiskUse(ws, s) = %s, %s, want the slot measured, no error", r.Got, r.Err)
	}
}

// TestExpiryKeepsEntryWithStalledMount: someone mounted a FUSE file system
// inside a recovery entry slotgc made (to look at the work from another
// machine, say), and its server stopped. Recoveries (which `slotgc status`
// calls) answers; a prune with Keep, once the retention has passed,
// answers too and leaves the entry in place, with an error saying a mount
// is inside, as it would a slot.
func TestExpiryKeepsEntryWithStalledMount(t *testing.T) {
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
	if r := recoveryCall(t, m, "Recoveries", ws); r.Err != "" || !strings.Contains(r.Got, filepath.Base(got.Recovery)) {
		t.Errorf("Recoveries(ws) = %s, %s, want the entry listed, no error", r.Got, r.Err)
	}
	if r := recoveryCall(t, m, "PruneKeep", ws); !strings.Contains(r.Err, ErrMountInside.Error()) || !strings.Contains(r.Err, mnt) {
		t.Errorf("Prune(ws, Keep) = %s, %s, want the entry kept: a mount is inside, at %s", r.Got, r.Err, mnt)
	}
	// Looked for from its parent: a stat of the mount point itself would
	// ask the stalled server.
	if names, err := os.ReadDir(got.Recovery); err != nil || len(names) != len(worktreeFiles)+1 {
		t.Errorf("after Prune(ws, Keep), the entry holds %v, %v, want all it held and the mount point", names, err)
	}
}

// TestRecordsOfAnotherUser: where the recovery directory is shared (a
// team's state directory, world-writable), another user makes
// recovery/.slotgc before any prune does and writes in it a record naming
// the CLI's own entry, with the identity (device, inode, birth time) that
// statx(2) gives anyone who can look at the directory. No record there is
// trusted: the CLI's entry stays, the prune says why, and a recoverable
// prune keeps its slot rather than record an entry there.
func TestRecordsOfAnotherUser(t *testing.T) {
	needRoot(t)
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

	slot := addSlot(t, filepath.Join(ws, SwarmDir), "work", pidLine(deadPID(t)))
	addWorktree(t, slot)
	report, err := Prune(ws, PruneOptions{Keep: retention})
	if !exists(t, filepath.Join(entry, "uncommitted.go")) || len(report.Expired) != 0 {
		t.Errorf("Prune(ws, Keep) expired %+v, the CLI's entry on a record uid 65534 wrote", report.Expired)
	}
	if !errors.Is(err, errUntrustedRecords) || !errors.Is(err, ErrNotRecoverable) {
		t.Errorf("Prune(ws, Keep) error = %v, want the records directory not trusted, and work not recoverable", err)
	}
	if got := outcomes(report)["work"]; got.Action != Kept || !exists(t, filepath.Join(slot, PIDFile)) {
		t.Errorf("Prune(ws, Keep) = %+v for work, want it kept whole", got)
	}
}

// TestProgressPanicSettlesEverySlot: a Progress callback panics (a bug in
// the hub's reporting) and the caller recovers, as a long-running hub does
// per request. The panic reaches the caller only once every slot is
// settled: no tree is left detached, each worktree is in the recovery
// directory, where Restore finds it.
func TestProgressPanicSettlesEverySlot(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	for _, s := range []string{"a", "b"} {
		addWorktree(t, addSlot(t, swarm, s, dead))
		backdateTree(t, filepath.Join(swarm, s), longAgo)
	}
	addSlot(t, swarm, "c", dead) // changed just now: the grace period keeps it
	const bug = "a bug in the caller's progress report"
	calls := 0
	func() {
		defer func() {
			if v := recover(); v != bug {
				t.Errorf("Prune(ws, Idle, Keep, Progress) panicked with %v, want %q", v, bug)
			}
		}()
		Prune(ws, PruneOptions{Idle: gracePeriod, Keep: retention, Progress: func(done, total int, last SlotOutcome) {
			calls++
			if last.Slot == "c" {
				panic(bug)
			}
		}})
	}()
	if names, _ := swarmNames(swarm); len(names) != 1 || names[0] != "c" {
		t.Errorf("after a panicking Progress, the swarm directory holds %v, want only c", names)
	}
	for _, s := range []string{"a", "b"} {
		if _, err := Restore(ws, s); err != nil {
			t.Errorf("after a panicking Progress, Restore(ws, %s) = %v", s, err)
		}
	}
	if calls > 3 {
		t.Errorf("Progress was called %d times, want none after its panic", calls)
	}
}

// TestExpiryKeepsEntryInUse: a process works in a recovery entry slotgc
// made (its working directory is there: someone salvaging it by hand), or
// holds one of its files open. Once the retention has passed, a prune
// with Keep leaves that entry in place, naming the process, as it would a
// slot; the entry no one uses goes.
func TestExpiryKeepsEntryInUse(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	for _, s := range []string{"cwd", "fd", "pidname", "idle"} {
		addWorktree(t, addSlot(t, swarm, s, dead))
	}
	// A worktree's own file that has a slot's pid file's name is a file
	// like any other once recovered.
	writeFile(t, filepath.Join(swarm, "pidname", WorktreeDir, PIDFile), "notes\n")
	const keep = time.Second
	report, err := Prune(ws, PruneOptions{Keep: keep})
	if err != nil || len(report.Taken()) != 4 {
		t.Fatalf("setup: Prune(ws, Keep) = %+v, %v, want four slots recovered", report, err)
	}
	entries := outcomes(report)

	cmd := helperCmd(t, testBinary(t), "sleep")
	cmd.Dir = entries["cwd"].Recovery
	inEntry := startHelper(t, cmd, "sleep").Process.Pid
	cmd = helperCmd(t, testBinary(t), "hold")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(entries["fd"].Recovery, "README"))
	cmd.Dir = tempDir(t)
	holding := startHelper(t, cmd, "hold").Process.Pid
	cmd = helperCmd(t, testBinary(t), "hold")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(entries["pidname"].Recovery, PIDFile))
	cmd.Dir = tempDir(t)
	holdingPIDName := startHelper(t, cmd, "hold").Process.Pid

	time.Sleep(keep + 100*time.Millisecond)
	report, err = Prune(ws, PruneOptions{Keep: keep})
	if len(report.Expired) != 1 || report.Expired[0].Slot != "idle" {
		t.Errorf("Prune(ws, Keep) expired %+v, want only idle's entry", report.Expired)
	}
	for slot, pid := range map[string]int{"cwd": inEntry, "fd": holding, "pidname": holdingPIDName} {
		if !exists(t, entries[slot].Recovery) {
			t.Errorf("Prune(ws, Keep) removed %s, which pid %d uses", entries[slot].Recovery, pid)
		}
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
			t.Errorf("Prune(ws, Keep) error = %v, want %s's entry in use by pid %d", err, slot, pid)
		}
	}
}
