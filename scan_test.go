package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
