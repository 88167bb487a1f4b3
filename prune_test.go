package slotgc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

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
