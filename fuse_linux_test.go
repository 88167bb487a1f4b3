package slotgc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The harness for tests next to a FUSE mount whose server stops answering:
// the server of fuseserve_linux_test.go runs in a helper child, and every
// process that may touch its mount is a child the harness kills and reaps.
// A stalled server makes every stat of its files wait, a stat through
// another process's /proc/<pid>/cwd, /root or /fd/N too, and once a signal
// has reached the waiter only SIGKILL ends the wait, or the end of the
// connection. The test process itself never touches the mount.

const (
	// stallProof is how long a stat into the mount must go unanswered, and
	// its thread be seen waiting in FUSE, before the harness takes the
	// stall for real.
	stallProof = 300 * time.Millisecond
	// reapTimeout bounds the wait for a SIGKILLed child to be reaped, once
	// the connection is aborted and nothing can hold it any more.
	reapTimeout = 5 * time.Second
)

// errNoLine says a child printed nothing within the time allowed.
var errNoLine = errors.New("no output in time")

// fuseChild is a helper child of the test binary that may touch a FUSE
// mount. Only the mount's cleanup reaps it for sure: until the connection
// is aborted, a child waiting on the mount may not die even of SIGKILL.
type fuseChild struct {
	mode   string
	cmd    *exec.Cmd
	lines  chan string   // its stdout, line by line; closed at its end
	exited chan struct{} // closed once it is reaped
}

func (c *fuseChild) pid() int { return c.cmd.Process.Pid }

// line waits up to timeout for the child's next line of output. A line
// already printed is returned even when the time is up.
func (c *fuseChild) line(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-c.lines:
		return c.got(l, ok)
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case l, ok := <-c.lines:
		return c.got(l, ok)
	case <-timer.C:
		return "", errNoLine
	}
}

// got returns what a receive from lines gave: a line, or at the end of the
// output why there is none.
func (c *fuseChild) got(line string, ok bool) (string, error) {
	if ok {
		return line, nil
	}
	select {
	case <-c.exited:
		return "", fmt.Errorf("%s child ended: %v", c.mode, c.cmd.ProcessState)
	case <-time.After(reapTimeout):
		return "", fmt.Errorf("%s child closed its output", c.mode)
	}
}

// kernelStack returns the function names on the kernel stack of thread tid
// of process pid, innermost first; where the stack cannot be read, the one
// function /proc names as its wait channel; or "".
func kernelStack(pid, tid int) string {
	task := fmt.Sprintf("/proc/%d/task/%d/", pid, tid)
	b, err := os.ReadFile(task + "stack")
	if err != nil {
		wchan, _ := os.ReadFile(task + "wchan")
		return string(wchan)
	}
	var funcs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// "[<0>] request_wait_answer+0x12a/0x2a0"
		f := line[strings.LastIndexByte(line, ' ')+1:]
		if i := strings.IndexByte(f, '+'); i > 0 {
			f = f[:i]
		}
		funcs = append(funcs, f)
	}
	return strings.Join(funcs, " < ")
}

// waitsOnFUSE reports whether a kernel stack, or wait channel, from
// kernelStack is that of a FUSE request's wait.
func waitsOnFUSE(stack string) bool {
	return strings.Contains(stack, "fuse") || strings.Contains(stack, "request_wait_answer")
}

// waitsIn says where a thread of process pid waits: the first thread in D
// state or with FUSE on its kernel stack, by its state and stack.
func waitsIn(pid int) string {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		st, _ := parseProcStat(stat)
		if stack := kernelStack(pid, tid); st.state == 'D' || waitsOnFUSE(stack) {
			return fmt.Sprintf("thread %d, state %c: %s", tid, st.state, stack)
		}
	}
	return "no thread waiting in the kernel"
}

// launch asks the launcher to start cmd and say how that went.
type launch struct {
	cmd     *exec.Cmd
	started chan<- error
}

