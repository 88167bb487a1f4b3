package slotgc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
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

func TestParsePID(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int
		wantErr error
	}{
		{"plain", "1234\n", 1234, nil},
		{"no newline", "1234", 1234, nil},
		{"ascii whitespace around", " \t\r\v\f42 \n\n", 42, nil},
		{"leading zeros", "0042\n", 42, nil},
		{"lowest pid", "2", 2, nil},
		{"highest pid", "2147483647", math.MaxInt32, nil},
		{"empty", "", 0, errEmptyPIDFile},
		{"only whitespace", " \n\t", 0, errEmptyPIDFile},
		{"zero", "0\n", 0, errPIDRange},
		{"init", "1\n", 0, errPIDRange},
		{"just past 2^31-1", "2147483648", 0, errPIDRange},
		{"far past 2^63", "99999999999999999999999", 0, errPIDRange},
		{"2^32 + 668, which a 32-bit int wraps to 668", "4294967964", 0, errPIDRange},
		{"2^32 + 2", "4294967298", 0, errPIDRange},
		{"2^64 + 668", "18446744073709552284", 0, errPIDRange},
		{"negative", "-1\n", 0, errNotAPID},
		{"plus sign", "+42\n", 0, errNotAPID},
		{"hex", "0x2a\n", 0, errNotAPID},
		{"two numbers", "42 43\n", 0, errNotAPID},
		{"trailing NUL", "42\x00", 0, errNotAPID},
		{"non-ASCII space", "\u00a042", 0, errNotAPID},
		{"next line", "42\u0085", 0, errNotAPID},
		{"full-width digits", "４２", 0, errNotAPID},
		{"float", "42.0", 0, errNotAPID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePID([]byte(tc.content))
			if got != tc.want || !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("parsePID(%q) = %d, %v, want %d, %v", tc.content, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParsePID(f *testing.F) {
	for _, seed := range []string{"1234\n", " 2 ", "2147483647", "2147483648", "0", "", "-1", "\u00a042", "00000000000000000000042", "4294967964", "18446744073709552284"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		pid, err := parsePID(content)
		if err != nil {
			if pid != 0 {
				t.Fatalf("parsePID(%q) = %d, %v: a pid with an error", content, pid, err)
			}
			return
		}
		if pid < 2 || pid > math.MaxInt32 {
			t.Fatalf("parsePID(%q) = %d, outside 2..2^31-1", content, pid)
		}
		// An accepted file is digits in ASCII whitespace naming that pid.
		text := strings.Trim(string(content), " \t\n\v\f\r")
		if n, err := strconv.ParseUint(text, 10, 64); err != nil || n != uint64(pid) {
			t.Fatalf("parsePID(%q) = %d, but the digits read %d, %v", content, pid, n, err)
		}
	})
}

// TestPIDFileNamesSelf scans pid files naming this very process, as it
// is and wrapped around 2³² and 2⁶⁴, which a parser counting in a 32-bit
// int would read as this process again. It starts no process, so it runs
// under user-mode emulation of 32-bit systems too.
func TestPIDFileNamesSelf(t *testing.T) {
	ws, swarm := workspace(t)
	self := uint64(os.Getpid())
	tests := []struct {
		name    string
		content string
		want    State
	}{
		{"self", pidLine(os.Getpid()), Live},
		{"self-plus-2^32", strconv.FormatUint(1<<32+self, 10), BadPIDFile},
		{"self-plus-2^33", strconv.FormatUint(1<<33+self, 10), BadPIDFile},
		{"self-plus-2^64", new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 64), new(big.Int).SetUint64(self)).String(), BadPIDFile},
	}
	for _, tc := range tests {
		addSlot(t, swarm, tc.name, tc.content)
	}
	got := states(mustScan(t, ws))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got[tc.name] != tc.want {
				t.Errorf("Scan(ws) says %s for a pid file holding %q, want %s", got[tc.name], tc.content, tc.want)
			}
		})
	}
	if live, err := LiveSlots(ws); !slices.Equal(live, []Slot{{"self", os.Getpid()}}) || err != nil {
		t.Errorf("LiveSlots(ws) = %v, %v, want [{self %d}], nil", live, err, os.Getpid())
	}
}

func mustScan(t *testing.T, ws string) []SlotStatus {
	t.Helper()
	statuses, err := Scan(ws)
	if err != nil {
		t.Fatalf("Scan(ws) error: %v", err)
	}
	return statuses
}

