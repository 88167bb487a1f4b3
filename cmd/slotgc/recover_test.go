package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bones-swarm/slotgc"
)

const (
	// longAgo is how far back a test dates a tree that no grace period
	// keeps.
	longAgo = 72 * time.Hour
	// cliEntry is a recovery entry the swarm CLI made, long ago.
	cliEntry = "old-1000000000"
)

// backdateTree sets the times of every entry under dir, dir included, to
// age ago, deepest first.
func backdateTree(t *testing.T, dir string, age time.Duration) {
	t.Helper()
	var paths []string
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		paths = append(paths, path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-age)
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Chtimes(paths[i], then, then); err != nil {
			t.Fatal(err)
		}
	}
}

// makeWorktree gives the slot directory slotDir a worktree holding a file
// of content, and returns the file's path.
func makeWorktree(t *testing.T, slotDir, content string) string {
	t.Helper()
	file := filepath.Join(slotDir, slotgc.WorktreeDir, "src", "notes.txt")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// recoverable makes a workspace with the dead slots work, whose tree is
// three days old, and edited, whose worktree has a file edited a minute
// ago, and a recovery entry the CLI made, cliEntry; it returns the
// workspace.
func recoverable(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	swarm := filepath.Join(ws, slotgc.SwarmDir)
	dead := strconv.Itoa(deadPID(t)) + "\n"
	work := makeSlotWithPIDFile(t, swarm, "work", dead)
	makeWorktree(t, work, "work in progress\n")
	backdateTree(t, work, longAgo)
	edited := makeSlotWithPIDFile(t, swarm, "edited", dead)
	file := makeWorktree(t, edited, "edited a minute ago\n")
	backdateTree(t, edited, longAgo)
	minuteAgo := time.Now().Add(-time.Minute)
	if err := os.Chtimes(file, minuteAgo, minuteAgo); err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(ws, slotgc.RecoveryDir, cliEntry)
	makeWorktree(t, entry, "the CLI's copy\n")
	backdateTree(t, entry, 10*24*time.Hour)
	return ws
}

// recovered is recoverable after a prune with -idle 10m -keep 24h:
// edited is kept, and work's worktree is in the recovery directory.
func recovered(t *testing.T) string {
	t.Helper()
	ws := recoverable(t)
	if r := runSlotgc(t, "-C", ws, "prune", "-idle", "10m", "-keep", "24h"); r.code != 0 {
		t.Fatalf("setup: slotgc prune -idle 10m -keep 24h = %+v", r)
	}
	return ws
}

// TestRecoverSession runs the session the README shows: a dry run, a
// prune that keeps a slot edited a minute ago and recovers another, the
// status listing the recovery entries and the settings, a restore and a
// refused one, and the expiry of what slotgc made, never of the CLI's.
func TestRecoverSession(t *testing.T) {
	ws := recoverable(t)
	swarm := filepath.Join(ws, slotgc.SwarmDir)
	recovery := filepath.Join(ws, slotgc.RecoveryDir)
	entryPattern := regexp.QuoteMeta(filepath.Join(recovery, "work-")) + `(\d+)`

	r := elideSizes(runSlotgc(t, "-C", ws, "prune", "-n", "-idle", "10m", "-keep", "24h"))
	wantDry := regexp.MustCompile(`^would keep edited: changed 1m0s ago, within the grace period of 10m0s \(` + regexp.QuoteMeta(filepath.Join(swarm, "edited", "wt", "src", "notes.txt")) + `\)
would recover work to ` + entryPattern + ` \(SIZE\)
would remove 0 dead slots
would recover 1 dead slot into ` + regexp.QuoteMeta(recovery) + ` \(SIZE\)
would keep 1 dead slot changed within the grace period
$`)
	if r.code != 0 || r.stderr != "" || !wantDry.MatchString(r.stdout) {
		t.Errorf("slotgc prune -n -idle 10m -keep 24h = %+v, want exit 0 and stdout matching %s", r, wantDry)
	}
	if !slotExists(t, ws, "work") {
		t.Fatal("slotgc prune -n took work")
	}

	before := time.Now().Unix()
	r = elideSizes(runSlotgc(t, "-C", ws, "prune", "-idle", "10m", "-keep", "24h"))
	wantPrune := regexp.MustCompile(`^kept edited: changed 1m0s ago, within the grace period of 10m0s \(.*\)
recovered work to ` + entryPattern + ` \(SIZE\)
removed 0 dead slots
recovered 1 dead slot into ` + regexp.QuoteMeta(recovery) + ` \(SIZE\)
kept 1 dead slot changed within the grace period
$`)
	m := wantPrune.FindStringSubmatch(r.stdout)
	if r.code != 0 || r.stderr != "" || m == nil {
		t.Fatalf("slotgc prune -idle 10m -keep 24h = %+v, want exit 0 and stdout matching %s", r, wantPrune)
	}
	if unix, _ := strconv.ParseInt(m[1], 10, 64); unix < before || unix > time.Now().Unix() {
		t.Errorf("recovery entry work-%s, want the unix second of the prune", m[1])
	}
	entry := "work-" + m[1]
	if slotExists(t, ws, "work") || !slotExists(t, ws, "edited") {
		t.Errorf("after the prune, work there %v, edited there %v, want only edited", slotExists(t, ws, "work"), slotExists(t, ws, "edited"))
	}

	t.Setenv(slotgc.KeepEnv, "24h")
	r = elideSizes(runSlotgc(t, "-C", ws, "status"))
	wantStatus := regexp.MustCompile(`(?m)^recovery directory ` + regexp.QuoteMeta(recovery) + `
ENTRY +AGE +SIZE +MADE BY
` + cliEntry + ` +\d+d +SIZE +another tool, such as the swarm CLI \(never removed by slotgc\)
` + entry + ` +\d+s +SIZE +slotgc \(removed by a prune in 2[34]h, by SLOTGC_KEEP=24h0m0s\)
2 recovery entries; slotgc restore SLOT puts a slot's newest one back
prune settings from the environment:
  SLOTGC_IDLE unset: dead slots go however recently they changed
  SLOTGC_KEEP=24h0m0s: dead slots' worktrees go into the recovery directory, kept 24h0m0s
$`)
	if r.code != 0 || !wantStatus.MatchString(r.stdout) {
		t.Errorf("slotgc status = %+v, want exit 0 and stdout ending as %s", r, wantStatus)
	}
	t.Setenv(slotgc.KeepEnv, "")

	r = runSlotgc(t, "-C", ws, "restore", "work")
	worktree := filepath.Join(swarm, "work", slotgc.WorktreeDir)
	if want := fmt.Sprintf("restored %s, made 0s ago, to %s\n", entry, worktree); r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("slotgc restore work = %+v, want exit 0 and stdout starting %q", r, want)
	}
	if content, err := os.ReadFile(filepath.Join(worktree, "src", "notes.txt")); string(content) != "work in progress\n" {
		t.Errorf("restored notes.txt = %q, %v, want the work in progress", content, err)
	}
	if r := runSlotgc(t, "-C", ws, "status"); !regexp.MustCompile(`(?m)^work +- +no pid file$`).MatchString(r.stdout) {
		t.Errorf("slotgc status after restore = %q, want work shown without a pid file", r.stdout)
	}
	r = runSlotgc(t, "-C", ws, "restore", "work")
	if r.code != 1 || !strings.Contains(r.stderr, "no recovery entry work-<unix seconds>") {
		t.Errorf("second slotgc restore work = %+v, want exit 1: no entry left", r)
	}
	r = runSlotgc(t, "-C", ws, "restore", "old")
	if r.code != 0 || !slotExists(t, ws, "old") {
		t.Errorf("slotgc restore old = %+v, want exit 0: the CLI's entries restore too", r)
	}

	// Another recovery, then a retention of a nanosecond: slotgc's entry
	// goes, and no entry of the CLI's would.
	again := makeSlotWithPIDFile(t, swarm, "again", strconv.Itoa(deadPID(t))+"\n")
	makeWorktree(t, again, "again\n")
	backdateTree(t, again, longAgo)
	if r := runSlotgc(t, "-C", ws, "prune", "-idle", "10m", "-keep", "24h"); r.code != 0 {
		t.Fatalf("slotgc prune -idle 10m -keep 24h = %+v", r)
	}
	r = runSlotgc(t, "-C", ws, "-json", "prune", "-idle", "10m", "-keep", "1ns")
	var got pruneJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json prune -keep 1ns = %+v (%v), want exit 0 and JSON", r, err)
	}
	if len(got.Expired) != 1 || got.Expired[0].Slot != "again" || !got.Expired[0].BySlotgc || got.Expired[0].Bytes <= 0 {
		t.Errorf("slotgc -json prune -keep 1ns expired = %+v, want again's entry, measured", got.Expired)
	}
	if got.Settings != (settingsJSON{Idle: "10m0s", Keep: "1ns"}) {
		t.Errorf("slotgc -json prune -keep 1ns settings = %+v, want idle 10m0s, keep 1ns", got.Settings)
	}
}

