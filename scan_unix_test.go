//go:build unix

package slotgc

import (
	"slices"
	"strconv"
	"syscall"
	"testing"
)

// TestOtherUsersProcess checks, as uid 65534, the verdicts on a live
// process of root's: kill(2) says EPERM, and that means alive.
func TestOtherUsersProcess(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	root := startChild(t, "sleep").Process.Pid
	if err := syscall.Kill(root, 0); err != nil {
		t.Fatalf("setup: root's child %d is not alive: %v", root, err)
	}
	addSlot(t, swarm, "roots", pidLine(root))

	if r := asNobody(t, "LiveSlots", ws); !slices.Equal(r.Slots, []Slot{{"roots", root}}) || r.Err != "" {
		t.Errorf("LiveSlots(ws) as nobody = %v, %q, want [{roots %d}], no error", r.Slots, r.Err, root)
	}
	if r := asNobody(t, "DeadSlots", ws); r.Names != nil || r.Err != "" {
		t.Errorf("DeadSlots(ws) as nobody = %v, %q, want nil, no error", r.Names, r.Err)
	}
	if r := asNobody(t, "Alive", strconv.Itoa(root)); !r.Bool {
		t.Errorf("Alive(%d) as nobody = false for root's live child, want true", root)
	}
	if r := asNobody(t, "Kill", strconv.Itoa(root)); r.Bool {
		t.Errorf("Kill(%d) as nobody = true for root's child it may not signal, want false", root)
	}
	if err := syscall.Kill(root, 0); err != nil {
		t.Errorf("root's child died when nobody tried to kill it: %v", err)
	}
}
