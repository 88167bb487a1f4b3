package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/bones-swarm/slotgc"
)

func TestStatus(t *testing.T) {
	ws, child := workspace(t)
	pid := child.Process.Pid
	r := runSlotgc(t, "-C", ws, "status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if header := "swarm directory " + filepath.Join(ws, slotgc.SwarmDir); lines[0] != header {
		t.Errorf("slotgc status line 0 = %q, want %q", lines[0], header)
	}
	lines = lines[1:]
	want := [][]string{
		{"SLOT", "PID", "STATE"},
		{"broken", "-", "unusable pid file: pid file does not hold a decimal number"},
		{"dead", "", "dead (gone)"},
		{"half-built", "-", "no pid file"},
		{"live", strconv.Itoa(pid), "live"},
	}
	if r.code != 0 || r.stderr != "" || len(lines) != len(want)+1 {
		t.Fatalf("slotgc status = %+v, want exit 0, %d lines and no stderr", r, 1+len(want)+1)
	}
	for i, w := range want {
		fields := strings.SplitN(strings.Join(strings.Fields(lines[i]), " "), " ", 3)
		if fields[0] != w[0] || w[1] != "" && fields[1] != w[1] || fields[2] != w[2] {
			t.Errorf("slotgc status line %d = %q, want fields %q", i+1, lines[i], w)
		}
	}
	if got, want := lines[len(lines)-1], "4 slots: 1 live, 1 dead (1 gone, 0 reused), 1 without a pid file, 1 with an unusable one"; got != want {
		t.Errorf("slotgc status summary = %q, want %q", got, want)
	}
	if def := runSlotgc(t, "-C", ws); def != r {
		t.Errorf("slotgc with no command = %+v, want the same as status: %+v", def, r)
	}
}

func TestStatusJSON(t *testing.T) {
	ws, child := workspace(t)
	r := runSlotgc(t, "-C", ws, "-json", "status")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("slotgc -json status = %+v, want exit 0 and no stderr", r)
	}
	var got struct {
		Workspace string
		Swarm     string
		Slots     []slotJSON
		Counts    map[string]int
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("slotgc -json status printed %q, want JSON: %v", r.stdout, err)
	}
	if got.Workspace != ws || got.Swarm != filepath.Join(ws, slotgc.SwarmDir) {
		t.Errorf("slotgc -json status workspace, swarm = %q, %q, want %q, %q", got.Workspace, got.Swarm, ws, filepath.Join(ws, slotgc.SwarmDir))
	}
	wantStates := []struct {
		name, state string
		dead        bool
	}{{"broken", "bad-pid-file", false}, {"dead", "gone", true}, {"half-built", "no-pid-file", false}, {"live", "live", false}}
	if len(got.Slots) != len(wantStates) {
		t.Fatalf("slotgc -json status slots = %+v, want %d of them", got.Slots, len(wantStates))
	}
	for i, w := range wantStates {
		if s := got.Slots[i]; s.Name != w.name || s.State != w.state || s.Dead != w.dead {
			t.Errorf("slotgc -json status slot %d = %+v, want %s %s dead=%v", i, s, w.name, w.state, w.dead)
		}
	}
	if got.Slots[3].PID != child.Process.Pid || got.Slots[0].PID != 0 || got.Slots[0].Error == "" {
		t.Errorf("slotgc -json status slots = %+v, want the live child's pid on live, no pid and an error on broken", got.Slots)
	}
	wantCounts := map[string]int{"live": 1, "gone": 1, "no-pid-file": 1, "bad-pid-file": 1}
	if !reflect.DeepEqual(got.Counts, wantCounts) {
		t.Errorf("slotgc -json status counts = %v, want %v", got.Counts, wantCounts)
	}
}

