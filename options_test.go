package slotgc

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPruneGracePeriod gives a dead slot a tree dated long ago, changes
// one thing in it, and prunes with a grace period of an hour: a change
// within the hour keeps the slot, reported as recently changed, and
// anything older lets it go.
func TestPruneGracePeriod(t *testing.T) {
	tests := []struct {
		name string
		// change alters the slot's tree, at slotDir, after it was dated.
		change func(t *testing.T, slotDir string)
		// recent is the entry the reason must name, relative to the slot;
		// "" when the slot goes.
		recent string
	}{
		{"nothing changed", func(*testing.T, string) {}, ""},
		{"a file edited a minute ago", func(t *testing.T, slot string) {
			touch(t, filepath.Join(slot, "wt/src/main.go"), time.Minute)
		}, "wt/src/main.go"},
		{"a file edited just outside the period", func(t *testing.T, slot string) {
			touch(t, filepath.Join(slot, "wt/src/main.go"), gracePeriod+time.Minute)
		}, ""},
		{"a file made deep down just now", func(t *testing.T, slot string) {
			dir := filepath.Join(slot, "wt/src/deep/er/still")
			writeFile(t, filepath.Join(dir, "new.go"), "package still\n")
			touch(t, dir, longAgo) // only the file is recent
		}, "wt/src/deep/er/still/new.go"},
		{"a directory whose entries changed", func(t *testing.T, slot string) {
			if err := os.Remove(filepath.Join(slot, "wt/src/main.go")); err != nil {
				t.Fatal(err)
			}
		}, "wt/src"},
		{"a pid file written a minute ago", func(t *testing.T, slot string) {
			touch(t, filepath.Join(slot, PIDFile), time.Minute)
		}, PIDFile},
		{"a time in the future", func(t *testing.T, slot string) {
			touch(t, filepath.Join(slot, "wt/README"), -time.Hour)
		}, "wt/README"},
	}
	dead := pidLine(deadPID(t))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, swarm := workspace(t)
			slot := addSlot(t, swarm, "s", dead)
			addWorktree(t, slot)
			backdateTree(t, slot, longAgo)
			tc.change(t, slot)
			want := readTree(t, slot)

			report, err := Prune(ws, PruneOptions{Idle: gracePeriod})
			if err != nil {
				t.Fatalf("Prune(ws, Idle %v) = %v, want no error", gracePeriod, err)
			}
			got := outcomes(report)["s"]
			if tc.recent == "" {
				if got.Action != Removed || exists(t, slot) {
					t.Errorf("Prune(ws, Idle %v) = %+v, slot there %v, want it removed", gracePeriod, got, exists(t, slot))
				}
				return
			}
			if got.Action != Kept || !errors.Is(got.Reason, ErrRecentlyChanged) || got.Bytes != 0 {
				t.Fatalf("Prune(ws, Idle %v) = %+v, want it kept as recently changed", gracePeriod, got)
			}
			if wantPath := filepath.Join(slot, filepath.FromSlash(tc.recent)); !strings.Contains(got.Reason.Error(), wantPath) {
				t.Errorf("Prune(ws, Idle %v) reason = %q, want it to name %s", gracePeriod, got.Reason, wantPath)
			}
			if after := readTree(t, slot); !maps.Equal(after, want) {
				t.Errorf("after Prune(ws, Idle %v), the kept slot holds %d files, want the %d it held", gracePeriod, len(after), len(want))
			}
			// Without a grace period the same slot goes.
			if report, err := Prune(ws, PruneOptions{}); err != nil || outcomes(report)["s"].Action != Removed {
				t.Errorf("Prune(ws, no options) = %+v, %v, want s removed", report.Slots, err)
			}
		})
	}
}

// TestPruneReportsBytes checks the report's bytes against the size of the
// trees as du counts them, measured before the prune, for a slot removed
// and one recovered; a slot kept reports none.
func TestPruneReportsBytes(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	removed := addSlot(t, swarm, "removed", dead)
	addWorktree(t, removed)
	addHardLink(t, filepath.Join(removed, "wt/big.bin"), filepath.Join(removed, "wt/big-again.bin"))
	recovered := addSlot(t, swarm, "recovered", dead)
	addWorktree(t, recovered)
	addSlot(t, swarm, "bare", dead)
	want := map[string]int64{}
	for _, name := range []string{"removed", "recovered", "bare"} {
		want[name] = treeBytes(t, filepath.Join(swarm, name))
		if want[name] <= 0 {
			t.Fatalf("setup: tree %s measures %d bytes", name, want[name])
		}
	}
	if want["removed"] >= 2*want["recovered"] {
		t.Fatalf("setup: the hard-linked file counts twice: %d bytes against %d", want["removed"], want["recovered"])
	}

	report, err := Prune(ws, PruneOptions{})
	if err != nil {
		t.Fatalf("Prune(ws) = %v", err)
	}
	for _, o := range report.Slots {
		if o.Action != Removed || o.Bytes != want[o.Slot] {
			t.Errorf("Prune(ws) slot %s = %v, %d bytes, want removed, %d bytes", o.Slot, o.Action, o.Bytes, want[o.Slot])
		}
	}

	recovered = addSlot(t, swarm, "recovered", dead)
	addWorktree(t, recovered)
	wantBytes := treeBytes(t, recovered)
	report, err = Prune(ws, PruneOptions{Keep: retention})
	got := outcomes(report)["recovered"]
	if err != nil || got.Action != Recovered || got.Bytes != wantBytes {
		t.Fatalf("Prune(ws, Keep) = %+v, %v, want recovered, %d bytes", got, err, wantBytes)
	}
	entries, err := Recoveries(ws)
	if err != nil || len(entries) != 1 {
		t.Fatalf("Recoveries(ws) = %+v, %v, want one entry", entries, err)
	}
	if want := treeBytes(t, got.Recovery); entries[0].Bytes != want {
		t.Errorf("Recoveries(ws) bytes = %d, want %d, the entry's size", entries[0].Bytes, want)
	}
}

