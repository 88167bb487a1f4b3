//go:build linux

package slotgc

// What the guard's full walks catch that shortcuts through them missed:
// reproductions from an attacker's review of three such shortcuts (an
// open directory's descriptor told by fdinfo's O_DIRECTORY, no walk where
// no process holds anything of the file system, the check's survey reused
// after the detach), kept so that none comes back.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// oTmpfile is O_TMPFILE on Linux: __O_TMPFILE | O_DIRECTORY.
const oTmpfile = 0o20000000 | syscall.O_DIRECTORY

// tmpfileWriteEvery is how often the tmpfile-writer helper adds to its
// file.
const tmpfileWriteEvery = 100 * time.Millisecond

// atSymlinkFollow is AT_SYMLINK_FOLLOW for linkat(2).
const atSymlinkFollow = 0x400

var (
	_ = registerHelper("tmpfile-writer", func() {
		// Make an unnamed file in the directory SLOTGC_TEST_ARG names
		// (O_TMPFILE), give it the name log.txt there (linkat), and keep
		// writing to it through that one descriptor, working from /: a
		// log made atomically, as many tools make theirs.
		os.Chdir("/")
		dir := os.Getenv(helperArgEnv)
		fd, err := syscall.Open(dir, oTmpfile|syscall.O_RDWR|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open O_TMPFILE:", err)
			os.Exit(2)
		}
		syscall.Write(fd, []byte("precious work\n"))
		if err := linkat(atFDCWD, "/proc/self/fd/"+strconv.Itoa(fd), atFDCWD, filepath.Join(dir, "log.txt"), atSymlinkFollow); err != nil {
			fmt.Fprintln(os.Stderr, "linkat:", err)
			os.Exit(2)
		}
		fmt.Println("ready", fd)
		for range time.Tick(tmpfileWriteEvery) {
			syscall.Write(fd, []byte("more work\n"))
		}
	})
	_ = registerHelper("reused-inode-writer", func() {
		// Hold the scratch file SLOTGC_TEST_ARG names (outside the slot),
		// working from elsewhere; on a line on stdin, remove and close it,
		// then make work.txt in the directory the second line names and
		// keep it open: a leaf that used a scratch file and then starts
		// its work in the slot. It prints the inode numbers of both.
		scratch := os.Getenv(helperArgEnv)
		f, err := os.Open(scratch)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var st syscall.Stat_t
		syscall.Fstat(int(f.Fd()), &st)
		old := st.Ino
		fmt.Println("ready")
		in := bufio.NewReader(os.Stdin)
		line, _ := in.ReadString('\n')
		dir := strings.TrimSpace(line)
		os.Remove(scratch)
		f.Close()
		w, err := os.Create(filepath.Join(dir, "work.txt"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w.WriteString("precious work\n")
		syscall.Fstat(int(w.Fd()), &st)
		fmt.Println("in", old, st.Ino)
		time.Sleep(childLifetime)
		runtime.KeepAlive(w)
	})
	_ = registerHelper("move-in-worker", func() {
		// Work in a directory of its own outside the slot (its working
		// directory, set by the caller); on a line on stdin, move that
		// directory into the slot at the path SLOTGC_TEST_ARG names and
		// go on working there: a leaf that prepared its worktree aside
		// and moves it into its slot.
		bufio.NewReader(os.Stdin).ReadString('\n')
		cwd, _ := os.Getwd()
		if err := os.Rename(cwd, os.Getenv(helperArgEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("in")
		time.Sleep(childLifetime)
	})
)

// linkat is linkat(2).
func linkat(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
	o, err := syscall.BytePtrFromString(oldpath)
	if err != nil {
		return err
	}
	n, err := syscall.BytePtrFromString(newpath)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(olddirfd), uintptr(unsafe.Pointer(o)), uintptr(newdirfd), uintptr(unsafe.Pointer(n)), uintptr(flags), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// TestPruneSeesTmpfileHeldOpen: a process holds open, and writes to, a
// file of a dead slot that it made with O_TMPFILE and then linked into
// the slot. O_TMPFILE is __O_TMPFILE|O_DIRECTORY, so the descriptor's
// fdinfo flags carry the O_DIRECTORY bit although the file is a regular
// one: a pass that took that bit for an open directory's would drop it.
// The slot is kept, the writer named.
func TestPruneSeesTmpfileHeldOpen(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "tmpfile", pidLine(deadPID(t)))
	wt := filepath.Join(slot, "wt")
	mkdirs(t, wt)
	cmd := helperCmd(t, testBinary(t), "tmpfile-writer")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+wt)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	fields := strings.Fields(line)
	if len(fields) != 2 || fields[0] != "ready" {
		t.Fatalf("setup: helper said %q", line)
	}
	pid := cmd.Process.Pid
	info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fields[1]))
	target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fields[1]))
	fi, err := os.Stat(filepath.Join(wt, "log.txt"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("setup: log.txt is not a regular file in the slot: %v", err)
	}
	t.Logf("pid %d fd %s -> %s; fdinfo:\n%s", pid, fields[1], target, info)

	got, err := PruneDead(ws)
	t.Logf("PruneDead(ws) = %v, %v", got, err)
	if _, statErr := os.Stat(filepath.Join(wt, "log.txt")); statErr != nil || len(got) != 0 {
		t.Errorf("PruneDead(ws) = %v, %v: removed slot tmpfile while pid %d holds its log.txt open and writes to it (its fdinfo flags carry O_DIRECTORY only because it was made with O_TMPFILE)", got, err, pid)
	}
	wantInUseBy(t, err, map[string]int{"tmpfile": pid})
}