func TestPrune(t *testing.T) {
	ws, _ := workspace(t)
	r := elideSizes(runSlotgc(t, "-C", ws, "prune", "-n"))
	if want := (result{stdout: "would remove dead (SIZE)\nwould remove 1 dead slot\n"}); r != want {
		t.Errorf("slotgc prune -n = %+v, want %+v", r, want)
	}
	if !slotExists(t, ws, "dead") {
		t.Fatal("slotgc prune -n removed the dead slot")
	}
	r = runSlotgc(t, "-C", ws, "-json", "prune")
	var got struct {
		DryRun bool `json:"dry_run"`
		Slots  []string
		Error  string
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json prune = %+v (%v), want exit 0 and JSON", r, err)
	}
	if got.DryRun || !reflect.DeepEqual(got.Slots, []string{"dead"}) || got.Error != "" {
		t.Errorf("slotgc -json prune = %+v, want slots [dead], no dry run, no error", got)
	}
	for name, want := range map[string]bool{"dead": false, "live": true, "half-built": true, "broken": true} {
		if got := slotExists(t, ws, name); got != want {
			t.Errorf("after slotgc prune, slot %s exists = %v, want %v", name, got, want)
		}
	}
	if r, want := runSlotgc(t, "-C", ws, "prune"), (result{stdout: "removed 0 dead slots\n"}); r != want {
		t.Errorf("second slotgc prune = %+v, want %+v", r, want)
	}
}

func TestDown(t *testing.T) {
	ws, child := workspace(t)
	pid := child.Process.Pid
	r := runSlotgc(t, "-C", ws, "down", "-n")
	if want := (result{stdout: fmt.Sprintf("would stop live (pid %d)\nwould stop 1 live leaf\n", pid)}); r != want {
		t.Errorf("slotgc down -n = %+v, want %+v", r, want)
	}
	if !slotgc.Alive(pid) {
		t.Fatal("slotgc down -n stopped the leaf")
	}
	r = runSlotgc(t, "-C", ws, "-json", "down")
	var got struct {
		DryRun bool `json:"dry_run"`
		Leaves []leafJSON
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json down = %+v (%v), want exit 0 and JSON", r, err)
	}
	if want := []leafJSON{{"live", pid, true}}; got.DryRun || !reflect.DeepEqual(got.Leaves, want) {
		t.Errorf("slotgc -json down = %+v, want leaves %+v and no dry run", got, want)
	}
	checkStoppedPolitely(t, child)
}

func TestDownConcurrent(t *testing.T) {
	ws := t.TempDir()
	const leaves = 6
	var children []*exec.Cmd
	for i := range leaves {
		child := startChild(t)
		children = append(children, child)
		makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), fmt.Sprintf("leaf-%d", i), strconv.Itoa(child.Process.Pid))
	}
	r := runSlotgc(t, "-C", ws, "down")
	if want := fmt.Sprintf("stopped %d of %d live leaves\n", leaves, leaves); r.code != 0 || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("slotgc down = %+v, want exit 0 and stdout ending %q", r, want)
	}
	for _, child := range children {
		checkStoppedPolitely(t, child)
	}
}

