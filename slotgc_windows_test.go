//go:build windows

package slotgc

import (
	"os"
	"syscall"
	"testing"
)

func init() {
	// Wine's ntdll exports wine_get_version; Windows' does not.
	if syscall.NewLazyDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil {
		removalBroken = "os.RemoveAll fails under Wine 8 (no FileDispositionInformationEx: \"Invalid function\")"
	}
}

// ignoreTerm has nothing to do: Windows has no SIGTERM to ignore.
func ignoreTerm() {}

// killedPolitely reports whether the process ended by Kill's
// TerminateProcess, which gives exit code 1.
func killedPolitely(ps *os.ProcessState) bool { return ps.ExitCode() == 1 }

// TestExitedProcessObject checks a process that has exited while a handle
// to it is still open: its pid still opens, but the handle is signalled,
// so it is gone.
func TestExitedProcessObject(t *testing.T) {
	ws, swarm := workspace(t)
	cmd := helperCmd(t, testBinary(t), "exit")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	h, err := syscall.OpenProcess(syscall.SYNCHRONIZE|processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		cmd.Wait()
		t.Fatalf("setup: OpenProcess(%d): %v", pid, err)
	}
	defer syscall.CloseHandle(h)
	if ev, err := syscall.WaitForSingleObject(h, uint32(settleTimeout.Milliseconds())); ev != syscall.WAIT_OBJECT_0 || err != nil {
		cmd.Wait()
		t.Fatalf("setup: pid %d did not exit: %d, %v", pid, ev, err)
	}
	// Reaped by its parent; only this test's handle keeps the pid taken.
	cmd.Wait()
	addSlot(t, swarm, "exited", pidLine(pid))

	if got, err := DeadSlots(ws); len(got) != 1 || got[0] != "exited" || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want [exited], nil", got, err)
	}
	if Alive(pid) {
		t.Errorf("Alive(%d) = true for an exited process, want false", pid)
	}
	if !Kill(pid) {
		t.Errorf("Kill(%d) = false for an exited process, want true", pid)
	}
}

// exhaustDescriptors does nothing: the descriptor guard it serves is
// Linux's.
func exhaustDescriptors() {}
