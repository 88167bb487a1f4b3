//go:build linux

package slotgc

// Reproductions of attacks on slotgc's promises. Each TestAttack* fails
// (t.Errorf) when the promise it names is broken; a pass means it held.
// Run as root:
//
//	go test -run 'TestAttack' -count=1 -v .

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	switch os.Getenv(helperEnv) {
	case "attack-enter":
		// Wait for a line on stdin, then start working in the directory
		// named by SLOTGC_TEST_ARG (chdir, write a file, keep it open), as a
		// freshly started leaf does before it writes its pid file.
		bufio.NewReader(os.Stdin).ReadString('\n')
		dir := os.Getenv(helperArgEnv)
		if err := os.Chdir(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		f, err := os.Create("work.txt")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		f.WriteString("precious work\n")
		fmt.Println("in")
		time.Sleep(childLifetime)
		runtime.KeepAlive(f)
		os.Exit(0)
	case "attack-thread":
		// One thread unshares its fs info and file table (clone(2) without
		// CLONE_FS/CLONE_FILES, as a pthread made by some runtimes or
		// unshare(2) does), changes its own working directory into the
		// slot and opens a file there; the main thread stays in /.
		os.Chdir("/")
		dir := os.Getenv(helperArgEnv)
		ready := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if err := syscall.Unshare(syscall.CLONE_FS | syscall.CLONE_FILES); err != nil {
				ready <- err
				return
			}
			if err := syscall.Chdir(dir); err != nil {
				ready <- err
				return
			}
			fd, err := syscall.Open("held.txt", syscall.O_RDWR|syscall.O_CREAT, 0o644)
			if err != nil {
				ready <- err
				return
			}
			syscall.Write(fd, []byte("thread's work\n"))
			ready <- nil
			select {} // keep the thread (and its cwd and fd) forever
		}()
		if err := <-ready; err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		time.Sleep(childLifetime)
		os.Exit(0)
	case "attack-dirfd":
		// Hold only a directory descriptor of the slot (as a process
		// working relative to a dirfd with openat does), from a working
		// directory elsewhere.
		os.Chdir("/")
		fd, err := syscall.Open(os.Getenv(helperArgEnv), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		// Later, the process writes its output through the descriptor.
		out, err := syscall.Openat(fd, "result.txt", syscall.O_WRONLY|syscall.O_CREAT, 0o644)
		fmt.Println("openat:", out, err)
		time.Sleep(childLifetime)
		os.Exit(0)
	}
}

// asUser runs a shell command as uid/gid 65534.
func asUser(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as 65534: %s: %v: %s", script, err, out)
	}
}

// TestAttackKillSlotForgedPIDFile: uid 65534, who may write the shared
// (0777) swarm directory, makes a slot whose pid file names a process of
// root's that has nothing to do with the swarm. The file is written after
// that process started, so the time rule calls it the leaf; LiveSlots
// reports the slot, and root's KillSlot signals the stranger.
func TestAttackKillSlotForgedPIDFile(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	os.Chmod(swarm, 0o777)
	stranger := startChild(t, "sleep") // root's daemon, say; not a leaf, never in the swarm
	pid := stranger.Process.Pid
	time.Sleep(50 * time.Millisecond)
	asUser(t, fmt.Sprintf("mkdir %s/evil && echo %d > %s/evil/leaf.pid", swarm, pid, swarm))

	live, err := LiveSlots(ws)
	t.Logf("LiveSlots = %v, %v", live, err)
	if !slices.Contains(live, Slot{Name: "evil", PID: pid}) {
		t.Fatalf("setup: LiveSlots does not report the forged slot")
	}
	// The CLI stops every live slot (or the one the attacker names).
	gone, err := KillSlot(ws, Slot{Name: "evil", PID: pid})
	t.Logf("KillSlot(evil) = %v, %v", gone, err)
	time.Sleep(100 * time.Millisecond)
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || stranger.ProcessState != nil || procState(pid) == 'Z' {
		t.Errorf("KillSlot signalled pid %d, a root process that is not the slot's leaf (the pid file is 65534's and was written after it started; the process never used the slot)", pid)
	}
}

// procState returns the state letter of pid from /proc/<pid>/stat, 0 if
// none.
func procState(pid int) byte {
	st, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return st.state
}

