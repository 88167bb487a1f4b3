package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The ns-work helper, started in a mount namespace of its own, mounts a
// tmpfs on SLOTGC_TEST_ARG's first path, binds the workspace (the
// second) inside it, and works in the third (the three split by newlines), relative to the workspace,
// through that bind mount: a path that means nothing outside.
var _ = registerHelper("ns-work", func() {
	args := strings.Split(os.Getenv(helperArgEnv), "\n")
	alt := filepath.Join(args[0], "ws")
	err := syscall.Mount("tmpfs", args[0], "tmpfs", 0, "")
	if err == nil {
		err = os.Mkdir(alt, 0o755)
	}
	if err == nil {
		err = syscall.Mount(args[1], alt, "", syscall.MS_BIND, "")
	}
	if err == nil {
		err = os.Chdir(filepath.Join(alt, args[2]))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ns-work:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	time.Sleep(childLifetime)
	os.Exit(0)
})

// The detach helper does the first half of a prune of the slot named
// by SLOTGC_TEST_ARG in the swarm directory of the working directory:
// it locks the slot and renames it to a trash name holding its own pid,
// says "ready" and waits to be killed, a pruner that crashes midway.
var _ = registerHelper("detach", func() {
	sw, _, err := openSwarm(SwarmDir)
	var lock *entryLock
	if err == nil {
		lock, err = sw.lockEntry(os.Getenv(helperArgEnv))
	}
	if err == nil {
		err = sw.renameEntry(os.Getenv(helperArgEnv), TrashPrefix+strconv.Itoa(os.Getpid())+".crashed")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "detach:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	time.Sleep(childLifetime)
	lock.release()
	os.Exit(0)
})

// The swap helper swaps the swarm directory (SLOTGC_TEST_ARG's first
// path) for a symlink to another directory (the second) and back, over
// and over, saying "ready" after the first swap, until killed.
var _ = registerHelper("swap", func() {
	args := strings.Split(os.Getenv(helperArgEnv), "\n")
	swarm, outside := args[0], args[1]
	for i := 0; ; i++ {
		os.Rename(swarm, swarm+".real")
		os.Symlink(outside, swarm)
		if i == 0 {
			fmt.Println("ready")
		}
		time.Sleep(swapPause)
		os.Remove(swarm)
		os.Rename(swarm+".real", swarm)
		time.Sleep(swapPause)
	}
})

// swapPause is how long the swap helper leaves each of the two in place.
const swapPause = 50 * time.Microsecond

// TestPruneKeepsMounts puts a bind mount and a tmpfs inside a dead slot's
// worktree: PruneDead must delete nothing on either and keep the slot whole
// at its name, run after run, while it removes a plain dead slot.
func TestPruneKeepsMounts(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	shared := filepath.Join(tempDir(t), "shared with spaces")
	mkdirs(t, shared)
	writeFile(t, filepath.Join(shared, "keep"), "precious")
	addSlot(t, swarm, "plain", dead)
	slot := addSlot(t, swarm, "mounted", dead)
	// A space and a tab, which /proc/self/mountinfo escapes as \040 and \011.
	bindPoint, tmpfsPoint := filepath.Join(slot, "wt", "shared dir"), filepath.Join(slot, "wt", "deep", "scratch\tpad")
	mkdirs(t, bindPoint, tmpfsPoint)
	writeFile(t, filepath.Join(slot, "wt", "own-file"), "")
	mount(t, shared, bindPoint, "")
	mount(t, "tmpfs", tmpfsPoint, "tmpfs")
	writeFile(t, filepath.Join(tmpfsPoint, "scratch-file"), "")

	for run := 1; run <= 2; run++ {
		got, err := PruneDead(ws)
		wantRemoved := []string{"plain"}
		if run == 2 {
			wantRemoved = nil
		}
		if !slices.Equal(got, wantRemoved) {
			t.Errorf("run %d: PruneDead(ws) = %v, want %v", run, got, wantRemoved)
		}
		se, ok := errors.AsType[*SlotError](err)
		if !ok || se.Slot != "mounted" || !errors.Is(err, ErrMountInside) || !strings.Contains(err.Error(), bindPoint) {
			t.Errorf("run %d: PruneDead(ws) error %v, want a SlotError for slot mounted wrapping ErrMountInside and naming %s", run, err, bindPoint)
		}
		for _, f := range []string{
			filepath.Join(shared, "keep"), filepath.Join(bindPoint, "keep"),
			filepath.Join(tmpfsPoint, "scratch-file"), filepath.Join(slot, "wt", "own-file"), filepath.Join(slot, PIDFile),
		} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("run %d: PruneDead deleted %s: %v", run, f, err)
			}
		}
	}
	if entries, _ := os.ReadDir(swarm); len(entries) != 1 || entries[0].Name() != "mounted" {
		t.Errorf("swarm holds %v, want only the mounted slot at its name", entries)
	}
}

