package slotgc

import (
	"errors"
	"fmt"
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

// TestPruneSeesCopiedUpFileOnOverlay holds the swarm on an overlay of a
// disk and a tmpfs without xino, and a process holds open a worktree file
// of the lower layer that it wrote, so that overlayfs copied it up: its
// directory then gives the upper file's inode number, while stat and the
// process's fdinfo give its lower origin's. Whichever file a survey meets
// first (wt lists an untouched file beside it, or not), the slot is kept.
func TestPruneSeesCopiedUpFileOnOverlay(t *testing.T) {
	needRoot(t)
	for _, untouched := range []bool{false, true} {
		t.Run(fmt.Sprintf("untouched file beside=%v", untouched), func(t *testing.T) {
			lower, layers, merged := tempDir(t), tempDir(t), tempDir(t)
			lowerSlot := addSlot(t, filepath.Join(lower, "ws", SwarmDir), "s", pidLine(deadPID(t)))
			writeFile(t, filepath.Join(lowerSlot, "notes.txt"), "never written in the overlay\n")
			mkdirs(t, filepath.Join(lowerSlot, "wt"))
			writeFile(t, filepath.Join(lowerSlot, "wt", "edited.go"), "package main\n")
			if untouched {
				writeFile(t, filepath.Join(lowerSlot, "wt", "untouched.go"), "package main\n")
			}
			mount(t, "tmpfs", layers, "tmpfs")
			upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
			mkdirs(t, upper, work)
			mountOverlay(t, lower, upper, work, merged)

			ws := filepath.Join(merged, "ws")
			edited := filepath.Join(ws, SwarmDir, "s", "wt", "edited.go")
			f, err := os.OpenFile(edited, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("// an edit not committed\n")
			f.Close()
			var st syscall.Stat_t
			if err := syscall.Stat(edited, &st); err != nil {
				t.Fatal(err)
			}
			if listed := direntIno(t, filepath.Dir(edited), "edited.go"); listed == st.Ino {
				t.Fatalf("setup: the copied-up file's directory gives its stat inode number, %d: the test would not tell", st.Ino)
			}
			cmd := helperCmd(t, testBinary(t), "hold")
			cmd.Env = append(cmd.Env, helperArgEnv+"="+edited)
			cmd.Dir = tempDir(t)
			holder := startHelper(t, cmd, "hold").Process.Pid

			got, err := PruneDead(ws)
			if len(got) != 0 || !errors.Is(err, ErrInUse) {
				t.Errorf("PruneDead(ws) = %v, %v, want [] and an ErrInUse: pid %d holds wt/edited.go open", got, err, holder)
			}
			if _, err := os.Stat(edited); err != nil {
				t.Errorf("wt/edited.go, which pid %d holds open, is gone: %v", holder, err)
			}
		})
	}
}

// direntIno returns the inode number the directory dir gives its entry
// name.
func direntIno(t *testing.T, dir, name string) uint64 {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	entries, err := readTreeEntries(fd)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.name == name {
			return e.ino
		}
	}
	t.Fatalf("setup: %s lists no %s", dir, name)
	return 0
}
