package slotgc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// mountOverlay mounts an overlay of lower and upper (with work, its work
// directory) on target without xino, checks that /proc/self/mountinfo
// lists it, and unmounts it when the test ends. redirect_dir lets a
// directory of the lower layer be renamed, as PruneDead detaches a slot;
// without it the rename fails (EXDEV) and keeps the slot whatever the
// guard says.
func mountOverlay(t *testing.T, lower, upper, work, target string) {
	t.Helper()
	options := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",xino=off,redirect_dir=on"
	if err := syscall.Mount("overlay", target, "overlay", 0, options); err != nil {
		if os.Getenv(requireRootEnv) == "1" {
			t.Fatalf("mount overlay on %s: %v, and %s=1 forbids skipping", target, err, requireRootEnv)
		}
		t.Skipf("cannot mount an overlay here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
	if !slices.Contains(readMountPoints(), target) {
		t.Fatalf("setup: %s is not in /proc/self/mountinfo after mounting it", target)
	}
}

// TestPruneKeepsSlotInUseOnOverlay holds the swarm on an overlay whose
// lower layer is on the disk and whose upper one is a tmpfs, without xino:
// there a file's stat names another device than its directory's. Files
// held open from either layer, and one mapped, must keep their slots.
func TestPruneKeepsSlotInUseOnOverlay(t *testing.T) {
	needRoot(t)
	lower, layers, merged := tempDir(t), tempDir(t), tempDir(t)
	dead := pidLine(deadPID(t))
	lowerSwarm := filepath.Join(lower, "ws", SwarmDir)
	for _, slot := range []string{"lower-file", "mapped", "unused-lower"} {
		addSlot(t, lowerSwarm, slot, dead)
	}
	writeFile(t, filepath.Join(lowerSwarm, "lower-file", "held"), "from the disk")
	writeFile(t, filepath.Join(lowerSwarm, "mapped", "data"), strings.Repeat("x", os.Getpagesize()))
	mount(t, "tmpfs", layers, "tmpfs")
	upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
	mkdirs(t, upper, work)
	mountOverlay(t, lower, upper, work, merged)

	ws := filepath.Join(merged, "ws")
	swarm := filepath.Join(ws, SwarmDir)
	addSlot(t, swarm, "upper-file", dead)
	addSlot(t, swarm, "unused", dead)
	writeFile(t, filepath.Join(swarm, "upper-file", "held"), "from the tmpfs")
	var dirSt, fileSt syscall.Stat_t
	if err := syscall.Stat(filepath.Join(swarm, "lower-file"), &dirSt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(swarm, "lower-file", "held"), &fileSt); err != nil {
		t.Fatal(err)
	}
	if dirSt.Dev == fileSt.Dev {
		t.Fatalf("setup: a file of the overlay reports the device of its directory, %#x: the test would not tell", dirSt.Dev)
	}

	holders := make(map[string]int)
	for _, slot := range []string{"lower-file", "upper-file"} {
		cmd := helperCmd(t, testBinary(t), "hold")
		cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(swarm, slot, "held"))
		cmd.Dir = tempDir(t)
		holders[slot] = startHelper(t, cmd, "hold").Process.Pid
	}
	cmd := helperCmd(t, testBinary(t), "map")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+filepath.Join(swarm, "mapped", "data"))
	cmd.Dir = tempDir(t)
	holders["mapped"] = startHelper(t, cmd, "map").Process.Pid
	wantMappedOnly(t, holders["mapped"], filepath.Join(swarm, "mapped", "data"))

	got, err := PruneDead(ws)
	if !slices.Equal(got, []string{"unused", "unused-lower"}) {
		t.Errorf("PruneDead(ws) = %v, %v, want [unused unused-lower] and an ErrInUse for each other slot", got, err)
	}
	wantInUseBy(t, err, holders)
	for slot := range holders {
		if _, err := os.Stat(filepath.Join(swarm, slot, PIDFile)); err != nil {
			t.Errorf("PruneDead removed slot %s, in use: %v", slot, err)
		}
	}
}
