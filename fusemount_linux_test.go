package slotgc

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fuseConnections is where the fusectl file system shows one directory per
// FUSE connection, with an abort file that ends it.
const fuseConnections = "/sys/fs/fuse/connections"

// fuseMount is a FUSE mount served by a helper child, and every child
// started to use it. Its cleanup, registered before anything is started,
// puts the system back in order whatever state the test left it in.
type fuseMount struct {
	t      *testing.T
	Dir    string     // the mount point
	conn   int64      // the connection number, the mount's device number; -1 until known
	daemon *fuseChild // the server
	Holder *fuseChild // a child that works in the mount and holds files of it open
	// HolderFDs are the Holder's descriptors of fuseFileName, open for
	// reading, and of fuseSubName, an O_PATH one.
	HolderFDs [2]int
	children  []*fuseChild
	launches  chan launch // to the launcher; closed by the cleanup
}

// mountFUSE mounts the test file system on dir, an empty directory, served
// by a helper child, and checks that /proc/self/mountinfo lists it as
// fuse. The mount answers until stall is called.
func mountFUSE(t *testing.T, dir string) *fuseMount {
	t.Helper()
	return mountServed(t, dir, "fuse-serve")
}

// mountServed mounts on dir, as mountFUSE does, the file system that the
// helper in mode serves, given args (see fuseserve_linux_test.go).
func mountServed(t *testing.T, dir, mode string, args ...string) *fuseMount {
	t.Helper()
	needRoot(t)
	// mountinfo and /proc/<pid>/cwd name the mount by its real path.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &fuseMount{t: t, Dir: dir, conn: -1, launches: make(chan launch)}
	t.Cleanup(m.cleanup)
	go m.launcher()
	m.daemon = m.spawn(mode, dir, args...)
	switch line, err := m.daemon.line(settleTimeout); {
	case err != nil:
		t.Fatalf("setup: FUSE server not ready: %v", err)
	case strings.HasPrefix(line, "unavailable"):
		if os.Getenv(requireRootEnv) == "1" {
			t.Fatalf("setup: FUSE is %s, and %s=1 forbids skipping", line, requireRootEnv)
		}
		t.Skipf("FUSE is %s", line)
	case line != "ready":
		t.Fatalf("setup: FUSE server said %q, want ready", line)
	}
	fstype, dev, ok := mountinfoEntry(dir)
	if !ok || fstype != "fuse" {
		t.Fatalf("setup: /proc/self/mountinfo lists %s as %q (listed: %v), want a fuse mount", dir, fstype, ok)
	}
	m.conn = int64(dev)
	return m
}

// stalledFUSE mounts the test file system on dir (a new directory when dir
// is ""), has a child work in it and hold a file and a directory of it
// open, and stops the server: see hold and stall.
func stalledFUSE(t *testing.T, dir string) *fuseMount {
	t.Helper()
	if dir == "" {
		dir = tempDir(t)
	}
	m := mountFUSE(t, dir)
	m.hold()
	m.stall()
	return m
}

// hold starts the Holder: a child whose working directory is the mount's
// root and which holds fuseFileName open for reading and fuseSubName by an
// O_PATH descriptor, as a leaf working in the mount would.
func (m *fuseMount) hold() *fuseChild {
	m.t.Helper()
	c := m.spawn("fuse-hold", m.Dir)
	line, err := c.line(settleTimeout)
	if err != nil {
		m.t.Fatalf("setup: the holder is not ready: %v", err)
	}
	if _, err := fmt.Sscanf(line, "ready %d %d", &m.HolderFDs[0], &m.HolderFDs[1]); err != nil {
		m.t.Fatalf("setup: the holder said %q (%v), want ready and two descriptors", line, err)
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", c.pid())); err != nil || cwd != m.Dir {
		m.t.Fatalf("setup: the holder works in %q (%v), want %s", cwd, err, m.Dir)
	}
	m.Holder = c
	return c
}