func TestMissingSwarm(t *testing.T) {
	ws := tempDir(t)
	if err := os.Mkdir(filepath.Join(ws, ".bones"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ws   string
	}{
		{"no workspace", filepath.Join(ws, "absent")},
		{"no .bones", tempDir(t)},
		{"no swarm", ws},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := DeadSlots(tc.ws); got != nil || err != nil {
				t.Errorf("DeadSlots(ws) = %v, %v, want nil, nil", got, err)
			}
			if got, err := LiveSlots(tc.ws); got != nil || err != nil {
				t.Errorf("LiveSlots(ws) = %v, %v, want nil, nil", got, err)
			}
			if got, err := PruneDead(tc.ws); got != nil || err != nil {
				t.Errorf("PruneDead(ws) = %v, %v, want nil, nil", got, err)
			}
			if got, err := Scan(tc.ws); got != nil || err != nil {
				t.Errorf("Scan(ws) = %v, %v, want nil, nil", got, err)
			}
		})
	}
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

func TestSwarmNotADirectory(t *testing.T) {
	ws := tempDir(t)
	if err := os.Mkdir(filepath.Join(ws, ".bones"), 0o755); err != nil {
		t.Fatal(err)
	}
	swarm := filepath.Join(ws, SwarmDir)
	if err := os.WriteFile(swarm, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func(string) (any, error)
	}{
		{"DeadSlots", func(ws string) (any, error) { return DeadSlots(ws) }},
		{"LiveSlots", func(ws string) (any, error) { return LiveSlots(ws) }},
		{"PruneDead", func(ws string) (any, error) { return PruneDead(ws) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.call(ws)
			var pe *fs.PathError
			if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), swarm) {
				t.Fatalf("%s(ws) = %v, %v, want an error naming %s and wrapping the cause", c.name, got, err, swarm)
			}
			if !reflect.ValueOf(got).IsNil() {
				t.Errorf("%s(ws) = %v with the error, want nil", c.name, got)
			}
		})
	}
	if _, err := os.Stat(swarm); err != nil {
		t.Errorf("the swarm file is gone: %v", err)
	}
}