var (
	_ = registerHelper("fuse-hold", func() {
		// The fuse-hold helper works in the mount SLOTGC_TEST_ARG names,
		// reads its directory and its file, holds the file open and the
		// subdirectory by an O_PATH descriptor, says "ready" and the two
		// descriptors, and waits to be killed.
		fds, err := fuseHold(os.Getenv(helperArgEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fuse-hold:", err)
			os.Exit(2)
		}
		fmt.Println("ready", fds[0], fds[1])
		time.Sleep(childLifetime)
		os.Exit(0)
	})
	_ = registerHelper("fuse-flock", func() {
		// The fuse-flock helper opens SLOTGC_TEST_ARG for reading, takes
		// flock(2) LOCK_EX|LOCK_NB on it, and prints "flock" and the
		// errno, 0 for none.
		fd, err := syscall.Open(os.Getenv(helperArgEnv), pidFileFlags, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fuse-flock:", err)
			os.Exit(2)
		}
		var errno syscall.Errno
		if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil && !errors.As(err, &errno) {
			fmt.Fprintln(os.Stderr, "fuse-flock:", err)
			os.Exit(2)
		}
		fmt.Println("flock", int(errno))
		os.Exit(0)
	})
	_ = registerHelper("fuse-stat", func() {
		// The fuse-stat helper says "stat", stats SLOTGC_TEST_ARG, and
		// prints the device and the error. init runs on the main thread,
		// so the stat does too, and the process's own state in /proc
		// shows the stat's wait.
		fmt.Println("stat")
		var st syscall.Stat_t
		err := syscall.Stat(os.Getenv(helperArgEnv), &st)
		fmt.Println(st.Dev, st.Ino, err)
		os.Exit(0)
	})
)

// fuseHold does the work of the fuse-hold helper in dir and returns the
// descriptors it holds: the file's and the subdirectory's.
func fuseHold(dir string) (fds [2]int, err error) {
	if err := os.Chdir(dir); err != nil {
		return fds, err
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		return fds, err
	}
	if names := dirNames(entries); !slices.Equal(names, []string{fuseFileName, fuseSubName}) {
		return fds, fmt.Errorf("the mount lists %v, want [%s %s]", names, fuseFileName, fuseSubName)
	}
	if fds[0], err = syscall.Open(fuseFileName, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
		return fds, err
	}
	buf := make([]byte, 2*len(fuseFileContent))
	n, err := syscall.Read(fds[0], buf)
	if err != nil || string(buf[:n]) != fuseFileContent {
		return fds, fmt.Errorf("read %s: %q, %v, want %q", fuseFileName, buf[:n], err, fuseFileContent)
	}
	fds[1], err = syscall.Open(fuseSubName, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	return fds, err
}

func dirNames(entries []os.DirEntry) []string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// TestFUSEServes checks the harness itself: while its server answers, the
// test file system can be listed, read and stood in, a stat through
// another process's /proc links reaches it, and stall then makes such a
// stat hang.
func TestFUSEServes(t *testing.T) {
	m := mountFUSE(t, tempDir(t))
	m.hold()
	_, dev, _ := mountinfoEntry(m.Dir)
	for _, tc := range []struct {
		name, path string
		wantIno    uint64
	}{
		{"mount point", m.Dir, fuseRootID},
		{"holder's cwd", fmt.Sprintf("/proc/%d/cwd", m.Holder.pid()), fuseRootID},
		{"holder's open file", fmt.Sprintf("/proc/%d/fd/%d", m.Holder.pid(), m.HolderFDs[0]), fuseFileID},
		{"holder's O_PATH directory", fmt.Sprintf("/proc/%d/fd/%d", m.Holder.pid(), m.HolderFDs[1]), fuseSubID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := m.spawn("fuse-stat", tc.path)
			if line, err := probe.line(settleTimeout); line != "stat" || err != nil {
				t.Fatalf("the stat probe said %q, %v, want stat", line, err)
			}
			line, err := probe.line(settleTimeout)
			if want := fmt.Sprintf("%d %d <nil>", dev, tc.wantIno); line != want || err != nil {
				t.Errorf("stat %s = %q, %v, want %q", tc.path, line, err, want)
			}
		})
	}
	m.stall()
}
