package slotgc

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

var (
	_ = registerHelper("late-leaf", func() {
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
	})
	_ = registerHelper("late-writer", func() {
		// Wait for a line on stdin, then make a new directory in the one
		// named by SLOTGC_TEST_ARG and a file in it, and keep that open,
		// working from elsewhere: a late user of nothing the slot held
		// before.
		bufio.NewReader(os.Stdin).ReadString('\n')
		dir := filepath.Join(os.Getenv(helperArgEnv), "new")
		if err := os.Mkdir(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		f, err := os.Create(filepath.Join(dir, "work.txt"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		f.WriteString("precious work\n")
		fmt.Println("in")
		time.Sleep(childLifetime)
		runtime.KeepAlive(f)
		os.Exit(0)
	})
	_ = registerHelper("attack-thread", func() {
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
	})
	_ = registerHelper("attack-dirfd", func() {
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
	})
)

// asUser runs a shell command as uid/gid 65534.
func asUser(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as 65534: %s: %v: %s", script, err, out)
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

// TestKillSlotForgedPIDFile: uid 65534, who may write the shared
// (0777) swarm directory, makes a slot whose pid file names a process of
// root's that has nothing to do with the swarm. The file is written after
// that process started, so the time rule calls it the leaf; LiveSlots
// reports the slot, and root's KillSlot signals the stranger.
func TestKillSlotForgedPIDFile(t *testing.T) {
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

// TestPruneSeesLateUser starts a process working in a dead slot after the
// call's pass over /proc, once the guards have let the slot go and before
// it is detached, as a new leaf that has not written its pid file yet
// would: the look PruneDead takes again once the slot is detached must see
// it, and put the slot back.
func TestPruneSeesLateUser(t *testing.T) {
	for _, tc := range []struct {
		mode string
		// made is a file the late user makes and keeps, relative to wt.
		made string
	}{
		{"late-leaf", "work.txt"},
		{"late-writer", "new/work.txt"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ws, swarm := workspace(t)
			addSlot(t, swarm, "a", pidLine(deadPID(t)))
			b := addSlot(t, swarm, "b", pidLine(deadPID(t)))
			mkdirs(t, filepath.Join(b, "wt"))
			writeFile(t, filepath.Join(b, "wt", "source.go"), "package main\n")

			leafCmd := helperCmd(t, testBinary(t), tc.mode)
			leafCmd.Env = append(leafCmd.Env, helperArgEnv+"="+filepath.Join(b, "wt"))
			leafCmd.Dir = tempDir(t)
			// Slot a's check made the call's one pass over /proc; b's
			// reuses it.
			startLateUser(t, leafCmd, "b")

			got, err := PruneDead(ws)
			if !slices.Equal(got, []string{"a"}) || !errors.Is(err, ErrInUse) {
				t.Errorf("PruneDead(ws) = %v, %v, want [a] and an ErrInUse for b", got, err)
			}
			if _, err := os.Stat(filepath.Join(b, "wt", tc.made)); err != nil {
				t.Errorf("slot b is not whole at its name while pid %d works in it: %v", leafCmd.Process.Pid, err)
			}
		})
	}
}

// startLateUser starts cmd, a helper that begins using a slot once it
// reads a line on stdin and then prints "in", and has it begin while
// PruneDead works on slot, between the guards' check and the detach. The
// child is killed and reaped when the test ends.
func startLateUser(t *testing.T, cmd *exec.Cmd, slot string) {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testHookChecked = func(checked string) {
		if checked != slot {
			return
		}
		fmt.Fprintln(stdin, "go")
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "in" {
			t.Errorf("setup: the late user did not begin using %s: %q", slot, line)
		}
	}
	t.Cleanup(func() { testHookChecked = nil })
}

// TestPruneHardLinkToOutside: a slot holds a hard link to a file outside
// the swarm; removal must unlink only the link.
func TestPruneHardLinkToOutside(t *testing.T) {
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

// TestPlantedProbeEntries: uid 65534 plants entries named like
// PruneDead's clock probe: a symlink, a FIFO, and a file it keeps locked.
// Root's PruneDead must not follow, block on or be stopped by them.
func TestPlantedProbeEntries(t *testing.T) {
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

// TestPruneKeepsMountInOtherNamespace: a process in a mount namespace of its
// own (a container) has a tmpfs mounted on a directory of a dead slot,
// holding its data; no process has its cwd or a file there. This
// process's mount table does not list it, the walk sees an empty
// directory, and removing it detaches the container's mount: the tmpfs
// and its data are gone.
func TestPruneKeepsMountInOtherNamespace(t *testing.T) {
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