// TestVerdicts builds one workspace with every kind of slot and checks the
// verdict Scan reaches on each, and that DeadSlots, LiveSlots and PruneDead
// agree with it.
func TestVerdicts(t *testing.T) {
	ws, swarm := workspace(t)
	live := startChild(t, "sleep").Process.Pid
	dead := deadPID(t)

	tests := []struct {
		name    string
		content string
		want    State
	}{
		{"live", pidLine(live), Live},
		{"live-padded", "  " + strconv.Itoa(live) + " \r\n", Live},
		{"gone", pidLine(dead), Gone},
		{"gone-no-newline", strconv.Itoa(dead), Gone},
		{"no-pid-file", noPIDFile, NoPIDFile},
		{"empty", "", BadPIDFile},
		{"garbage", "leaf\n", BadPIDFile},
		{"zero", "0\n", BadPIDFile},
		{"minus-one", "-1\n", BadPIDFile},
		{"init", "1\n", BadPIDFile},
		{"too-big-a-pid", "2147483648\n", BadPIDFile},
		{"oversized", strings.Repeat(" ", maxPIDFileSize) + pidLine(dead), BadPIDFile},
		{"pid-file-is-dir", pidFileIsDir, BadPIDFile},
	}
	for _, tc := range tests {
		dir := addSlot(t, swarm, tc.name, tc.content)
		if tc.content == pidFileIsDir {
			if err := os.Mkdir(filepath.Join(dir, PIDFile), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not slots: a file and the trash of a PruneDead.
	if err := os.WriteFile(filepath.Join(swarm, "stray-file"), []byte(pidLine(dead)), 0o644); err != nil {
		t.Fatal(err)
	}
	addSlot(t, swarm, TrashPrefix+"1.x", pidLine(live))

	statuses, err := Scan(ws)
	if err != nil {
		t.Fatalf("Scan(ws) error: %v", err)
	}
	got := states(statuses)
	want := map[string]State{}
	for _, tc := range tests {
		want[tc.name] = tc.want
		t.Run(tc.name, func(t *testing.T) {
			if got[tc.name] != tc.want {
				t.Errorf("Scan(ws) says %s for slot %q, want %s", got[tc.name], tc.name, tc.want)
			}
		})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Scan(ws) = %v, want %v", got, want)
	}
	if !slices.IsSortedFunc(statuses, func(a, b SlotStatus) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("Scan(ws) is not sorted by name: %v", statuses)
	}
	for _, s := range statuses {
		usable := s.State != NoPIDFile && s.State != BadPIDFile
		if usable == (s.PID == 0) || usable != (s.Err == nil) {
			t.Errorf("Scan(ws) slot %q = %+v: PID and Err do not fit the state", s.Name, s)
		}
	}

	wantDead := []string{"gone", "gone-no-newline"}
	if dead, err := DeadSlots(ws); !slices.Equal(dead, wantDead) || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want %v, nil", dead, err, wantDead)
	}
	wantLive := []Slot{{"live", live}, {"live-padded", live}}
	if got, err := LiveSlots(ws); !slices.Equal(got, wantLive) || err != nil {
		t.Errorf("LiveSlots(ws) = %v, %v, want %v, nil", got, err, wantLive)
	}

	// The trash entry holds a live pid: kept, and said so.
	pruned, err := PruneDead(ws)
	if se, ok := errors.AsType[*SlotError](err); !slices.Equal(pruned, wantDead) || !ok || se.Slot != TrashPrefix+"1.x" {
		t.Errorf("PruneDead(ws) = %v, %v, want %v and an error for %s alone", pruned, err, wantDead, TrashPrefix+"1.x")
	}
	for name, state := range want {
		_, err := os.Lstat(filepath.Join(swarm, name))
		if state.Dead() != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after PruneDead, slot %q (%s): Lstat error %v", name, state, err)
		}
	}
	for _, name := range []string{"stray-file", TrashPrefix + "1.x"} {
		if _, err := os.Lstat(filepath.Join(swarm, name)); err != nil {
			t.Errorf("PruneDead removed %q, which is no dead slot: %v", name, err)
		}
	}
}

func TestReusedPID(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "windows" {
		t.Skipf("no reuse guard on %s: the standard library gives no process start time there", runtime.GOOS)
	}
	ws, swarm := workspace(t)
	live := startChild(t, "sleep").Process.Pid
	tests := []struct {
		name string
		age  time.Duration // how long before now the pid file was last written
		want State
	}{
		{"written an hour before the process started", time.Hour, Reused},
		{"written within the tolerance", 0, Live},
	}
	for _, tc := range tests {
		dir := addSlot(t, swarm, tc.name, pidLine(live))
		old := time.Now().Add(-tc.age)
		if err := os.Chtimes(filepath.Join(dir, PIDFile), old, old); err != nil {
			t.Fatal(err)
		}
	}
	statuses, err := Scan(ws)
	if err != nil {
		t.Fatal(err)
	}
	got := states(statuses)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got[tc.name] != tc.want {
				t.Errorf("Scan(ws) says %s, want %s", got[tc.name], tc.want)
			}
		})
	}
	wantDead := []string{tests[0].name}
	if dead, err := DeadSlots(ws); !slices.Equal(dead, wantDead) || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want %v, nil", dead, err, wantDead)
	}
	if !Alive(live) {
		t.Errorf("Alive(%d) = false for the live child whose pid looks reused, want true: Alive has no pid file to judge reuse by", live)
	}
	if got, err := PruneDead(ws); !slices.Equal(got, wantDead) || err != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want %v, nil", got, err, wantDead)
	}
	if !Alive(live) {
		t.Error("PruneDead of a reused slot harmed the process that reused the pid")
	}
}