// TestPruneReportJSON checks the values of prune's per-slot report.
func TestPruneReportJSON(t *testing.T) {
	ws := recoverable(t)
	r := runSlotgc(t, "-C", ws, "-json", "prune", "-idle", "10m", "-keep", "24h")
	var got pruneJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("slotgc -json prune = %+v (%v), want exit 0 and JSON", r, err)
	}
	if len(got.Report) != 2 {
		t.Fatalf("slotgc -json prune report = %+v, want edited and work", got.Report)
	}
	edited, work := got.Report[0], got.Report[1]
	if edited.Slot != "edited" || edited.Action != "kept" || !strings.Contains(edited.Reason, "within the grace period") || edited.Bytes != 0 || edited.Recovery != "" {
		t.Errorf("slotgc -json prune report[0] = %+v, want edited kept as recently changed", edited)
	}
	if work.Slot != "work" || work.Action != "recovered" || work.Reason != "" || work.Bytes <= 0 || !strings.HasPrefix(work.Recovery, filepath.Join(ws, slotgc.RecoveryDir, "work-")) {
		t.Errorf("slotgc -json prune report[1] = %+v, want work recovered, with its size", work)
	}
	if !reflect.DeepEqual(got.Slots, []string{"work"}) || got.Settings != (settingsJSON{Idle: "10m0s", Keep: "24h0m0s"}) {
		t.Errorf("slotgc -json prune = slots %v, settings %+v, want [work], 10m0s and 24h0m0s", got.Slots, got.Settings)
	}
}