func TestWorkspaceProblems(t *testing.T) {
	notWorkspace := t.TempDir()
	swarmIsFile := t.TempDir()
	if err := os.Mkdir(filepath.Join(swarmIsFile, ".bones"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(swarmIsFile, slotgc.SwarmDir), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noSwarm := t.TempDir()
	if err := os.Mkdir(filepath.Join(noSwarm, ".bones"), 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{"no .bones", []string{"-C", notWorkspace}, 0, "no state directory " + filepath.Join(notWorkspace, ".bones") + ":", ""},
		{"no .bones, prune", []string{"-C", notWorkspace, "prune"}, 0, "no state directory " + filepath.Join(notWorkspace, ".bones") + ":", ""},
		{"no .bones, json", []string{"-C", notWorkspace, "-json", "down"}, 0, `"note"`, ""},
		{"no swarm", []string{"-C", noSwarm}, 0, "0 slots", ""},
		{"swarm is a file", []string{"-C", swarmIsFile}, 2, "", filepath.Join(swarmIsFile, slotgc.SwarmDir)},
		{"swarm is a file, prune", []string{"-C", swarmIsFile, "prune"}, 2, "", "not a directory"},
		{"swarm is a file, down", []string{"-C", swarmIsFile, "down"}, 2, "", "not a directory"},
		{"missing workspace", []string{"-C", missing}, 2, "", missing},
		{"unknown command", []string{"-C", noSwarm, "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"-x"}, 2, "", "flag provided but not defined"},
		{"status with an argument", []string{"-C", noSwarm, "status", "x"}, 2, "", "status takes no arguments"},
		{"prune with an argument", []string{"-C", noSwarm, "prune", "x"}, 2, "", "prune takes no arguments"},
		{"demo without a directory", []string{"demo"}, 2, "", "demo takes one argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runSlotgc(t, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.wantStdout) || !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("slotgc %q = %+v, want exit %d, stdout with %q, stderr with %q", tc.args, r, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if tc.wantCode == 0 && r.stderr != "" || tc.wantCode == 2 && r.stdout != "" {
				t.Errorf("slotgc %q = %+v, want results on stdout and errors on stderr, never both", tc.args, r)
			}
		})
	}
}

// TestStateDirEnv runs every command with BONES_DIR naming the state
// directory and a workspace without .bones of its own.
func TestStateDirEnv(t *testing.T) {
	ws := t.TempDir()
	stateDir := filepath.Join(t.TempDir(), "state")
	swarm := filepath.Join(stateDir, "swarm")
	t.Setenv(slotgc.StateDirEnv, stateDir)
	child := startChild(t)
	pid := child.Process.Pid
	makeSlotWithPIDFile(t, swarm, "live", strconv.Itoa(pid)+"\n")
	makeSlotWithPIDFile(t, swarm, "dead", strconv.Itoa(deadPID(t))+"\n")

	r := runSlotgc(t, "-C", ws, "status")
	wantStatus := fmt.Sprintf("swarm directory %s\nSLOT ", swarm)
	if r.code != 0 || !strings.HasPrefix(r.stdout, wantStatus) || !strings.Contains(r.stdout, "2 slots: 1 live, 1 dead") {
		t.Errorf("slotgc status = %+v, want it to start %q and count 1 live and 1 dead", r, wantStatus)
	}
	r = runSlotgc(t, "-C", ws, "-json", "status")
	var status struct {
		Swarm string
		Slots []slotJSON
	}
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json status = %+v (%v), want exit 0 and JSON", r, err)
	}
	if status.Swarm != swarm || len(status.Slots) != 2 {
		t.Errorf("slotgc -json status = %+v, want swarm %q and 2 slots", status, swarm)
	}
	if r, want := elideSizes(runSlotgc(t, "-C", ws, "prune")), (result{stdout: "removed dead (SIZE)\nremoved 1 dead slot\n"}); r != want {
		t.Errorf("slotgc prune = %+v, want %+v", r, want)
	}
	if r, want := runSlotgc(t, "-C", ws, "down"), (result{stdout: fmt.Sprintf("stopped live (pid %d)\nstopped 1 of 1 live leaf\n", pid)}); r != want {
		t.Errorf("slotgc down = %+v, want %+v", r, want)
	}
	checkStoppedPolitely(t, child)
	t.Setenv(slotgc.StateDirEnv, filepath.Join(stateDir, "absent"))
	if r, want := runSlotgc(t, "-C", ws), "no state directory "+filepath.Join(stateDir, "absent")+":"; r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("slotgc status with BONES_DIR missing = %+v, want exit 0 and a note starting %q", r, want)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"help"}, {"prune", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runSlotgc(t, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "usage:\n") || !strings.Contains(r.stdout, "-json") || r.stderr != "" {
				t.Errorf("slotgc %q = %+v, want exit 0 and the usage on stdout", args, r)
			}
		})
	}
	t.Run("-bogus", func(t *testing.T) {
		if r := runSlotgc(t, "-bogus"); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "usage:") {
			t.Errorf("slotgc -bogus = %+v, want exit 2 and the usage on stderr", r)
		}
	})
}