// TestFileServerClockBehind stands for a swarm directory on a file server
// whose clock is an hour behind: it stamps the pid file, and the probe file
// PruneDead makes, an hour back (the probe through a test hook, right after
// it is made). A live leaf then looks reused by the time rule; DeadSlots,
// which measures nothing, says so, but PruneDead must not remove it. Once
// the server's clock agrees, the same slot is garbage.
func TestFileServerClockBehind(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "windows" {
		t.Skipf("no reuse guard on %s: the standard library gives no process start time there", runtime.GOOS)
	}
	ws, swarm := workspace(t)
	leaf := startChild(t, "sleep").Process.Pid
	dir := addSlot(t, swarm, "leaf", pidLine(leaf))
	serverBehind := func(path string) {
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Error(err)
		}
	}
	serverBehind(filepath.Join(dir, PIDFile))
	if got, err := DeadSlots(ws); !slices.Equal(got, []string{"leaf"}) || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want [leaf], nil: it assumes the file server's clock agrees", got, err)
	}
	testHookClockProbe = serverBehind
	t.Cleanup(func() { testHookClockProbe = nil })
	got, err := PruneDead(ws)
	testHookClockProbe = nil
	if got != nil || err != nil {
		t.Errorf("PruneDead(ws) with the file server's clock an hour behind = %v, %v, want nil, nil", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFile)); err != nil {
		t.Fatalf("PruneDead removed the live leaf's slot: %v", err)
	}
	if entries, _ := os.ReadDir(swarm); len(entries) != 1 {
		t.Errorf("swarm holds %v after PruneDead, want the slot alone: the clock probe was left behind", entries)
	}
	if got, err := PruneDead(ws); !slices.Equal(got, []string{"leaf"}) || err != nil {
		t.Errorf("PruneDead(ws) with the clocks agreeing = %v, %v, want [leaf], nil", got, err)
	}
}