// TestRemovalWalkStopsAtMounts checks the walk's own guard, the one that
// holds when a mount appears after the mount table was read: removing a
// tree with a bind mount of the same file system inside deletes nothing on
// the mount, with openat2 and without it (older kernels, emulators), where
// only the mount ids tell.
func TestRemovalWalkStopsAtMounts(t *testing.T) {
	needRoot(t)
	for _, withoutOpenat2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("without openat2=%v", withoutOpenat2), func(t *testing.T) {
			if was := noOpenat2.Swap(withoutOpenat2); was != withoutOpenat2 {
				t.Cleanup(func() { noOpenat2.Store(was) })
			}
			top := tempDir(t)
			shared := tempDir(t)
			writeFile(t, filepath.Join(shared, "keep"), "")
			point := filepath.Join(top, "a", "b")
			mkdirs(t, point)
			mount(t, shared, point, "")
			fd, err := syscall.Open(top, dirFlags, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)
			dev, _, err := dirIdentity(fd)
			if err != nil {
				t.Fatal(err)
			}
			if err := removeTreeContents(fd, top, dev, true, nil); !errors.Is(err, errMountPoint) {
				t.Errorf("removeTreeContents(tree with a bind mount) = %v, want %v", err, errMountPoint)
			}
			if _, err := os.Stat(filepath.Join(shared, "keep")); err != nil {
				t.Errorf("the removal walk deleted a file on the mount: %v", err)
			}
		})
	}
}

// TestClockStepEvidence: leaves whose pid files look written an hour
// before they started stay live while they use their slot.
func TestClockStepEvidence(t *testing.T) {
	ws, swarm := workspace(t)

	cwdSlot := addSlot(t, swarm, "works-in-slot", noPIDFile)
	mkdirs(t, filepath.Join(cwdSlot, "wt"))
	cmd := helperCmd(t, testBinary(t), "sleep")
	cmd.Dir = filepath.Join(cwdSlot, "wt")
	inSlot := startHelper(t, cmd, "sleep").Process.Pid

	fdSlot := addSlot(t, swarm, "holds-a-file", noPIDFile)
	writeFile(t, filepath.Join(fdSlot, "log"), "")
	cmd = helperCmd(t, testBinary(t), "hold")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(fdSlot, "log"))
	cmd.Dir = tempDir(t)
	holding := startHelper(t, cmd, "hold").Process.Pid

	strangerSlot := addSlot(t, swarm, "stranger", noPIDFile)
	stranger := startChild(t, "sleep").Process.Pid

	for dir, pid := range map[string]int{cwdSlot: inSlot, fdSlot: holding, strangerSlot: stranger} {
		writeFile(t, filepath.Join(dir, PIDFile), pidLine(pid))
		backdate(t, dir)
	}
	wantLive := []Slot{{"holds-a-file", holding}, {"works-in-slot", inSlot}}
	if got, err := LiveSlots(ws); !slices.Equal(got, wantLive) || err != nil {
		t.Errorf("LiveSlots(ws) = %v, %v, want %v, nil", got, err, wantLive)
	}
	if got, err := DeadSlots(ws); !slices.Equal(got, []string{"stranger"}) || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want [stranger], nil", got, err)
	}
	if got, err := PruneDead(ws); !slices.Equal(got, []string{"stranger"}) || err != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want [stranger], nil", got, err)
	}
	for _, dir := range []string{cwdSlot, fdSlot} {
		if _, err := os.Stat(filepath.Join(dir, PIDFile)); err != nil {
			t.Errorf("PruneDead removed %s, whose leaf uses it: %v", dir, err)
		}
	}
}

