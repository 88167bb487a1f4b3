package slotgc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper modes of the in-use tests:
//
//	map          map the file named by SLOTGC_TEST_ARG, close its
//	             descriptor, say "ready", sleep until killed
//	undumpable   make itself not dumpable, say "ready", sleep until
//	             killed
//	nofile-call  lower its descriptor limit to SLOTGC_TEST_ARG, then run
//	             the slotgc call its arguments name, as "call" does
//	users        print Users(ws, slot) for its two arguments as JSON
var (
	_ = registerHelper("map", func() {
		os.Exit(mapAndSleep(os.Getenv(helperArgEnv)))
	})
	_ = registerHelper("undumpable", func() {
		const prSetDumpable = 4
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
			fmt.Fprintln(os.Stderr, "prctl:", errno)
			os.Exit(2)
		}
		fmt.Println("ready")
		time.Sleep(childLifetime)
		os.Exit(0)
	})
	_ = registerHelper("nofile-call", func() {
		limit, _ := strconv.ParseUint(os.Getenv(helperArgEnv), 10, 64)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
			fmt.Fprintln(os.Stderr, "setrlimit:", err)
			os.Exit(2)
		}
		os.Exit(runCall(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	})
	_ = registerHelper("users", func() {
		users, err := Users(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
		r := usersResult{Users: users}
		if err != nil {
			r.Err, r.Uninspected = err.Error(), errors.Is(err, ErrUninspected)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		os.Exit(0)
	})
)

// usersResult is what a "users" helper prints.
type usersResult struct {
	Users       map[string][]Process
	Err         string
	Uninspected bool // errors.Is(err, ErrUninspected)
}

// mapAndSleep maps the file at path, closes its descriptor and sleeps
// with the mapping in place.
func mapAndSleep(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, os.Getpagesize(), syscall.PROT_READ, syscall.MAP_SHARED)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mmap:", err)
		return 2
	}
	fmt.Println("ready")
	time.Sleep(childLifetime)
	runtime.KeepAlive(mem)
	return 0
}

// slotFailures returns the cause of each *SlotError err joins, by slot.
func slotFailures(err error) map[string]error {
	failures := make(map[string]error)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if se, ok := errors.AsType[*SlotError](err); ok {
			failures[se.Slot] = se.Err
		}
		return failures
	}
	for _, e := range joined.Unwrap() {
		if se, ok := errors.AsType[*SlotError](e); ok {
			failures[se.Slot] = se.Err
		}
	}
	return failures
}

// wantInUseBy checks that err holds, for each slot, a *SlotError wrapping
// ErrInUse that names the pid, and no other.
func wantInUseBy(t *testing.T, err error, slots map[string]int) {
	t.Helper()
	failures := slotFailures(err)
	if len(failures) != len(slots) {
		t.Errorf("PruneDead(ws) error %v, want one for each of %v", err, slots)
	}
	for slot, pid := range slots {
		cause := failures[slot]
		if !errors.Is(cause, ErrInUse) || !strings.Contains(cause.Error(), "pid "+strconv.Itoa(pid)+" ") {
			t.Errorf("PruneDead(ws) error for slot %s = %v, want an ErrInUse naming pid %d", slot, cause, pid)
		}
	}
}

// wantCwdIntact checks that the working directory of process pid still is
// dir, not deleted.
func wantCwdIntact(t *testing.T, pid int, dir string) {
	t.Helper()
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil || cwd != dir {
		t.Errorf("working directory of pid %d reads %q (%v), want %s", pid, cwd, err, dir)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("working directory of pid %d is gone: %v", pid, err)
	}
}

// chownTree gives everything under root to uid and gid 65534.
func chownTree(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPruneKeepsUnreadableDir has uid 65534 prune a dead slot holding a
// directory it may not read (0311), below which a process of its own
// works. Where the directory is root's the walk cannot look into it and
// the slot must stay, with an error naming it; where it is the pruner's
// own, the walk looks in as the removal would, and finds the process.
func TestPruneKeepsUnreadableDir(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		owner int
	}{{"root's", 0}, {"own", nobody}} {
		t.Run(tc.name, func(t *testing.T) {
			ws, swarm := workspace(t)
			openToAll(t, swarm)
			slot := addSlot(t, swarm, "locked-below", pidLine(deadPID(t)))
			locked := filepath.Join(slot, "wt", "locked")
			below := filepath.Join(locked, "inner")
			mkdirs(t, below)
			chownTree(t, ws)
			if err := os.Lchown(locked, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}
			const unreadable = 0o311
			if err := os.Chmod(locked, unreadable); err != nil {
				t.Fatal(err)
			}
			cmd := nobodyCmd(t, "sleep")
			cmd.Dir = below
			child := startHelper(t, cmd, "sleep").Process.Pid

			r := asNobody(t, "PruneDead", ws)
			if r.Names != nil || !slices.Equal(r.Failed, []string{"locked-below"}) {
				t.Errorf("PruneDead(ws) as nobody = %v, failed %v, want nil, failed [locked-below]", r.Names, r.Failed)
			}
			switch tc.owner {
			case 0:
				if !r.Permission || !strings.Contains(r.Err, "open "+locked+": permission denied") {
					t.Errorf("PruneDead(ws) as nobody error %q, want a permission error naming %s", r.Err, locked)
				}
			default:
				if want := fmt.Sprintf("in use by pid %d ", child); !strings.Contains(r.Err, want) {
					t.Errorf("PruneDead(ws) as nobody error %q, want one saying %q", r.Err, want)
				}
				if info, err := os.Lstat(locked); err != nil || info.Mode().Perm() != unreadable {
					t.Errorf("after PruneDead %s has mode %v (%v), want %v set back", locked, info.Mode().Perm(), err, os.FileMode(unreadable))
				}
			}
			wantCwdIntact(t, child, below)
		})
	}
}

