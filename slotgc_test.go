package slotgc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// removeAllBroken, where not empty, says why os.RemoveAll cannot work on
// this system, so test directories are left behind rather than removed.
// PruneDead does not use it.
var removeAllBroken string

// helperEnv selects what the re-executed test binary does instead of
// running tests; see TestMain.
const helperEnv = "SLOTGC_TEST_HELPER"

// exhaustFDsEnv, set to 1, has a "call" helper use up its file descriptors
// before it calls Kill.
const exhaustFDsEnv = "SLOTGC_TEST_EXHAUST_FDS"

// helperArgEnv passes a helper mode its argument.
const helperArgEnv = "SLOTGC_TEST_ARG"

// killGraceEnv passes a helper the grace its Kill calls wait, as a
// duration string, so that a test may shorten it in a child too.
const killGraceEnv = "SLOTGC_TEST_KILL_GRACE"

const (
	// childLifetime bounds how long a "sleep" helper lives if nobody kills
	// it, so a crashed test run leaves nothing behind for long.
	childLifetime = 5 * time.Minute
	// settleTimeout bounds waits for a child to reach a state the test
	// needs (ready, zombie).
	settleTimeout = 10 * time.Second
	// helperStartup is long enough for a helper child to start and reach
	// its start gate.
	helperStartup = 300 * time.Millisecond
	// promptKill is the most a Kill of a process that dies at the first
	// request may take: far below the 2 s grace, so a Kill that waited out
	// the grace fails the test.
	promptKill = 1 * time.Second
)

// helperModes holds what the re-executed test binary does, by the mode
// helperEnv names, instead of running tests: one registry, as os/exec's
// tests keep one of helper commands. Each mode is registered, with
// registerHelper, in the test file that uses it (a system's own modes in
// that system's files). The binary runs its mode from init, so on the main
// thread (which the leader-exit mode needs) and before the testing package
// starts.
var helperModes = map[string]func(){}

// registerHelper adds the helper mode named mode. It returns a value only
// so that it can be called in a package-level variable's initializer,
// which Go runs before any init function, and so before runHelper.
func registerHelper(mode string, run func()) bool {
	if _, taken := helperModes[mode]; taken {
		panic("helper mode registered twice: " + mode)
	}
	helperModes[mode] = run
	return true
}

func init() { runHelper() }

// runHelper runs the helper mode helperEnv names, if any, and exits.
func runHelper() {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	run, ok := helperModes[mode]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
	run()
	os.Exit(0)
}

