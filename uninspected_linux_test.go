package slotgc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestUndumpableProcess has a process of uid 65534 that is not dumpable
// work in a slot: root sees it and keeps the slot; uid 65534 cannot look
// into it, removes the slot all the same, and names it.
func TestUndumpableProcess(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	slot := addSlot(t, swarm, "agent", pidLine(deadPID(t)))
	wt := filepath.Join(slot, "wt")
	mkdirs(t, wt)
	chownTree(t, ws)
	cmd := nobodyCmd(t, "undumpable")
	cmd.Dir = wt
	pid := startHelper(t, cmd, "undumpable").Process.Pid
	comm := commandName(pid)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil {
		t.Fatalf("setup: root cannot look into the undumpable child: %v", err)
	}

	users, err := Users(ws, "agent")
	if want := []Process{{pid, comm}}; !slices.Equal(users["agent"], want) || err != nil {
		t.Errorf("Users(ws, agent) as root = %v, %v, want %v, nil", users, err, want)
	}

	wantErr := fmt.Sprintf("slotgc: %v: pid %d (%s)", ErrUninspected, pid, comm)
	u := nobodyUsers(t, ws, "agent")
	if len(u.Users) != 0 || u.Err != wantErr || !u.Uninspected {
		t.Errorf("Users(ws, agent) as nobody = %v, %q (ErrUninspected %v), want none, %q", u.Users, u.Err, u.Uninspected, wantErr)
	}

	r := asNobody(t, "PruneDead", ws)
	if !slices.Equal(r.Names, []string{"agent"}) || r.Err != wantErr || r.Failed != nil {
		t.Errorf("PruneDead(ws) as nobody = %v, %q (failed %v), want [agent], %q", r.Names, r.Err, r.Failed, wantErr)
	}
	if _, err := os.Stat(slot); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after PruneDead the slot is still there: %v", err)
	}
}

// nobodyUsers runs Users(ws, slot) as uid 65534.
func nobodyUsers(t *testing.T, ws, slot string) usersResult {
	t.Helper()
	out, err := nobodyCmd(t, "users", ws, slot).Output()
	if err != nil {
		t.Fatalf("Users(%s, %s) as uid %d: %v", ws, slot, nobody, err)
	}
	var r usersResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("Users as uid %d printed %q: %v", nobody, out, err)
	}
	return r
}

// TestProcessPassCutShort gives the pass over /proc no time at all: every
// slot must stay, with an error saying the pass did not finish.
func TestProcessPassCutShort(t *testing.T) {
	ws, swarm := workspace(t)
	addSlot(t, swarm, "dead", pidLine(deadPID(t)))
	was := procPassLimit
	procPassLimit = time.Nanosecond
	t.Cleanup(func() { procPassLimit = was })

	got, err := PruneDead(ws)
	if got != nil || !errors.Is(err, errPassCutShort) || !errors.Is(err, errCannotTell) {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an error saying the pass over /proc did not finish", got, err)
	}
	if _, err := os.Stat(filepath.Join(swarm, "dead", PIDFile)); err != nil {
		t.Errorf("PruneDead removed a slot it could not check: %v", err)
	}
}
