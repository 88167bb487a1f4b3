package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/bones-swarm/slotgc"
)

// TestStatusInUse: a dead slot some process still works in is shown dead
// and in use, with the process, and prune keeps it.
func TestStatusInUse(t *testing.T) {
	ws := t.TempDir()
	orphaned := makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), "orphaned", strconv.Itoa(deadPID(t)))
	wt := filepath.Join(orphaned, "wt")
	if err := os.Mkdir(wt, 0o755); err != nil {
		t.Fatal(err)
	}
	job := startChildIn(t, wt).Process.Pid
	comm := filepath.Base(os.Args[0])[:min(15, len(filepath.Base(os.Args[0])))]

	r := runSlotgc(t, "-C", ws, "status")
	want := fmt.Sprintf("dead (gone), in use by pid %d (%s) (kept by prune)", job, comm)
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("slotgc status = %+v, want exit 0 and a line saying %q", r, want)
	}
	r = runSlotgc(t, "-C", ws, "-json", "status")
	var status struct{ Slots []slotJSON }
	if err := json.Unmarshal([]byte(r.stdout), &status); err != nil || r.code != 0 || len(status.Slots) != 1 {
		t.Fatalf("slotgc -json status = %+v (%v), want exit 0 and JSON with one slot", r, err)
	}
	if got, want := status.Slots[0].UsedBy, []processJSON{{job, comm}}; !reflect.DeepEqual(got, want) {
		t.Errorf("slotgc -json status used_by = %+v, want %+v", got, want)
	}
	var decoded struct{ Slots []any }
	if err := json.Unmarshal([]byte(r.stdout), &decoded); err != nil {
		t.Fatal(err)
	}
	wantShape := object{"name": "string", "pid": "number", "state": "string", "dead": "bool",
		"used_by": array{object{"pid": "number", "command": "string"}}}
	if got := jsonShape(decoded.Slots[0]); !reflect.DeepEqual(got, any(wantShape)) {
		t.Errorf("slotgc -json status slot shape = %s, want %s", shapeText(got), shapeText(wantShape))
	}
	r = runSlotgc(t, "-C", ws, "prune")
	if r.code != 1 || r.stdout != "removed 0 dead slots\n" || !strings.Contains(r.stderr, fmt.Sprintf("in use by pid %d", job)) {
		t.Errorf("slotgc prune = %+v, want exit 1 naming pid %d", r, job)
	}
}