// TestPruneOutOfDescriptors prunes, as root, in a process whose
// descriptor limit is too low to walk a deep slot below which a child
// works: the slot must stay at its name, never detached under the child.
func TestPruneOutOfDescriptors(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "deep", pidLine(deadPID(t)))
	const depth, limit = 80, 40
	bottom := filepath.Join(slot, strings.Repeat("d/", depth))
	mkdirs(t, bottom)
	cmd := helperCmd(t, testBinary(t), "sleep")
	cmd.Dir = bottom
	child := startHelper(t, cmd, "sleep").Process.Pid

	cmd = helperCmd(t, testBinary(t), "nofile-call", "PruneDead", ws)
	cmd.Env = append(cmd.Env, helperArgEnv+"="+strconv.Itoa(limit))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PruneDead with %d descriptors: %v", limit, err)
	}
	var r callResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("PruneDead with %d descriptors printed %q: %v", limit, out, err)
	}
	if r.Names != nil || !slices.Equal(r.Failed, []string{"deep"}) || !strings.Contains(r.Err, "too many open files") {
		t.Errorf("PruneDead(ws) with %d descriptors = %v, %q (failed %v), want nil and an error for slot deep saying it ran out of descriptors", limit, r.Names, r.Err, r.Failed)
	}
	if entries, err := os.ReadDir(swarm); err != nil || len(entries) != 1 || entries[0].Name() != "deep" {
		t.Errorf("swarm holds %v (%v), want only slot deep at its name", entries, err)
	}
	wantCwdIntact(t, child, filepath.Clean(bottom))
}

// TestPruneKeepsSlotOfExitedLeader: a process whose main thread has
// exited shows no working directory in /proc/<pid>; its other threads,
// still working in the slot, must keep it.
func TestPruneKeepsSlotOfExitedLeader(t *testing.T) {
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "threads-left", pidLine(deadPID(t)))
	wt := filepath.Join(slot, "wt")
	mkdirs(t, wt)
	cmd := helperCmd(t, testBinary(t), "leader-exit")
	cmd.Dir = wt
	pid := startHelper(t, cmd, "leader-exit").Process.Pid
	waitProcStat(t, pid, "a running process with an exited leader", func(st procStat) bool { return st.state == 'Z' && st.threads > 1 })
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
		t.Fatalf("setup: /proc/%d/cwd still reads %q after the leader exited", pid, cwd)
	}

	got, err := PruneDead(ws)
	if got != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an ErrInUse naming pid %d", got, err, pid)
	}
	wantInUseBy(t, err, map[string]int{"threads-left": pid})
	if _, err := os.Stat(wt); err != nil {
		t.Errorf("PruneDead removed a slot its threads work in: %v", err)
	}
}

// TestPruneKeepsMappedFile: a process that mapped a file of the slot and
// closed the descriptor still uses it, whether maps are asked with
// PROCMAP_QUERY or read as text (Linux before 6.11).
func TestPruneKeepsMappedFile(t *testing.T) {
	for _, asText := range []bool{false, true} {
		t.Run(fmt.Sprintf("as text=%v", asText), func(t *testing.T) {
			if was := noMapQuery.Swap(asText); was != asText {
				t.Cleanup(func() { noMapQuery.Store(was) })
			}
			testPruneKeepsMappedFile(t)
		})
	}
}

func testPruneKeepsMappedFile(t *testing.T) {
	t.Helper()
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "mapped", pidLine(deadPID(t)))
	file := filepath.Join(slot, "wt", "data")
	mkdirs(t, filepath.Dir(file))
	writeFile(t, file, strings.Repeat("x", os.Getpagesize()))
	cmd := helperCmd(t, testBinary(t), "map")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+file)
	cmd.Dir = tempDir(t)
	pid := startHelper(t, cmd, "map").Process.Pid
	wantMappedOnly(t, pid, file)

	got, err := PruneDead(ws)
	if got != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an ErrInUse naming pid %d", got, err, pid)
	}
	wantInUseBy(t, err, map[string]int{"mapped": pid})
	if _, err := os.Stat(file); err != nil {
		t.Errorf("PruneDead removed a mapped file: %v", err)
	}
}

// wantMappedOnly fails the test unless process pid maps file and holds
// no descriptor of it.
func wantMappedOnly(t *testing.T, pid int, file string) {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil || !strings.Contains(string(maps), file) {
		t.Fatalf("setup: pid %d does not map %s: %v", pid, file, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); link == file {
			t.Fatalf("setup: pid %d still holds %s open as fd %s", pid, file, fd.Name())
		}
	}
}