// TestPruneKeepsSlotInUse: a dead slot that another process works in is
// reported dead but not removed, until that process is gone.
func TestPruneKeepsSlotInUse(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "orphaned-job", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(slot, "wt"))
	cmd := helperCmd(t, testBinary(t), "sleep")
	cmd.Dir = filepath.Join(slot, "wt")
	job := startHelper(t, cmd, "sleep")

	if got, err := DeadSlots(ws); !slices.Equal(got, []string{"orphaned-job"}) || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want [orphaned-job], nil", got, err)
	}
	got, err := PruneDead(ws)
	want := fmt.Sprintf("pid %d (%s)", job.Process.Pid, filepath.Base(testBinary(t))[:min(15, len(filepath.Base(testBinary(t))))])
	if got != nil || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an ErrInUse naming %s", got, err, want)
	}
	if _, err := os.Stat(filepath.Join(slot, PIDFile)); err != nil {
		t.Errorf("PruneDead removed a slot in use: %v", err)
	}
	job.Process.Kill()
	job.Wait()
	if got, err := PruneDead(ws); !slices.Equal(got, []string{"orphaned-job"}) || err != nil {
		t.Errorf("PruneDead(ws) once the job is gone = %v, %v, want [orphaned-job], nil", got, err)
	}
}

// TestPruneKeepsSlotInUseFromAnotherMountNamespace: a process in a mount
// namespace of its own works in the slot through a bind mount of the
// workspace at a path that does not exist here; it is found all the same.
func TestPruneKeepsSlotInUseFromAnotherMountNamespace(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "contained", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(slot, "wt"))
	altRoot := tempDir(t)
	cmd := helperCmd(t, testBinary(t), "ns-work")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+altRoot+"\n"+ws+"\n"+filepath.Join(SwarmDir, "contained", "wt"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	child := startHelper(t, cmd, "ns-work").Process.Pid

	seen, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", child))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(seen); err == nil || !strings.HasPrefix(seen, altRoot) {
		t.Fatalf("setup: the child's working directory reads %q, want a path under %s that does not exist here", seen, altRoot)
	}
	got, err := PruneDead(ws)
	if got != nil || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(child)+" ") {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an ErrInUse naming pid %d", got, err, child)
	}
	if _, err := os.Stat(filepath.Join(slot, PIDFile)); err != nil {
		t.Errorf("PruneDead removed a slot in use: %v", err)
	}
}

// TestPruneReadOnlyTree has uid 65534 prune its own dead slot whose
// directories are read-only (0555, as Go's module cache leaves them) or
// closed (0000): all of it goes.
func TestPruneReadOnlyTree(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	slot := addSlot(t, swarm, "modcache", pidLine(deadPID(t)))
	ro := filepath.Join(slot, "pkg", "mod", "example.com@v1")
	closed := filepath.Join(slot, "closed")
	mkdirs(t, filepath.Join(ro, "sub"), closed)
	writeFile(t, filepath.Join(ro, "sub", "a.go"), "package a")
	writeFile(t, filepath.Join(ro, "go.mod"), "module a")
	writeFile(t, filepath.Join(closed, "file"), "")
	if err := filepath.Walk(ws, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(ro, "sub", "a.go"), 0o444}, {filepath.Join(ro, "go.mod"), 0o444},
		{filepath.Join(ro, "sub"), 0o555}, {ro, 0o555}, {filepath.Join(slot, "pkg", "mod"), 0o555},
		{closed, 0o000},
	} {
		if err := os.Chmod(step.path, step.mode); err != nil {
			t.Fatal(err)
		}
	}
	r := asNobody(t, "PruneDead", ws)
	if !slices.Equal(r.Names, []string{"modcache"}) || r.Err != "" {
		t.Errorf("PruneDead(ws) as nobody = %v, %q, want [modcache], no error", r.Names, r.Err)
	}
	if entries, err := os.ReadDir(swarm); err != nil || len(entries) != 0 {
		t.Errorf("swarm after PruneDead holds %v (%v), want nothing", entries, err)
	}
}