// The helper modes every system's tests use.
var (
	// sleep says "ready" on stdout and sleeps until killed.
	_ = registerHelper("sleep", func() {
		fmt.Println("ready")
		time.Sleep(childLifetime)
	})
	// ignore-term ignores SIGTERM, says "ready" and sleeps until killed.
	_ = registerHelper("ignore-term", func() {
		ignoreTerm()
		fmt.Println("ready")
		time.Sleep(childLifetime)
	})
	// hold opens the file SLOTGC_TEST_ARG names, says "ready" and sleeps
	// until killed.
	_ = registerHelper("hold", func() {
		f, err := os.Open(os.Getenv(helperArgEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		time.Sleep(childLifetime)
		runtime.KeepAlive(f) // held open until killed, not closed by a finalizer
	})
	// exit exits at once.
	_ = registerHelper("exit", func() {})
	// call waits until its stdin is closed, a start gate, then runs the
	// slotgc call its arguments name and prints the result as JSON.
	_ = registerHelper("call", func() {
		if grace, err := time.ParseDuration(os.Getenv(killGraceEnv)); err == nil {
			killGrace = grace
		}
		io.Copy(io.Discard, os.Stdin)
		os.Exit(runCall(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	})
)

// TestMain prepares the test process: no environment of the caller's may
// steer the calls, and the tests that start children must know whether
// the binary can start itself again here.
func TestMain(m *testing.M) {
	// The tests lay out their own state directories; one relocated by the
	// caller's environment would send every call elsewhere.
	os.Unsetenv(StateDirEnv)
	// Nor may the caller's prune options change what PruneDead does.
	os.Unsetenv(IdleEnv)
	os.Unsetenv(KeepEnv)
	if err := checkSpawn(); err != nil {
		spawnBroken = fmt.Sprintf("the test binary cannot start itself again here (%v)", err)
		emulated = errors.Is(err, syscall.ENOEXEC)
	}
	os.Exit(m.Run())
}

// callResult is what a "call" helper prints.
type callResult struct {
	Names      []string
	Slots      []Slot
	Bool       bool
	Err        string
	Permission bool     // errors.Is(err, fs.ErrPermission)
	Failed     []string // the slots of the *SlotErrors err joins
}

func runCall(call, arg string) int {
	var r callResult
	var err error
	switch call {
	case "DeadSlots":
		r.Names, err = DeadSlots(arg)
	case "LiveSlots":
		r.Slots, err = LiveSlots(arg)
	case "PruneDead":
		r.Names, err = PruneDead(arg)
	case "Alive":
		pid, _ := strconv.Atoi(arg)
		r.Bool = Alive(pid)
	case "Kill":
		pid, _ := strconv.Atoi(arg)
		if os.Getenv(exhaustFDsEnv) == "1" {
			exhaustDescriptors()
		}
		r.Bool = Kill(pid)
	default:
		fmt.Fprintln(os.Stderr, "unknown call", call)
		return 2
	}
	if err != nil {
		r.Err = err.Error()
		r.Permission = errors.Is(err, fs.ErrPermission)
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				if se, ok := errors.AsType[*SlotError](e); ok {
					r.Failed = append(r.Failed, se.Slot)
				}
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 2
	}
	return 0
}

// spawnBroken, where not empty, says why the test binary cannot start
// itself again here, so tests that need a child skip; emulated says that
// is because it runs under user-mode emulation.
var (
	spawnBroken string
	emulated    bool
)

// checkSpawn starts the test binary once as an "exit" helper. Under
// user-mode emulation (qemu-arm run by hand on an x86-64 kernel without
// binfmt_misc) the kernel refuses the binary as a foreign executable,
// ENOEXEC.
func checkSpawn() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=exit")
	return cmd.Run()
}

// helperCmd returns a command that re-executes the test binary in mode.
func helperCmd(t testing.TB, exe, mode string, args ...string) *exec.Cmd {
	t.Helper()
	if spawnBroken != "" {
		t.Skip(spawnBroken)
	}
	cmd := exec.Command(exe, append([]string{"-test.run=^$"}, args...)...)
	// Under the race detector a process waits a second as it exits, for
	// reports from threads a helper never makes; every deadPID and every
	// "call" would pay that second.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	return cmd
}

func testBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// startChild starts a helper child in mode and kills and reaps it when the
// test ends. For the modes that say so, it returns once the child is ready.
func startChild(t testing.TB, mode string) *exec.Cmd {
	t.Helper()
	return startHelper(t, helperCmd(t, testBinary(t), mode), mode)
}

// startHelper starts cmd, a helper child in mode, as startChild does.
func startHelper(t testing.TB, cmd *exec.Cmd, mode string) *exec.Cmd {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		close(reaped)
	})
	if mode != "exit" && mode != "leader-exit" {
		awaitReady(t, mode, stdout)
	}
	return cmd
}

// awaitReady waits for a helper child to say "ready" on stdout.
func awaitReady(t testing.TB, mode string, stdout io.Reader) {
	t.Helper()
	ready := make(chan bool, 1)
	go func() { ready <- bufio.NewScanner(stdout).Scan() }()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("%s child did not say ready", mode)
		}
	case <-time.After(settleTimeout):
		t.Fatalf("%s child not ready after %v", mode, settleTimeout)
	}
}