// TestAttackStaleProcPass: PruneDead reads /proc once per call, at the
// first slot it checks, and removes every later slot on that snapshot.
// While it removes a big dead slot "a", a new leaf starts working in dead
// slot "b" (its old pid file not yet rewritten): "b" is removed under it.
func TestAttackStaleProcPass(t *testing.T) {
	ws, swarm := workspace(t)
	a := addSlot(t, swarm, "a", pidLine(deadPID(t)))
	for i := range 120 {
		d := filepath.Join(a, "d"+strconv.Itoa(i))
		mkdirs(t, d)
		for j := range 120 {
			os.WriteFile(filepath.Join(d, strconv.Itoa(j)), nil, 0o644)
		}
	}
	b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(b, "wt"))
	writeFile(t, filepath.Join(b, "wt", "source.go"), "package main\n")

	leafCmd := helperCmd(t, testBinary(t), "attack-enter")
	leafCmd.Env = append(leafCmd.Env, helperArgEnv+"="+filepath.Join(b, "wt"))
	stdin, _ := leafCmd.StdinPipe()
	stdout, _ := leafCmd.StdoutPipe()
	if err := leafCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leafCmd.Process.Kill(); leafCmd.Wait() })

	type res struct {
		names []string
		err   error
	}
	done := make(chan res, 1)
	go func() { n, err := PruneDead(ws); done <- res{n, err} }()
	// Wait until "a" is detached: the pass over /proc is done.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Lstat(a); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a never detached")
		}
		time.Sleep(200 * time.Microsecond)
	}
	fmt.Fprintln(stdin, "go")
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "in" {
		t.Fatalf("leaf did not enter b: %q", line)
	}
	entered := time.Now()
	r := <-done
	t.Logf("leaf entered b/wt %v before PruneDead returned; PruneDead = %v, %v", time.Since(entered), r.names, r.err)
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", leafCmd.Process.Pid))
	if _, err := os.Stat(b); err != nil {
		t.Errorf("PruneDead removed slot b while pid %d worked in it (its cwd now reads %q); its work.txt is lost", leafCmd.Process.Pid, cwd)
	}
}

// TestAttackThreadCwdAndFiles: one thread of a process unshares its fs
// info and file table, works in a dead slot and holds a file there open.
// /proc/<pid>/{cwd,fd} show only the main thread's, so PruneDead removes
// the slot under the thread.
func TestAttackThreadCwdAndFiles(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "threaded", pidLine(deadPID(t)))
	cmd := helperCmd(t, testBinary(t), "attack-thread")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+slot)
	p := startHelper(t, cmd, "attack-thread").Process.Pid
	users, uerr := Users(ws, "threaded")
	got, err := PruneDead(ws)
	t.Logf("Users = %v, %v; PruneDead = %v, %v", users, uerr, got, err)
	if _, err := os.Stat(slot); err != nil {
		t.Errorf("PruneDead removed slot %q while a thread of pid %d had its cwd there and held threaded/held.txt open", slot, p)
	}
}

// TestAttackDirFDHolder: a process holding only a directory descriptor
// of the slot (it writes through openat later) does not count as a user.
func TestAttackDirFDHolder(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "dirfd", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(slot, "out"))
	cmd := helperCmd(t, testBinary(t), "attack-dirfd")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(slot, "out"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	sc.Scan()
	got, err := PruneDead(ws)
	t.Logf("PruneDead = %v, %v", got, err)
	fmt.Fprintln(stdin, "go")
	sc.Scan()
	t.Logf("holder then: %s", sc.Text())
	if _, err := os.Stat(slot); err != nil {
		t.Errorf("PruneDead removed %s while pid %d held a descriptor of its directory out/ (its later openat: %s)", slot, cmd.Process.Pid, sc.Text())
	}
}