// TestPruneSettingsFromEnv: without -idle and -keep, prune takes them
// from the environment, as the library's PruneDead does, and a bad value
// there stops it, unless both flags are given.
func TestPruneSettingsFromEnv(t *testing.T) {
	tests := []struct {
		name      string
		idle      string
		args      []string
		wantCode  int
		wantWork  bool // work is still a slot
		wantError string
	}{
		{"from the environment", "10m", nil, 0, true, ""},
		{"a flag before the environment", "10m", []string{"-idle", "0"}, 0, false, ""},
		{"bad environment", "ten minutes", nil, 2, true, "SLOTGC_IDLE=\"ten minutes\""},
		{"bad environment, both flags", "ten minutes", []string{"-idle", "0", "-keep", "0"}, 0, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			work := makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), "work", strconv.Itoa(deadPID(t))+"\n")
			makeWorktree(t, work, "fresh\n")
			t.Setenv(slotgc.IdleEnv, tc.idle)
			r := runSlotgc(t, append([]string{"-C", ws, "prune"}, tc.args...)...)
			if r.code != tc.wantCode || slotExists(t, ws, "work") != tc.wantWork || !strings.Contains(r.stderr, tc.wantError) {
				t.Errorf("slotgc prune %v with %s=%q = %+v, work there %v, want exit %d, work there %v, stderr naming %q",
					tc.args, slotgc.IdleEnv, tc.idle, r, slotExists(t, ws, "work"), tc.wantCode, tc.wantWork, tc.wantError)
			}
		})
	}
	ws := recoverable(t)
	t.Setenv(slotgc.IdleEnv, "soon")
	if r := runSlotgc(t, "-C", ws, "status"); r.code != 1 || !strings.Contains(r.stderr, "prune removes nothing until it is fixed") {
		t.Errorf("slotgc status with %s=soon = %+v, want exit 1 and the error", slotgc.IdleEnv, r)
	}
}