// stall stops the server with SIGSTOP and proves the stall: a stat of the
// Holder's working directory (or of the mount point, with no Holder) in a
// child gets no answer, and that child's thread is seen waiting on FUSE in
// the kernel, in D state once a signal has reached it. The probe is left
// hanging, for the cleanup to end.
func (m *fuseMount) stall() {
	t := m.t
	t.Helper()
	if err := m.daemon.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("setup: stop the FUSE server: %v", err)
	}
	waitProcStat(t, m.daemon.pid(), "stopped", func(st procStat) bool { return st.state == 'T' })
	target := m.Dir
	if m.Holder != nil {
		target = fmt.Sprintf("/proc/%d/cwd", m.Holder.pid())
	}
	probe := m.spawn("fuse-stat", target)
	if line, err := probe.line(settleTimeout); err != nil || line != "stat" {
		t.Fatalf("setup: the stat probe said %q, %v, want stat", line, err)
	}
	if line, err := probe.line(stallProof); !errors.Is(err, errNoLine) {
		t.Fatalf("setup: stat %s with the FUSE server stopped gave %q, %v: the stall is not real", target, line, err)
	}
	// The probe's stat runs on its main thread, whose id is its pid. A FUSE
	// request is first waited for interruptibly (S); a signal the probe
	// handles, such as SIGURG, moves the wait to one only SIGKILL ends (D)
	// and does not end it.
	first := waitProcStat(t, probe.pid(), "waiting in FUSE", func(st procStat) bool {
		stack := kernelStack(probe.pid(), probe.pid())
		return waitsOnFUSE(stack) || stack == "" && (st.state == 'S' || st.state == 'D')
	})
	syscall.Tgkill(probe.pid(), probe.pid(), syscall.SIGURG)
	waitProcStat(t, probe.pid(), "in D state", func(st procStat) bool { return st.state == 'D' })
	if line, err := probe.line(stallProof); !errors.Is(err, errNoLine) {
		t.Fatalf("setup: stat %s with the FUSE server stopped gave %q, %v: the stall is not real", target, line, err)
	}
	t.Logf("stall: stat %s waits in state %c, and in D after a signal: %s", target, first.state, kernelStack(probe.pid(), probe.pid()))
}

// requests returns how many requests of each kind (see fuseFS.count) the
// server has read so far. Every request a call made has been read once
// the call returned.
func (m *fuseMount) requests() map[string]int {
	m.t.Helper()
	if err := m.daemon.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		m.t.Fatalf("ask the FUSE server for its requests: %v", err)
	}
	line, err := m.daemon.line(settleTimeout)
	fields := strings.Fields(line)
	if err != nil || len(fields) == 0 || fields[0] != "requests" {
		m.t.Fatalf("the FUSE server said %q, %v, want its requests", line, err)
	}
	counts := make(map[string]int)
	for _, f := range fields[1:] {
		name, n, _ := strings.Cut(f, "=")
		if counts[name], err = strconv.Atoi(n); err != nil {
			m.t.Fatalf("the FUSE server said %q: %v", line, err)
		}
	}
	return counts
}

// flock has a child take flock(2) LOCK_EX|LOCK_NB on path, opened for
// reading as PruneDead opens what it locks, and returns the errno it got:
// 0 when it got the lock. The child ends at once, and the lock with it.
func (m *fuseMount) flock(path string) syscall.Errno {
	m.t.Helper()
	c := m.spawn("fuse-flock", path)
	line, err := c.line(settleTimeout)
	var errno syscall.Errno
	if err == nil {
		_, err = fmt.Sscanf(line, "flock %d", &errno)
	}
	if err != nil {
		m.t.Fatalf("the flock probe of %s said %q: %v", path, line, err)
	}
	return errno
}