// TestPruneDeadEnv: PruneDead takes its options from the environment,
// refusing to prune at all with one that does not parse.
func TestPruneDeadEnv(t *testing.T) {
	tests := []struct {
		name, idle, keep string
		want             Action // what becomes of a dead slot edited a minute ago
		wantErr          string
	}{
		{"both unset", "", "", Removed, ""},
		{"grace period", "1h", "", Kept, ""},
		{"grace period shorter than the edit's age", "30s", "", Removed, ""},
		{"recoverable", "", "168h", Recovered, ""},
		{"zero", "0", "0s", Removed, ""},
		{"idle does not parse", "an hour", "", Kept, IdleEnv},
		{"keep does not parse", "", "7d", Kept, KeepEnv},
		{"negative", "-1h", "", Kept, IdleEnv},
	}
	dead := pidLine(deadPID(t))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, swarm := workspace(t)
			slot := addSlot(t, swarm, "s", dead)
			addWorktree(t, slot)
			backdateTree(t, slot, longAgo)
			touch(t, filepath.Join(slot, "wt/README"), time.Minute)
			t.Setenv(IdleEnv, tc.idle)
			t.Setenv(KeepEnv, tc.keep)

			removed, err := PruneDead(ws)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(failedSlots(err)) != 0 || len(removed) != 0 || !exists(t, slot) {
					t.Errorf("PruneDead(ws) = %v, %v, slot there %v, want an error naming %s and nothing removed", removed, err, exists(t, slot), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PruneDead(ws) = %v, want no error", err)
			}
			entries, _ := Recoveries(ws)
			switch tc.want {
			case Kept:
				if len(removed) != 0 || !exists(t, slot) {
					t.Errorf("PruneDead(ws) = %v, want s kept", removed)
				}
			case Removed, Recovered:
				if !slices.Equal(removed, []string{"s"}) || exists(t, slot) {
					t.Errorf("PruneDead(ws) = %v, want [s]", removed)
				}
				if recovered := len(entries) == 1; recovered != (tc.want == Recovered) {
					t.Errorf("after PruneDead(ws), recovery entries %+v, want recovered %v", entries, tc.want == Recovered)
				}
			}
		})
	}
}

// TestPruneDryRun: a dry run says what a prune would do and changes
// nothing, not even by making the recovery directory.
func TestPruneDryRun(t *testing.T) {
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	for _, name := range []string{"edited", "work"} {
		addWorktree(t, addSlot(t, swarm, name, dead))
		backdateTree(t, filepath.Join(swarm, name), longAgo)
	}
	touch(t, filepath.Join(swarm, "edited/wt/README"), time.Minute)
	addSlot(t, swarm, "bare", dead)
	backdateTree(t, filepath.Join(swarm, "bare"), longAgo)
	before := readTree(t, ws)
	var progress []int

	report, err := Prune(ws, PruneOptions{Idle: gracePeriod, Keep: retention, DryRun: true,
		Progress: func(done, total int, _ SlotOutcome) { progress = append(progress, done, total) }})
	if err != nil {
		t.Fatalf("Prune(ws, dry run) = %v", err)
	}
	got := outcomes(report)
	if got["edited"].Action != Kept || got["work"].Action != Recovered || got["bare"].Action != Removed {
		t.Errorf("Prune(ws, dry run) = %+v, want edited kept, work recovered, bare removed", report.Slots)
	}
	if want := []int{1, 3, 2, 3, 3, 3}; !slices.Equal(progress, want) {
		t.Errorf("Prune(ws, dry run) progress = %v, want %v", progress, want)
	}
	if after := readTree(t, ws); !maps.Equal(after, before) || exists(t, RecoveryPath(ws)) {
		t.Errorf("Prune(ws, dry run) changed the workspace: %d files, recovery there %v", len(after), exists(t, RecoveryPath(ws)))
	}
}

func TestPruneOptionsFromEnv(t *testing.T) {
	t.Setenv(IdleEnv, "90s")
	t.Setenv(KeepEnv, "")
	opts, err := PruneOptionsFromEnv()
	if err != nil || opts.Idle != 90*time.Second || opts.Keep != 0 || opts.String() != IdleEnv+"=1m30s" {
		t.Errorf("PruneOptionsFromEnv() = %+v (%s), %v, want Idle 90s", opts, opts, err)
	}
	if _, err := Prune(tempDir(t), PruneOptions{Keep: -time.Second}); err == nil {
		t.Error("Prune(ws, Keep -1s) = nil error, want a refusal")
	}
}