func TestSymlinkedSlotSurvives(t *testing.T) {
	ws, swarm := workspace(t)
	target := filepath.Join(tempDir(t), "outside")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, PIDFile), []byte(pidLine(deadPID(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(swarm, "linked")); err != nil {
		t.Skipf("cannot make a symlink here: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(swarm, "linked")); err != nil {
		// Wine makes a Unix symlink to the Windows path, which its own
		// Lstat then cannot find.
		t.Skipf("symlinks here cannot be seen: %v", err)
	}
	if got, err := DeadSlots(ws); got != nil || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want nil, nil: a symlink is no slot", got, err)
	}
	if got, err := PruneDead(ws); got != nil || err != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want nil, nil", got, err)
	}
	if _, err := os.Stat(filepath.Join(target, PIDFile)); err != nil {
		t.Errorf("the symlinked slot's target lost its pid file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(swarm, "linked")); err != nil {
		t.Errorf("the symlink itself is gone: %v", err)
	}
}

func TestSymlinkedPIDFile(t *testing.T) {
	ws, swarm := workspace(t)
	live := startChild(t, "sleep").Process.Pid
	real := filepath.Join(tempDir(t), "pid")
	if err := os.WriteFile(real, []byte(pidLine(live)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := addSlot(t, swarm, "link", noPIDFile)
	link := filepath.Join(dir, PIDFile)
	if err := os.Symlink(real, link); err != nil {
		t.Skipf("cannot make a symlink here: %v", err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&fs.ModeSymlink == 0 {
		// Wine makes a Unix symlink to the Windows path, which its own
		// Lstat then cannot find.
		t.Skipf("symlinks here do not show as symlinks: Lstat = %v, %v", info, err)
	}
	statuses, err := Scan(ws)
	if err != nil || len(statuses) != 1 || statuses[0].State != BadPIDFile {
		t.Errorf("Scan(ws) = %+v, %v, want one slot in state %s", statuses, err, BadPIDFile)
	}
}

func TestPruneDeadConcurrent(t *testing.T) {
	ws, swarm := workspace(t)
	live := startChild(t, "sleep").Process.Pid
	dead := deadPID(t)
	var wantRemoved []string
	for i := range 40 {
		name := fmt.Sprintf("slot-%02d", i)
		content := pidLine(dead)
		if i%4 == 0 {
			content = pidLine(live)
		} else {
			wantRemoved = append(wantRemoved, name)
		}
		dir := addSlot(t, swarm, name, content)
		// Some depth, so that removals take long enough to overlap.
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", j)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Half the callers are goroutines of this process, half other
	// processes.
	const callers = 8
	results := make([][]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	var gates []io.Closer
	start := make(chan struct{})
	for i := range callers {
		if i%2 == 0 {
			wg.Go(func() {
				<-start
				results[i], errs[i] = PruneDead(ws)
			})
			continue
		}
		cmd := helperCmd(t, testBinary(t), "call", "PruneDead", ws)
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		gates = append(gates, gate)
		wg.Go(func() {
			out, err := cmd.Output()
			var r callResult
			if err == nil {
				err = json.Unmarshal(out, &r)
			}
			if err == nil && r.Err != "" {
				err = errors.New(r.Err)
			}
			results[i], errs[i] = r.Names, err
		})
	}
	// The helpers start up while they wait on their gates; opening every
	// gate at once lets the calls overlap.
	time.Sleep(helperStartup)
	for _, gate := range gates {
		gate.Close()
	}
	close(start)
	wg.Wait()
	var all []string
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("PruneDead call %d: error %v", i, errs[i])
		}
		all = append(all, results[i]...)
	}
	slices.Sort(all)
	if !slices.Equal(all, wantRemoved) {
		t.Errorf("PruneDead calls removed %v together, want each of %v exactly once", all, wantRemoved)
	}
	entries, err := os.ReadDir(swarm)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	wantLeft := []string{"slot-00", "slot-04", "slot-08", "slot-12", "slot-16", "slot-20", "slot-24", "slot-28", "slot-32", "slot-36"}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("after PruneDead the swarm holds %v, want %v", left, wantLeft)
	}
}

// TestPruneDeadFinishesLeftovers lays out trash entries as crashed or
// failed PruneDead calls leave them: each is finished when it is surely
// garbage, whatever process now has the pid in its name, and kept with an
// error otherwise.
func TestPruneDeadFinishesLeftovers(t *testing.T) {
	ws, swarm := workspace(t)
	dead := deadPID(t)
	live := startChild(t, "sleep").Process.Pid
	tests := []struct {
		name      string
		content   string
		inside    []string // made in the entry: directories end in "/"
		wantKept  bool
		wantError bool
	}{
		{TrashPrefix + strconv.Itoa(dead) + ".crashed", noPIDFile, nil, false, false},
		{TrashPrefix + strconv.Itoa(dead) + ".crashed-early", pidLine(dead), []string{"wt/f"}, false, false},
		{TrashPrefix + "1.pid-one", noPIDFile, nil, false, false},
		{TrashPrefix + strconv.Itoa(live) + ".pid-taken", pidLine(dead), nil, false, false},
		{TrashPrefix + "junk", noPIDFile, []string{"a/b/", "c/"}, false, false},
		{TrashPrefix + strconv.Itoa(dead) + ".revived", pidLine(live), nil, true, true},
		{TrashPrefix + strconv.Itoa(dead) + ".garbage-pid-file", "garbage", nil, true, true},
		{TrashPrefix + strconv.Itoa(dead) + ".empty-pid-file", "", nil, true, true},
		// A slot renamed by hand, or by another user where the swarm
		// directory lets others write, before its leaf wrote a pid file.
		{TrashPrefix + strconv.Itoa(dead) + ".half-built", noPIDFile, []string{"wt/src/main.go"}, true, true},
		{TrashPrefix + "renamed-by-hand", noPIDFile, []string{"notes"}, true, true},
	}
	for _, tc := range tests {
		dir := addSlot(t, swarm, tc.name, tc.content)
		for _, p := range tc.inside {
			mkdirs(t, filepath.Join(dir, filepath.Dir(p)))
			if !strings.HasSuffix(p, "/") {
				writeFile(t, filepath.Join(dir, p), "work")
			}
		}
	}
	got, err := PruneDead(ws)
	if got != nil {
		t.Errorf("PruneDead(ws) = %v, want no slot names: trash entries are not slots", got)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, statErr := os.Lstat(filepath.Join(swarm, tc.name))
			if kept := statErr == nil; kept != tc.wantKept {
				t.Errorf("after PruneDead, %s kept = %v, want %v", tc.name, kept, tc.wantKept)
			}
			if named := err != nil && strings.Contains(err.Error(), tc.name); named != tc.wantError {
				t.Errorf("PruneDead(ws) error %v; names %s: %v, want %v", err, tc.name, named, tc.wantError)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"self", os.Getpid(), true},
		{"live child", startChild(t, "sleep").Process.Pid, true},
		{"dead child", deadPID(t), false},
		{"zero", 0, false},
		{"minus one", -1, false},
	}
	if pid, ok := pastMaxPID(1); ok {
		tests = append(tests, struct {
			name string
			pid  int
			want bool
		}{"past 2^31-1", pid, false})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Alive(tc.pid); got != tc.want {
				t.Errorf("Alive(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
}

func TestKillRefuses(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"process group", 0, true},
		{"every process", -1, true},
		{"other group", -2, true},
		{"init", 1, false},
		{"self", os.Getpid(), false},
	}
	if pid, ok := pastMaxPID(2); ok {
		tests = append(tests, struct {
			name string
			pid  int
			want bool
		}{"past 2^31-1", pid, true})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Kill(tc.pid); got != tc.want {
				t.Errorf("Kill(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
	// Still here: neither this process nor its group was signalled.
}

func TestKill(t *testing.T) {
	t.Run("already dead", func(t *testing.T) {
		if pid := deadPID(t); !Kill(pid) {
			t.Errorf("Kill(%d) = false for a reaped child, want true", pid)
		}
	})
	t.Run("sleeping child", func(t *testing.T) {
		cmd := startChild(t, "sleep")
		start := time.Now()
		if !Kill(cmd.Process.Pid) {
			t.Fatalf("Kill(%d) = false, want true", cmd.Process.Pid)
		}
		if took := time.Since(start); took > promptKill {
			t.Errorf("Kill took %v for a child that dies on the first request, want under %v", took, promptKill)
		}
		err := cmd.Wait()
		if err == nil || !killedPolitely(cmd.ProcessState) {
			t.Errorf("child ended with %v, want the polite request (SIGTERM on Unix, termination on Windows)", err)
		}
		if Alive(cmd.Process.Pid) {
			t.Errorf("Alive(%d) = true after Kill", cmd.Process.Pid)
		}
	})
}

// TestKillSlot stops a slot's live leaf, and refuses when the pid file no
// longer names the pid asked for.
func TestKillSlot(t *testing.T) {
	ws, swarm := workspace(t)
	leaf := startChild(t, "sleep")
	pid := leaf.Process.Pid
	addSlot(t, swarm, "leaf", pidLine(pid))
	if gone, err := KillSlot(ws, Slot{"leaf", pid + 1}); gone || !errors.Is(err, ErrPIDFileChanged) {
		t.Errorf("KillSlot(ws, {leaf %d}) = %v, %v, want false and %v", pid+1, gone, err, ErrPIDFileChanged)
	}
	if !Alive(pid) {
		t.Fatal("KillSlot of a pid the slot does not name stopped the leaf")
	}
	if gone, err := KillSlot(ws, Slot{"leaf", pid}); !gone || err != nil {
		t.Errorf("KillSlot(ws, {leaf %d}) = %v, %v, want true, nil", pid, gone, err)
	}
	if err := leaf.Wait(); err == nil || !killedPolitely(leaf.ProcessState) {
		t.Errorf("the leaf ended with %v, want the polite request", err)
	}
	if gone, err := KillSlot(ws, Slot{"missing", pid}); gone || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("KillSlot(ws, {missing %d}) = %v, %v, want false and an error wrapping fs.ErrNotExist", pid, gone, err)
	}
}

// TestRestore puts back a slot that came back to life after PruneDead
// detached it, unless a new slot took its name meanwhile: not even an empty
// directory of that name, which rename(2) would replace, is replaced.
func TestRestore(t *testing.T) {
	tests := []struct {
		name        string
		taken       string // what holds the slot's name: "", "slot" or "empty dir"
		wantErr     bool
		wantTrashed bool // the detached tree is still at its trash name
	}{
		{"name free", "", false, false},
		{"name taken", "slot", true, true},
		{"name taken by an empty directory", "empty dir", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, swarm := workspace(t)
			trashName := TrashPrefix + "1.revived"
			trash := addSlot(t, swarm, trashName, pidLine(os.Getpid()))
			slot := filepath.Join(swarm, "revived")
			switch tc.taken {
			case "slot":
				addSlot(t, swarm, "revived", noPIDFile)
				if err := os.WriteFile(filepath.Join(slot, "new"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			case "empty dir":
				addSlot(t, swarm, "revived", noPIDFile)
			}
			sw, _, err := openSwarm(swarm)
			if err != nil {
				t.Fatal(err)
			}
			defer sw.close()
			err = sw.restore(trashName, "revived")
			if (err != nil) != tc.wantErr || err != nil && !strings.Contains(err.Error(), trash) {
				t.Errorf("restore(trash, slot) = %v, want an error naming the trash: %v", err, tc.wantErr)
			}
			_, trashErr := os.Stat(filepath.Join(trash, PIDFile))
			_, slotErr := os.Stat(filepath.Join(slot, PIDFile))
			if trashed := trashErr == nil; trashed != tc.wantTrashed || slotErr == nil == tc.wantTrashed {
				t.Errorf("after restore the pid file is at the trash name: %v, at the slot: %v; want at the trash: %v", trashed, slotErr == nil, tc.wantTrashed)
			}
		})
	}
}