// TestDetachedTrees lays out two trees a crashed prune left: one holding a
// live pid, which status shows and prune keeps, saying why, and one with
// no pid file, which prune finishes and says so.
func TestDetachedTrees(t *testing.T) {
	ws := t.TempDir()
	child := startChild(t)
	swarm := filepath.Join(ws, slotgc.SwarmDir)
	revived := slotgc.TrashPrefix + strconv.Itoa(deadPID(t)) + ".revived"
	garbage := slotgc.TrashPrefix + "1.garbage"
	makeSlotWithPIDFile(t, swarm, revived, strconv.Itoa(child.Process.Pid))
	makeSlot(t, swarm, garbage)

	r := runSlotgc(t, "-C", ws, "status")
	wantKept := fmt.Sprintf("detached tree %s, waiting for removal: holds live pid %d, so prune keeps it\n", revived, child.Process.Pid)
	wantGarbage := fmt.Sprintf("detached tree %s, waiting for removal: no pid file; the next prune removes it unless a prune is at work on it\n", garbage)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "0 slots: 0 live, 0 dead (0 gone, 0 reused), 0 without a pid file, 0 with an unusable one\n"+wantGarbage+wantKept) {
		t.Errorf("slotgc status = %+v, want exit 0 and stdout ending with the two detached trees:\n%s%s", r, wantGarbage, wantKept)
	}
	r = runSlotgc(t, "-C", ws, "-json", "status")
	var status struct{ Detached []slotJSON }
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json status = %+v (%v), want exit 0 and JSON", r, err)
	}
	wantDetached := []slotJSON{{Name: garbage, State: "no-pid-file", Error: "no such file or directory"}, {Name: revived, PID: child.Process.Pid, State: "live"}}
	if !reflect.DeepEqual(status.Detached, wantDetached) {
		t.Errorf("slotgc -json status detached = %+v, want %+v", status.Detached, wantDetached)
	}

	r = runSlotgc(t, "-C", ws, "prune")
	wantStdout := fmt.Sprintf("finished removing detached tree %s\nkept detached tree %s: detached tree %s holds live pid %d; left in place\nremoved 0 dead slots\n",
		garbage, revived, filepath.Join(swarm, revived), child.Process.Pid)
	if r.code != 1 || r.stdout != wantStdout || !strings.Contains(r.stderr, revived) {
		t.Errorf("slotgc prune = %+v, want exit 1, stdout %q and the kept tree on stderr", r, wantStdout)
	}
}

func TestDemo(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "demo")
	r := runSlotgc(t, "demo", ws)
	if r.code != 0 {
		t.Fatalf("slotgc demo = %+v, want exit 0", r)
	}
	statuses, err := slotgc.Scan(ws)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]slotgc.State{}
	var leaf int
	for _, s := range statuses {
		got[s.Name] = s.State
		if s.Name == "alpha" {
			leaf = s.PID
		}
	}
	want := map[string]slotgc.State{"alpha": slotgc.Live, "beta": slotgc.Gone, "gamma": slotgc.NoPIDFile, "delta": slotgc.BadPIDFile}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("demo workspace = %v, want %v", got, want)
	}
	t.Cleanup(func() { slotgc.Kill(leaf) })
	if r := runSlotgc(t, "-C", ws, "down"); r.code != 0 || slotgc.Alive(leaf) {
		t.Errorf("slotgc down on the demo = %+v, leaf %d alive = %v, want exit 0 and the leaf stopped", r, leaf, slotgc.Alive(leaf))
	}
}

