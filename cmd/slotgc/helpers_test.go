package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bones-swarm/slotgc"
)

// helperEnv, set to the name of a helper mode, makes the test binary do
// that mode's work instead of running tests; see TestMain.
const helperEnv = "SLOTGC_CMD_TEST_HELPER"

// helperModes holds the work of each helper mode, by name.
var helperModes = map[string]func(){}

// registerHelperMode adds a helper mode. Call it from an init function of
// the file whose helpers start the mode, a per-OS file for a mode only one
// system needs; a name registered twice panics before any test runs.
func registerHelperMode(name string, work func()) {
	if _, dup := helperModes[name]; dup {
		panic("helper mode " + name + " registered twice")
	}
	helperModes[name] = work
}

func init() {
	// sleep is a leaf: it says ready, then sleeps until killed.
	registerHelperMode("sleep", func() {
		fmt.Println("ready")
		time.Sleep(childLifetime)
	})
	// exit ends at once, leaving a pid no process has.
	registerHelperMode("exit", func() {})
}

const (
	childLifetime = 5 * time.Minute
	settleTimeout = 10 * time.Second
)

// slotgcBin is the command under test, built once by TestMain.
var slotgcBin string

// TestMain does the work of a helper mode when helperEnv names one, and
// otherwise builds the command and runs the tests.
func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		work, registered := helperModes[mode]
		if !registered {
			fmt.Fprintf(os.Stderr, "no helper mode %q is registered\n", mode)
			os.Exit(2)
		}
		work()
		os.Exit(0)
	}
	// The tests lay out their own state directories; see TestStateDirEnv.
	os.Unsetenv(slotgc.StateDirEnv)
	dir, err := os.MkdirTemp("", "slotgc-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// World-readable, so that the permission tests can run it as uid 65534.
	os.Chmod(dir, 0o755)
	slotgcBin = filepath.Join(dir, "slotgc")
	if runtime.GOOS == "windows" {
		slotgcBin += ".exe"
	}
	build := exec.Command("go", "build", "-o", slotgcBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building slotgc:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperCmd returns a command that starts the test binary in the helper
// mode named mode.
func helperCmd(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	if _, ok := helperModes[mode]; !ok {
		t.Fatalf("no helper mode %q is registered", mode)
	}
	cmd := exec.Command(os.Args[0])
	// Under the race detector a process waits a second as it exits, for
	// reports from other threads a helper never makes; deadPID alone would
	// cost most tests that second.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return cmd
}

// startChild starts a sleeping helper child, waits until it is ready, and
// kills and reaps it when the test ends.
func startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	return startChildIn(t, "")
}

// startChildIn is startChild with the child's working directory dir (the
// test's own when empty).
func startChildIn(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := helperCmd(t, "sleep")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() { ready <- bufio.NewScanner(stdout).Scan() }()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("child did not say ready")
		}
	case <-time.After(settleTimeout):
		t.Fatal("child not ready in time")
	}
	return cmd
}

// deadPID returns the pid of a child that was started and reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := helperCmd(t, "exit")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// checkStoppedPolitely waits for child, a leaf the test had slotgc stop, and
// fails the test unless the leaf ended by the polite request slotgc makes
// before it forces.
func checkStoppedPolitely(t *testing.T, child *exec.Cmd) {
	t.Helper()
	if err := child.Wait(); err == nil || !killedPolitely(child.ProcessState) {
		t.Errorf("leaf %d ended with %v, want it stopped by the polite request", child.Process.Pid, err)
	}
}

// makeSlot makes the directory name, a slot or a detached tree, in the
// swarm directory swarm, and returns it.
func makeSlot(t *testing.T, swarm, name string) string {
	t.Helper()
	dir := filepath.Join(swarm, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// makeSlotWithPIDFile is makeSlot with a pid file holding content.
func makeSlotWithPIDFile(t *testing.T, swarm, name, content string) string {
	t.Helper()
	dir := makeSlot(t, swarm, name)
	if err := os.WriteFile(filepath.Join(dir, slotgc.PIDFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// workspace makes a workspace with the slots live (naming a live child),
// dead (a reaped child), half-built (no pid file) and broken (no pid in
// its pid file), and returns it with the live child.
func workspace(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	ws := t.TempDir()
	swarm := filepath.Join(ws, slotgc.SwarmDir)
	child := startChild(t)
	makeSlotWithPIDFile(t, swarm, "live", strconv.Itoa(child.Process.Pid)+"\n")
	makeSlotWithPIDFile(t, swarm, "dead", strconv.Itoa(deadPID(t))+"\n")
	makeSlot(t, swarm, "half-built")
	makeSlotWithPIDFile(t, swarm, "broken", "not a pid\n")
	return ws, child
}

func slotExists(t *testing.T, ws, name string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(ws, slotgc.SwarmDir, name))
	return err == nil
}

// result is what one run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// slotgcCmd returns the command under test with args, ready to run.
func slotgcCmd(args ...string) *exec.Cmd {
	return exec.Command(slotgcBin, args...)
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %v: %v", cmd.Args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

func runSlotgc(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(t, slotgcCmd(args...))
}

// object and array spell the shapes the tests expect, as jsonShape gives
// them.
type (
	object = map[string]any
	array  = []any
)

// jsonShapeCase is a run of the command, with -C and the workspace its
// layout makes, and the exit code and shape of the JSON it must print.
type jsonShapeCase struct {
	name     string
	layout   func(*testing.T) string
	args     []string
	wantCode int
	want     object
}

// testJSONShapes runs each case as a subtest.
func testJSONShapes(t *testing.T, tests []jsonShapeCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runSlotgc(t, append([]string{"-C", tc.layout(t)}, tc.args...)...)
			command := "slotgc " + strings.Join(tc.args, " ")
			if r.code != tc.wantCode {
				t.Errorf("%s = exit %d (stderr %q), want exit %d", command, r.code, r.stderr, tc.wantCode)
			}
			var got any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("%s printed %q, want one JSON object: %v", command, r.stdout, err)
			}
			if shape := jsonShape(got); !reflect.DeepEqual(shape, any(tc.want)) {
				t.Errorf("%s shape = %s, want %s", command, shapeText(shape), shapeText(tc.want))
			}
		})
	}
}

// jsonShape returns v, a value decoded from JSON, with every string, number,
// bool and null replaced by the name of its type, so that two outputs have
// the same shape exactly when they have the same keys, nesting and types.
func jsonShape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		shape := make(object, len(v))
		for key, value := range v {
			shape[key] = jsonShape(value)
		}
		return shape
	case []any:
		shape := make(array, len(v))
		for i, value := range v {
			shape[i] = jsonShape(value)
		}
		return shape
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	panic(fmt.Sprintf("jsonShape: %T is not a type encoding/json decodes into", v))
}

// shapeText shows a shape compactly, its keys sorted, for a failure message.
func shapeText(shape any) string {
	text, err := json.Marshal(shape)
	if err != nil {
		return fmt.Sprint(shape)
	}
	return string(text)
}

// sizeText matches a size as the text output gives it, which depends on
// the file system.
var sizeText = regexp.MustCompile(`\d+(\.\d)? (B|[KMGTPE]iB)`)

// elideSizes returns r with every size in its output written SIZE.
func elideSizes(r result) result {
	r.stdout = sizeText.ReplaceAllString(r.stdout, "SIZE")
	r.stderr = sizeText.ReplaceAllString(r.stderr, "SIZE")
	return r
}