// TestAttackOverlayOfSlot: a process works in an overlay whose lower
// layer is the slot (a sandbox of the slot's tree, say), with its cwd
// there and a file of the lower layer open. Its files are reached through
// the overlay's mount, whose device is not the swarm's, so the pass
// drops them: the slot, the overlay's lower layer, is removed under it.
func TestAttackOverlayOfSlot(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "sandboxed", pidLine(deadPID(t)))
	mkdirs(t, filepath.Join(slot, "src"))
	writeFile(t, filepath.Join(slot, "src", "main.go"), "package main\n")
	base := tempDir(t)
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	mkdirs(t, upper, work, merged)
	mountOverlay(t, slot, upper, work, merged)
	cmd := helperCmd(t, testBinary(t), "hold")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(merged, "src", "main.go"))
	cmd.Dir = filepath.Join(merged, "src")
	p := startHelper(t, cmd, "hold").Process.Pid
	got, err := PruneDead(ws)
	t.Logf("PruneDead = %v, %v", got, err)
	entries, _ := os.ReadDir(filepath.Join(merged, "src"))
	t.Logf("the sandbox's view of src after PruneDead: %v", entries)
	if _, err := os.Stat(slot); err != nil {
		t.Errorf("PruneDead removed %s, the lower layer of an overlay pid %d works in (cwd and an open file)", slot, p)
	}
}

// TestAttackHardLinkOutside: a slot holds a hard link to a file outside
// the swarm; removal must unlink only the link.
func TestAttackHardLinkOutside(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "linked", pidLine(deadPID(t)))
	outside := filepath.Join(filepath.Dir(filepath.Dir(swarm)), "precious.txt")
	writeFile(t, outside, "keep me\n")
	if err := os.Link(outside, filepath.Join(slot, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := PruneDead(ws)
	t.Logf("PruneDead = %v, %v", got, err)
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep me\n" {
		t.Errorf("the file outside the swarm: %q, %v", b, err)
	}
}

// TestAttackPlantedProbeEntries: uid 65534 plants entries named like
// PruneDead's clock probe: a symlink, a FIFO, and a file it keeps locked.
// Root's PruneDead must not follow, block on or be stopped by them.
func TestAttackPlantedProbeEntries(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	os.Chmod(swarm, 0o777)
	addSlot(t, swarm, "dead", pidLine(deadPID(t)))
	target := filepath.Join(tempDir(t), "target")
	writeFile(t, target, "root's\n")
	asUser(t, fmt.Sprintf("cd %s && ln -s %s %sclock.sym && mkfifo %sclock.fifo && mkdir %sclock.dir && echo x > %sclock.dir/f",
		swarm, target, TrashPrefix, TrashPrefix, TrashPrefix, TrashPrefix))
	lock := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "exec 9>"+filepath.Join(swarm, TrashPrefix+"clock.locked")+" && flock -x 9 && exec sleep 60")
	lock.Start()
	t.Cleanup(func() { lock.Process.Kill(); lock.Wait() })
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	var got []string
	var err error
	go func() { got, err = PruneDead(ws); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("PruneDead hung on planted probe entries")
	}
	t.Logf("PruneDead = %v, %v", got, err)
	if b, _ := os.ReadFile(target); string(b) != "root's\n" {
		t.Errorf("symlink target changed")
	}
	if !slices.Equal(got, []string{"dead"}) {
		t.Errorf("dead slot not pruned beside planted entries")
	}
}

// TestAttackMountInOtherNamespace: a process in a mount namespace of its
// own (a container) has a tmpfs mounted on a directory of a dead slot,
// holding its data; no process has its cwd or a file there. This
// process's mount table does not list it, the walk sees an empty
// directory, and removing it detaches the container's mount: the tmpfs
// and its data are gone.
func TestAttackMountInOtherNamespace(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "contained", pidLine(deadPID(t)))
	mnt := filepath.Join(slot, "wt", "cache")
	mkdirs(t, mnt)
	ns := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs scratch "+mnt+" && echo precious > "+mnt+"/data && cd / && echo ready && exec sleep 60")
	stdout, _ := ns.StdoutPipe()
	ns.Stderr = os.Stderr
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Process.Kill(); ns.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatal("namespace child not ready")
	}
	pid := ns.Process.Pid
	before, _ := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "cat", mnt+"/data").CombinedOutput()
	got, err := PruneDead(ws)
	t.Logf("container saw %q; PruneDead = %v, %v", before, got, err)
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	after, _ := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "cat", mnt+"/data").CombinedOutput()
	if _, err := os.Stat(slot); err != nil {
		t.Errorf("PruneDead removed %s although a mount point (tmpfs, in pid %d's mount namespace) was inside it; the container's mount table lists it after: %v; the container now reads its data as %q",
			slot, pid, strings.Contains(string(mi), " "+mnt+" "), after)
	}
}