// TestJSONShape holds every -json output to the shape the README promises:
// the same keys, nesting and types, with pid, error and used_by left out
// where the README says. The other tests decode into the command's own
// structs, which would follow a renamed json tag; this one would not.
func TestJSONShape(t *testing.T) {
	// populated is the workspace of workspace, plus two detached trees: one
	// with no pid file, which prune finishes, and one holding the live
	// leaf's pid, which prune keeps and reports as an error.
	populated := func(t *testing.T) string {
		t.Helper()
		ws, child := workspace(t)
		swarm := filepath.Join(ws, slotgc.SwarmDir)
		makeSlot(t, swarm, slotgc.TrashPrefix+"1.garbage")
		makeSlotWithPIDFile(t, swarm, slotgc.TrashPrefix+"2.kept", strconv.Itoa(child.Process.Pid))
		return ws
	}
	empty := func(t *testing.T) string {
		t.Helper()
		ws := t.TempDir()
		if err := os.MkdirAll(filepath.Join(ws, slotgc.SwarmDir), 0o755); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	notWorkspace := func(t *testing.T) string { return t.TempDir() }

	withPID := object{"name": "string", "pid": "number", "state": "string", "dead": "bool"}
	settings := object{"idle": "string", "keep": "string"}
	removed := object{"slot": "string", "action": "string", "bytes": "number"}
	withError := object{"name": "string", "state": "string", "dead": "bool", "error": "string"}
	leaf := object{"name": "string", "pid": "number", "stopped": "bool"}
	note := object{"note": "string", "swarm": "string", "workspace": "string"}
	tests := []jsonShapeCase{
		{"status", populated, []string{"-json", "status"}, 0, object{
			"counts":    object{"bad-pid-file": "number", "gone": "number", "live": "number", "no-pid-file": "number"},
			"detached":  array{withError, withPID},
			"slots":     array{withError, withPID, withError, withPID}, // broken, dead, half-built, live
			"swarm":     "string",
			"workspace": "string",
			"recovery":  "string", "recoveries": array{}, "settings": settings,
		}},
		{"status of an empty swarm", empty, []string{"-json", "status"}, 0, object{
			"counts": object{}, "detached": array{}, "slots": array{}, "swarm": "string", "workspace": "string",
			"recovery": "string", "recoveries": array{}, "settings": settings,
		}},
		{"prune -n", populated, []string{"-json", "prune", "-n"}, 0, object{
			"detached_finished": array{"string"}, "detached_kept": array{"string"}, "dry_run": "bool",
			"slots": array{"string"}, "swarm": "string", "workspace": "string",
			"expired": array{}, "report": array{removed}, "settings": settings,
		}},
		{"prune keeping a tree", populated, []string{"-json", "prune"}, 1, object{
			"detached_finished": array{"string"}, "detached_kept": array{"string"}, "dry_run": "bool", "error": "string",
			"slots": array{"string"}, "swarm": "string", "workspace": "string",
			"expired": array{}, "report": array{removed}, "settings": settings,
		}},
		{"prune of an empty swarm", empty, []string{"-json", "prune"}, 0, object{
			"detached_finished": array{}, "detached_kept": array{}, "dry_run": "bool",
			"slots": array{}, "swarm": "string", "workspace": "string",
			"expired": array{}, "report": array{}, "settings": settings,
		}},
		{"down -n", populated, []string{"-json", "down", "-n"}, 0, object{
			"dry_run": "bool", "leaves": array{leaf}, "swarm": "string", "workspace": "string",
		}},
		{"down", populated, []string{"-json", "down"}, 0, object{
			"dry_run": "bool", "leaves": array{leaf}, "swarm": "string", "workspace": "string",
		}},
		{"down in an empty swarm", empty, []string{"-json", "down"}, 0, object{
			"dry_run": "bool", "leaves": array{}, "swarm": "string", "workspace": "string",
		}},
		{"status of no workspace", notWorkspace, []string{"-json", "status"}, 0, note},
		{"prune of no workspace", notWorkspace, []string{"-json", "prune"}, 0, note},
		{"down in no workspace", notWorkspace, []string{"-json", "down"}, 0, note},
	}
	testJSONShapes(t, tests)
}