// launcher starts the children on a thread kept for the purpose until the
// cleanup. Their parent-death signal, SIGKILL, comes when the thread that
// started them ends: so it comes when the test process dies without its
// cleanup (a test timeout), never earlier. Then the server's death ends
// the connection, and no stopped server is left to hang every stat of its
// mount for good.
func (m *fuseMount) launcher() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for l := range m.launches {
		l.started <- l.cmd.Start()
	}
}

// spawn starts a helper child in mode with SLOTGC_TEST_ARG set to arg and
// args on its command line, to be killed and reaped by the cleanup.
func (m *fuseMount) spawn(mode, arg string, args ...string) *fuseChild {
	t := m.t
	t.Helper()
	cmd := helperCmd(t, testBinary(t), mode, args...)
	cmd.Env = append(cmd.Env, helperArgEnv+"="+arg)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	m.launches <- launch{cmd, started}
	err = <-started
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	c := &fuseChild{mode: mode, cmd: cmd, lines: make(chan string, 4), exited: make(chan struct{})}
	m.children = append(m.children, c)
	go func() {
		cmd.Wait()
		close(c.exited)
	}()
	go func() {
		defer r.Close()
		defer close(c.lines)
		lines := bufio.NewScanner(r)
		lines.Buffer(nil, 1<<20)
		for lines.Scan() {
			c.lines <- lines.Text()
		}
	}()
	return c
}

// cleanup puts things back in order: it aborts the connection first, so
// that no process waits on the mount any more, then kills and reaps every
// child (a stopped server dies of SIGKILL too, and its death would end the
// connection if the abort could not), unmounts, and checks that nothing
// is left.
func (m *fuseMount) cleanup() {
	t := m.t
	if m.conn >= 0 {
		if err := abortFUSE(m.conn); err != nil {
			t.Logf("abort FUSE connection %d: %v; the server's death ends it instead", m.conn, err)
		}
	}
	for _, c := range m.children {
		c.cmd.Process.Kill()
	}
	deadline := time.Now().Add(reapTimeout)
	for _, c := range m.children {
		select {
		case <-c.exited:
		case <-time.After(time.Until(deadline)):
			st, _ := readProcStat(c.pid())
			t.Errorf("cleanup: %s child %d not reaped %v after the abort and SIGKILL (state %c): %s", c.mode, c.pid(), reapTimeout, st.state, waitsIn(c.pid()))
		}
	}
	close(m.launches)
	if err := syscall.Unmount(m.Dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		t.Errorf("cleanup: unmount %s: %v", m.Dir, err)
	}
	if _, _, ok := mountinfoEntry(m.Dir); ok {
		t.Errorf("cleanup: %s is still mounted", m.Dir)
	}
	if err := os.Remove(m.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cleanup: %v", err)
	}
}

// abortFUSE ends FUSE connection conn through fusectl, mounting fusectl
// for the purpose where it is not, and unmounting it again after.
func abortFUSE(conn int64) error {
	if fstype, _, ok := mountinfoEntry(fuseConnections); !ok || fstype != "fusectl" {
		if err := syscall.Mount("fusectl", fuseConnections, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
		defer syscall.Unmount(fuseConnections, syscall.MNT_DETACH)
	}
	f, err := os.OpenFile(filepath.Join(fuseConnections, strconv.FormatInt(conn, 10), "abort"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString("1")
	return err
}

// mountinfoEntry returns the file system type and device of the mount at
// dir, the last one /proc/self/mountinfo lists there. The device is the
// kernel's encoding of major:minor, which names a FUSE connection.
func mountinfoEntry(dir string) (fstype string, dev uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+1 >= len(fields) || unescapeOctal([]byte(fields[4])) != dir {
			continue
		}
		major, minor, _ := strings.Cut(fields[2], ":")
		maj, err1 := strconv.ParseUint(major, 10, 32)
		min, err2 := strconv.ParseUint(minor, 10, 32)
		if err1 == nil && err2 == nil {
			fstype, dev, ok = fields[sep+1], maj<<20|min, true
		}
	}
	return fstype, dev, ok
}
