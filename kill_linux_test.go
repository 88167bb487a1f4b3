package slotgc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestKillOwnUnreapedChild kills a live child nobody waits for: the child
// turns zombie on SIGTERM, and Kill must see that at once.
func TestKillOwnUnreapedChild(t *testing.T) {
	cmd := startChild(t, "sleep")
	start := time.Now()
	if !Kill(cmd.Process.Pid) {
		t.Fatalf("Kill(%d) = false, want true", cmd.Process.Pid)
	}
	if took := time.Since(start); took > promptKill {
		t.Errorf("Kill of an unreaped child took %v, want under %v", took, promptKill)
	}
	st := waitProcStat(t, cmd.Process.Pid, "a zombie", func(st procStat) bool { return true })
	if st.state != 'Z' {
		t.Errorf("after Kill the unreaped child is in state %c, want Z", st.state)
	}
}

// TestKillThreadID asks Kill to kill the id of a thread that is not its
// process's main thread: kill(2) would signal the whole process, so Kill
// must refuse.
func TestKillThreadID(t *testing.T) {
	cmd := startChild(t, "sleep")
	pid := cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, task := range tasks {
		if id, err := strconv.Atoi(task.Name()); err == nil && id != pid {
			tid = id
			break
		}
	}
	if tid == 0 {
		t.Fatalf("setup: child %d shows no thread but its main one: %v", pid, tasks)
	}
	if Kill(tid) {
		t.Errorf("Kill(%d) = true for a thread of process %d, want false", tid, pid)
	}
	if st, err := readProcStat(pid); err != nil || st.state == 'Z' {
		t.Errorf("the thread's process died: %+v, %v", st, err)
	}
}

// TestKillSlotRecycledPID stops a slot whose leaf exited after LiveSlots
// saw it, its pid since given to a stranger: KillSlot must not signal the
// stranger, and reports the leaf gone.
func TestKillSlotRecycledPID(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	slot := addSlot(t, swarm, "leaf", noPIDFile)
	mkdirs(t, filepath.Join(slot, "wt"))
	cmd := helperCmd(t, testBinary(t), "sleep")
	cmd.Dir = filepath.Join(slot, "wt")
	leaf := startHelper(t, cmd, "sleep")
	pid := leaf.Process.Pid
	// Written an hour before the leaf started, by the clocks: only its
	// working in the slot keeps it live, and a stranger cannot pass so.
	writeFile(t, filepath.Join(slot, PIDFile), pidLine(pid))
	backdate(t, slot)
	if got, err := LiveSlots(ws); !slices.Equal(got, []Slot{{"leaf", pid}}) || err != nil {
		t.Fatalf("setup: LiveSlots(ws) = %v, %v, want [{leaf %d}]", got, err, pid)
	}

	leaf.Process.Kill()
	leaf.Wait()
	stranger := startChildWithPID(t, pid)
	if gone, err := KillSlot(ws, Slot{"leaf", pid}); !gone || err != nil {
		t.Errorf("KillSlot(ws, {leaf %d}) = %v, %v, want true, nil: the leaf is gone", pid, gone, err)
	}
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("KillSlot signalled the stranger that took the leaf's pid: %v", err)
	}
	if st, err := readProcStat(pid); err != nil || st.state == 'Z' {
		t.Errorf("the stranger with pid %d is dead: %+v, %v", pid, st, err)
	}
}

// TestKillOutOfDescriptors calls Kill in a process that can open no more
// file descriptors, so no pidfd: Kill must give up rather than signal the
// bare pid, which might be recycled.
func TestKillOutOfDescriptors(t *testing.T) {
	target := startChild(t, "sleep")
	cmd := helperCmd(t, testBinary(t), "call", "Kill", strconv.Itoa(target.Process.Pid))
	cmd.Env = append(cmd.Env, exhaustFDsEnv+"=1", killGraceEnv+"="+shortKillGrace.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Kill out of descriptors: %v", err)
	}
	var r callResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("Kill out of descriptors printed %q: %v", out, err)
	}
	if r.Bool {
		t.Errorf("Kill(%d) out of descriptors = true, want false: no pidfd could be had", target.Process.Pid)
	}
	if st, err := readProcStat(target.Process.Pid); err != nil || st.state == 'Z' {
		t.Errorf("Kill out of descriptors signalled the bare pid: the target is %+v, %v", st, err)
	}
}