// deadPID returns the pid of a child that was started and reaped: surely
// dead, and until the system wraps its pids around, surely unused.
func deadPID(t testing.TB) int {
	t.Helper()
	cmd := helperCmd(t, testBinary(t), "exit")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// workspace returns a new workspace directory with an empty swarm
// directory in it, and the swarm directory's path.
func workspace(t *testing.T) (ws, swarm string) {
	t.Helper()
	ws = tempDir(t)
	swarm = filepath.Join(ws, SwarmDir)
	if err := os.MkdirAll(swarm, 0o755); err != nil {
		t.Fatal(err)
	}
	return ws, swarm
}

// tempDir is t.TempDir, except where os.RemoveAll is known not to work
// (removeAllBroken): there the directory is left behind rather than the
// test failed.
func tempDir(t *testing.T) string {
	t.Helper()
	if removeAllBroken == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "slotgc-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// addSlot makes the slot directory name in swarm with a pid file holding
// content, or with no pid file when content is noPIDFile.
func addSlot(t *testing.T, swarm, name, content string) string {
	t.Helper()
	dir := filepath.Join(swarm, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(content, "\x00") {
		if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Contents of addSlot that stand for something other than a pid file's text.
const (
	noPIDFile    = "\x00no pid file"
	pidFileIsDir = "\x00pid file is a directory"
)

// pastMaxPID returns 2³¹-1 + n, where an int can hold it (not on 32-bit
// systems). kill(2) would truncate it to a pid_t, so it must never reach one.
func pastMaxPID(n int64) (int, bool) {
	pid := int64(math.MaxInt32) + n
	return int(pid), strconv.IntSize == 64
}

func pidLine(pid int) string { return strconv.Itoa(pid) + "\n" }

func states(statuses []SlotStatus) map[string]State {
	m := make(map[string]State, len(statuses))
	for _, s := range statuses {
		m[s.Name] = s.State
	}
	return m
}

func mustScan(t *testing.T, ws string) []SlotStatus {
	t.Helper()
	statuses, err := Scan(ws)
	if err != nil {
		t.Fatalf("Scan(ws) error: %v", err)
	}
	return statuses
}

// TestStateDirEnv relocates the state directory with BONES_DIR: the calls
// must read <BONES_DIR>/swarm and leave the workspace's own .bones alone.
func TestStateDirEnv(t *testing.T) {
	live := startChild(t, "sleep").Process.Pid
	dead := deadPID(t)
	tests := []struct {
		name     string
		stateDir func(t *testing.T) (env, abs string) // BONES_DIR's value, and the directory it names
	}{
		{"absolute", func(t *testing.T) (string, string) {
			dir := filepath.Join(tempDir(t), "state")
			return dir, dir
		}},
		{"relative", func(t *testing.T) (string, string) {
			parent := tempDir(t)
			t.Chdir(parent)
			return filepath.Join("rel", "state"), filepath.Join(parent, "rel", "state")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, stateDir := tc.stateDir(t)
			t.Setenv(StateDirEnv, env)
			ws, decoySwarm := workspace(t)
			decoy := addSlot(t, decoySwarm, "decoy", pidLine(dead))
			swarm := filepath.Join(stateDir, "swarm")
			addSlot(t, swarm, "live", pidLine(live))
			addSlot(t, swarm, "dead", pidLine(dead))
			addSlot(t, swarm, "half-built", noPIDFile)

			if got := SwarmPath(ws); got != swarm {
				t.Errorf("SwarmPath(ws) = %q, want %q", got, swarm)
			}
			statuses, err := Scan(ws)
			wantStates := map[string]State{"live": Live, "dead": Gone, "half-built": NoPIDFile}
			if got := states(statuses); !reflect.DeepEqual(got, wantStates) || err != nil {
				t.Errorf("Scan(ws) = %v, %v, want %v, nil", got, err, wantStates)
			}
			if got, err := DeadSlots(ws); !slices.Equal(got, []string{"dead"}) || err != nil {
				t.Errorf("DeadSlots(ws) = %v, %v, want [dead], nil", got, err)
			}
			if got, err := LiveSlots(ws); !slices.Equal(got, []Slot{{"live", live}}) || err != nil {
				t.Errorf("LiveSlots(ws) = %v, %v, want [{live %d}], nil", got, err, live)
			}
			if got, err := PruneDead(ws); !slices.Equal(got, []string{"dead"}) || err != nil {
				t.Errorf("PruneDead(ws) = %v, %v, want [dead], nil", got, err)
			}
			if _, err := os.Stat(filepath.Join(decoy, PIDFile)); err != nil {
				t.Errorf("PruneDead(ws) touched the workspace's own .bones, which BONES_DIR replaces: %v", err)
			}
		})
	}
	t.Run("empty means unset", func(t *testing.T) {
		t.Setenv(StateDirEnv, "")
		ws, swarm := workspace(t)
		addSlot(t, swarm, "dead", pidLine(dead))
		if got := SwarmPath(ws); got != swarm {
			t.Errorf("SwarmPath(ws) = %q, want %q", got, swarm)
		}
		if got, err := DeadSlots(ws); !slices.Equal(got, []string{"dead"}) || err != nil {
			t.Errorf("DeadSlots(ws) = %v, %v, want [dead], nil", got, err)
		}
	})
	t.Run("swarm directory missing", func(t *testing.T) {
		t.Setenv(StateDirEnv, filepath.Join(tempDir(t), "absent"))
		ws, swarm := workspace(t)
		addSlot(t, swarm, "decoy", pidLine(dead))
		if got, err := DeadSlots(ws); got != nil || err != nil {
			t.Errorf("DeadSlots(ws) = %v, %v, want nil, nil", got, err)
		}
		if got, err := LiveSlots(ws); got != nil || err != nil {
			t.Errorf("LiveSlots(ws) = %v, %v, want nil, nil", got, err)
		}
		if got, err := PruneDead(ws); got != nil || err != nil {
			t.Errorf("PruneDead(ws) = %v, %v, want nil, nil", got, err)
		}
		if got, err := Scan(ws); got != nil || err != nil {
			t.Errorf("Scan(ws) = %v, %v, want nil, nil", got, err)
		}
	})
}