// TestPruneSeesLateUserOnReusedInode: a late user starts working in a
// dead slot between its check and its detach, making a new file there
// and holding it, working from elsewhere. Its new file reuses the inode
// number of a scratch file that it held at the call's first pass and
// removed just before (ext4 gives the lowest free inode of the group, so
// a number freed a moment ago comes straight back): a recheck that took
// an inode held at the first pass for one outside the tree would let the
// slot go. Only a fresh survey finds the file; the slot is kept.
func TestPruneSeesLateUserOnReusedInode(t *testing.T) {
	ws, swarm := workspace(t)
	addSlot(t, swarm, "a", pidLine(deadPID(t)))
	b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
	wt := filepath.Join(b, "wt")
	mkdirs(t, wt)
	writeFile(t, filepath.Join(wt, "source.go"), "package main\n")
	// The scratch file is made in the slot's worktree, so in its block
	// group, and moved out before the call: its inode is the one the next
	// file made there takes once it is freed.
	scratch := filepath.Join(ws, "scratch")
	writeFile(t, filepath.Join(wt, "scratch"), "")
	if err := os.Rename(filepath.Join(wt, "scratch"), scratch); err != nil {
		t.Fatal(err)
	}

	cmd := helperCmd(t, testBinary(t), "reused-inode-writer")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+scratch)
	cmd.Dir = tempDir(t)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewReader(stdout)
	if line, _ := out.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("setup: helper said %q", line)
	}
	reused := false
	testHookChecked = func(slot string) {
		if slot != "b" {
			return
		}
		fmt.Fprintln(stdin, wt)
		line, _ := out.ReadString('\n')
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "in" {
			t.Errorf("setup: the late user did not start working in b: %q", line)
			return
		}
		reused = f[1] == f[2]
		t.Logf("scratch inode %s, work.txt inode %s", f[1], f[2])
	}
	t.Cleanup(func() { testHookChecked = nil })

	got, err := PruneDead(ws)
	t.Logf("PruneDead(ws) = %v, %v", got, err)
	if !reused {
		t.Log("the file system gave the late user's file a new inode number: the plain late user is checked")
	}
	if !slices.Equal(got, []string{"a"}) || !errors.Is(err, ErrInUse) {
		t.Errorf("PruneDead(ws) = %v, %v, want [a] and an ErrInUse for b", got, err)
	}
	if _, err := os.Stat(filepath.Join(wt, "work.txt")); err != nil {
		t.Errorf("slot b is not whole at its name while pid %d holds b/wt/work.txt open: %v", cmd.Process.Pid, err)
	}
}

// TestPruneSeesLateUserMovingWorkIn: a late user that prepared its worktree
// aside (its working directory, outside the slot, at the call's first
// pass) moves it into the dead slot between the check and the detach, and
// works on there. Its working directory's inode was held at the first
// pass, outside the tree; only a fresh survey finds it inside. The slot is
// kept, the process's working directory whole.
func TestPruneSeesLateUserMovingWorkIn(t *testing.T) {
	ws, swarm := workspace(t)
	addSlot(t, swarm, "a", pidLine(deadPID(t)))
	b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(b, "wt"))
	aside := filepath.Join(ws, "aside")
	mkdirs(t, aside)
	writeFile(t, filepath.Join(aside, "main.go"), "package main\n")
	moved := filepath.Join(b, "wt", "work")

	cmd := helperCmd(t, testBinary(t), "move-in-worker")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+moved)
	cmd.Dir = aside
	startLateUser(t, cmd, "b")

	got, err := PruneDead(ws)
	t.Logf("PruneDead(ws) = %v, %v", got, err)
	if !slices.Equal(got, []string{"a"}) || !errors.Is(err, ErrInUse) {
		t.Errorf("PruneDead(ws) = %v, %v, want [a] and an ErrInUse for b", got, err)
	}
	wantCwdIntact(t, cmd.Process.Pid, moved)
}

// TestPruneKeepsUnreadableDirOnOwnFileSystem: TestPruneKeepsUnreadableDir's
// root's case with the workspace on a tmpfs of its own. Nobody's pruner
// may not read root's 0311 directory in the dead slot; the package doc
// says such a slot stays, whole, with an error naming the directory
// ("Cannot tell means keep"), even where no process of nobody's holds
// anything on the tmpfs: a guard that skipped the walk then would detach
// the slot and remove it until it met the directory.
func TestPruneKeepsUnreadableDirOnOwnFileSystem(t *testing.T) {
	needRoot(t)
	ws := tempDir(t)
	mount(t, "tmpfs", ws, "tmpfs")
	swarm := filepath.Join(ws, SwarmDir)
	mkdirs(t, swarm)
	openToAll(t, swarm)
	slot := addSlot(t, swarm, "locked-below", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(slot, "wt"))
	writeFile(t, filepath.Join(slot, "wt", "main.go"), "package main\n")
	locked := filepath.Join(slot, "wt", "locked")
	mkdirs(t, filepath.Join(locked, "inner"))
	chownTree(t, ws)
	if err := os.Lchown(locked, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(locked, 0o311); err != nil {
		t.Fatal(err)
	}

	r := asNobody(t, "PruneDead", ws)
	t.Logf("PruneDead(ws) as nobody = %v, %q, failed %v", r.Names, r.Err, r.Failed)
	entries, _ := os.ReadDir(swarm)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if _, err := os.Stat(filepath.Join(slot, "wt", "main.go")); err != nil {
		t.Errorf("slot locked-below is not whole at its name (swarm holds %v): %v; want it kept with an error naming %s, as on a file system some process holds something of", names, err, locked)
	}
}