// TestStatusSize: status -size shows each slot's disk use.
func TestStatusSize(t *testing.T) {
	ws := recoverable(t)
	r := elideSizes(runSlotgc(t, "-C", ws, "status", "-size"))
	want := regexp.MustCompile(`(?m)^SLOT +PID +SIZE +STATE\nedited +\d+ +SIZE +dead \(gone\)\nwork +\d+ +SIZE +dead \(gone\)$`)
	if r.code != 0 || !want.MatchString(r.stdout) {
		t.Errorf("slotgc status -size = %+v, want a SIZE column", r)
	}
	var got struct{ Slots []slotJSON }
	r = runSlotgc(t, "-C", ws, "-json", "status", "-size")
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got.Slots) != 2 || got.Slots[0].Bytes == nil || *got.Slots[0].Bytes <= 0 {
		t.Errorf("slotgc -json status -size = %q (%v), want each slot's bytes", r.stdout, err)
	}
}

// TestRecoverJSONShape holds the -json outputs of recovery to the shapes
// the README promises, as TestJSONShape does for the others.
func TestRecoverJSONShape(t *testing.T) {
	settings := object{"idle": "string", "keep": "string"}
	entry := object{"name": "string", "slot": "string", "made": "string", "age_seconds": "number", "bytes": "number", "by_slotgc": "bool"}
	kept := object{"slot": "string", "action": "string", "reason": "string", "bytes": "number"}
	recoveredSlot := object{"slot": "string", "action": "string", "bytes": "number", "recovery": "string"}
	sized := object{"name": "string", "pid": "number", "state": "string", "dead": "bool", "bytes": "number"}
	tests := []jsonShapeCase{
		{"prune -idle -keep", recoverable, []string{"-json", "prune", "-idle", "10m", "-keep", "24h"}, 0, object{
			"detached_finished": array{}, "detached_kept": array{}, "dry_run": "bool", "expired": array{},
			"report": array{kept, recoveredSlot}, "settings": settings, "slots": array{"string"}, "swarm": "string", "workspace": "string",
		}},
		{"prune -keep 1ns after a recovery", recovered, []string{"-json", "prune", "-idle", "10m", "-keep", "1ns"}, 0, object{
			"detached_finished": array{}, "detached_kept": array{}, "dry_run": "bool", "expired": array{entry},
			"report": array{kept}, "settings": settings, "slots": array{}, "swarm": "string", "workspace": "string",
		}},
		{"status -size with recovery entries", recovered, []string{"-json", "status", "-size"}, 0, object{
			"counts": object{"gone": "number"}, "detached": array{}, "recoveries": array{entry, entry}, "recovery": "string",
			"settings": settings, "slots": array{sized}, "swarm": "string", "workspace": "string",
		}},
		{"restore", recovered, []string{"-json", "restore", "work"}, 0, object{
			"entry": "string", "slot": "string", "swarm": "string", "workspace": "string", "worktree": "string",
		}},
		{"restore refused", recovered, []string{"-json", "restore", "edited"}, 1, object{
			"error": "string", "slot": "string", "swarm": "string", "workspace": "string",
		}},
	}
	testJSONShapes(t, tests)
}

func TestBytesAndAgeText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{59 * time.Second: "59s", 90 * time.Minute: "1h", 47 * time.Hour: "47h", 72 * time.Hour: "3d"} {
		if got := ageText(d); got != want {
			t.Errorf("ageText(%v) = %q, want %q", d, got, want)
		}
	}
}
