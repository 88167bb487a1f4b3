//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bones-swarm/slotgc"
)

func TestPruneFailureExitCode(t *testing.T) {
	needRoot(t)
	ws, _ := workspace(t)
	locked := filepath.Join(ws, slotgc.SwarmDir, "dead", "locked")
	if err := os.Mkdir(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(locked, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	giveToNobody(t, ws, locked)
	r := asNobody(t, "-C", ws, "prune")
	if r.code != 1 || !strings.Contains(r.stderr, `"dead"`) || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("slotgc prune as nobody over a root-owned subtree = %+v, want exit 1 naming slot dead and the cause", r)
	}
}

func TestDownFailureExitCode(t *testing.T) {
	needRoot(t)
	ws, child := workspace(t)
	giveToNobody(t, ws)
	// The pid file is nobody's and the leaf root's: KillSlot cannot show
	// the process to be the file's writer, and signals nothing.
	r := asNobody(t, "-C", ws, "down")
	if r.code != 1 || !strings.Contains(r.stderr, `stop slot "live": cannot tell whether the process is the slot's leaf`) {
		t.Errorf("slotgc down as nobody against root's leaf = %+v, want exit 1 naming the slot and why", r)
	}
	if !slotgc.Alive(child.Process.Pid) {
		t.Error("slotgc down as nobody stopped root's leaf, want it left running")
	}
}

// TestForgedNames gives slots names that hold a newline, a carriage
// return and a terminal escape, each made to look like other status
// lines: the text output must quote them, so every line it prints is one
// of its own.
func TestForgedNames(t *testing.T) {
	ws, _ := workspace(t)
	dead := deadPID(t)
	forged := []string{
		"x\nlive  " + strconv.Itoa(dead) + "  live",
		"y\rlive",
		"z\x1b[2K\x1b[1Alive",
	}
	for _, name := range forged {
		makeSlotWithPIDFile(t, filepath.Join(ws, slotgc.SwarmDir), name, strconv.Itoa(dead))
	}
	r := runSlotgc(t, "-C", ws, "status")
	if strings.ContainsAny(r.stdout, "\r\x1b") || strings.Count(r.stdout, "\n") != 1+1+4+len(forged)+1 {
		t.Errorf("slotgc status = %q, want no name to break a line", r.stdout)
	}
	for _, name := range forged {
		if !strings.Contains(r.stdout, strconv.Quote(name)+" ") {
			t.Errorf("slotgc status = %q, want the name %q quoted", r.stdout, name)
		}
	}
	r = runSlotgc(t, "-C", ws, "prune", "-n")
	if strings.ContainsAny(r.stdout, "\r\x1b") || strings.Count(r.stdout, "\n") != 1+len(forged)+1 {
		t.Errorf("slotgc prune -n = %q, want no name to break a line", r.stdout)
	}
}