// TestLeftoverOfCrashedPruner has a pruner detach a slot and crash, then
// gives its pid to another process: the next PruneDead must finish the
// leftover all the same, and leave it alone while its pruner runs.
func TestLeftoverOfCrashedPruner(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	addSlot(t, swarm, "dead", pidLine(deadPID(t)))
	cmd := helperCmd(t, testBinary(t), "detach")
	cmd.Dir = ws
	cmd.Env = append(cmd.Env, helperArgEnv+"=dead")
	pruner := startHelper(t, cmd, "detach")
	trash := filepath.Join(swarm, TrashPrefix+strconv.Itoa(pruner.Process.Pid)+".crashed")
	if _, err := os.Stat(filepath.Join(trash, PIDFile)); err != nil {
		t.Fatalf("setup: the pruner left no detached tree: %v", err)
	}

	if got, err := PruneDead(ws); got != nil || err != nil {
		t.Errorf("PruneDead(ws) while the pruner runs = %v, %v, want nil, nil", got, err)
	}
	if _, err := os.Stat(trash); err != nil {
		t.Fatalf("PruneDead took the tree of a pruner at work: %v", err)
	}

	pruner.Process.Kill()
	pruner.Wait()
	stranger := startChildWithPID(t, pruner.Process.Pid)
	if !Alive(stranger.Process.Pid) {
		t.Fatalf("setup: pid %d is not taken again", pruner.Process.Pid)
	}
	if got, err := PruneDead(ws); got != nil || err != nil {
		t.Errorf("PruneDead(ws) after the pruner crashed = %v, %v, want nil, nil", got, err)
	}
	if entries, err := os.ReadDir(swarm); err != nil || len(entries) != 0 {
		t.Errorf("swarm after PruneDead holds %v (%v), want nothing: the crashed pruner's leftover leaks", entries, err)
	}
}

// TestSymlinkSwapSteersNothing runs PruneDead as root while the workspace's
// owner, uid 65534, swaps the swarm directory for a symlink to a directory
// of root's, whose entries are named like the dead slots, and back, again
// and again. inotify watches the outside directory: nothing in it may be
// renamed, removed or made.
func TestSymlinkSwapSteersNothing(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, ws)
	for _, dir := range []string{filepath.Dir(swarm), swarm} {
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	const slots = 100
	dead := pidLine(deadPID(t))
	outside := tempDir(t)
	inotify, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(inotify)
	const changes = syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE | syscall.IN_CREATE |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ATTRIB | syscall.IN_MODIFY
	watch := func(dir string) {
		if _, err := syscall.InotifyAddWatch(inotify, dir, changes); err != nil {
			t.Fatal(err)
		}
	}
	for i := range slots {
		dir := filepath.Join(outside, fmt.Sprintf("slot-%03d", i))
		mkdirs(t, dir)
		writeFile(t, filepath.Join(dir, "precious"), "root's")
		watch(dir)
	}
	watch(outside)
	// The real swarm directory, held open by the test so that it can lay
	// dead slots in it again whatever its name is at the moment.
	real, err := os.OpenRoot(swarm)
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	addDeadSlots := func() {
		for i := range slots {
			name := fmt.Sprintf("slot-%03d", i)
			if err := real.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				t.Fatal(err)
			}
			if err := real.WriteFile(filepath.Join(name, PIDFile), []byte(dead), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	swapper := nobodyCmd(t, "swap")
	swapper.Env = append(swapper.Env, helperArgEnv+"="+swarm+"\n"+outside)
	startHelper(t, swapper, "swap")
	const rounds = 30
	removed := 0
	for range rounds {
		addDeadSlots()
		got, _ := PruneDead(ws)
		removed += len(got)
	}
	swapper.Process.Kill()
	swapper.Wait()
	if info, err := os.Lstat(swarm); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		os.Remove(swarm)
		os.Rename(swarm+".real", swarm)
	}

	var events [4096]byte
	if n, err := syscall.Read(inotify, events[:]); n > 0 {
		t.Errorf("PruneDead changed the directory outside the workspace: %s", describeInotify(events[:n]))
	} else if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("reading inotify: %v", err)
	}
	for i := range slots {
		if _, err := os.Stat(filepath.Join(outside, fmt.Sprintf("slot-%03d", i), "precious")); err != nil {
			t.Errorf("outside entry lost: %v", err)
		}
	}
	if removed == 0 {
		t.Errorf("PruneDead removed no slot in %d rounds: the swap kept it from the real swarm directory all along, so the test tested nothing", rounds)
	}
	t.Logf("%d dead slots removed over %d rounds while the swarm directory was swapped", removed, rounds)
}

// describeInotify lists the events of inotify records: mask and name.
func describeInotify(buf []byte) string {
	var out []string
	for len(buf) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		name := strings.TrimRight(string(buf[syscall.SizeofInotifyEvent:end]), "\x00")
		out = append(out, fmt.Sprintf("%#x %s", ev.Mask, name))
		buf = buf[end:]
	}
	return strings.Join(out, ", ")
}
