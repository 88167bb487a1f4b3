//go:build windows

package slotgc

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"unicode/utf16"
)

func init() {
	// Wine's ntdll exports wine_get_version; Windows' does not.
	if syscall.NewLazyDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil {
		removeAllBroken = "os.RemoveAll fails under Wine 8 (no FileDispositionInformationEx: \"Invalid function\")"
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

// makeJunction makes link an NTFS junction (a mount-point reparse point)
// to the directory target, as mklink /J does.
func makeJunction(link, target string) error {
	if err := os.Mkdir(link, 0o755); err != nil {
		return err
	}
	const (
		ioReparseTagMountPoint = 0xA0000003
		fsctlSetReparsePoint   = 0x000900A4
	)
	substitute := utf16.Encode([]rune(`\??\` + target))
	printName := utf16.Encode([]rune(target))
	// Each name is followed by a NUL; the header before the names is 8
	// bytes, after the tag and length fields' 8.
	names := append(append(append(substitute, 0), printName...), 0)
	buf := make([]byte, 16+2*len(names))
	binary.LittleEndian.PutUint32(buf[0:], ioReparseTagMountPoint)
	binary.LittleEndian.PutUint16(buf[4:], uint16(8+2*len(names)))
	binary.LittleEndian.PutUint16(buf[8:], 0)                            // substitute name offset
	binary.LittleEndian.PutUint16(buf[10:], uint16(2*len(substitute)))   // its length
	binary.LittleEndian.PutUint16(buf[12:], uint16(2*len(substitute)+2)) // print name offset
	binary.LittleEndian.PutUint16(buf[14:], uint16(2*len(printName)))    // its length
	for i, c := range names {
		binary.LittleEndian.PutUint16(buf[16+2*i:], c)
	}
	name, err := syscall.UTF16PtrFromString(link)
	if err != nil {
		return err
	}
	h, err := syscall.CreateFile(name, syscall.GENERIC_WRITE, 0, nil, syscall.OPEN_EXISTING,
		syscall.FILE_FLAG_OPEN_REPARSE_POINT|syscall.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return err
	}
	defer syscall.CloseHandle(h)
	var returned uint32
	return syscall.DeviceIoControl(h, fsctlSetReparsePoint, &buf[0], uint32(len(buf)), nil, 0, &returned, nil)
}

// TestJunctionInDeadSlot puts a junction to a directory outside in a dead
// slot's worktree: PruneDead removes the slot and the junction as a link,
// and nothing behind it.
func TestJunctionInDeadSlot(t *testing.T) {
	ws, swarm := workspace(t)
	outside := tempDir(t)
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	slot := addSlot(t, swarm, "dead", pidLine(deadPID(t)))
	if err := os.Mkdir(filepath.Join(slot, "wt"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(slot, "wt", "link")
	if err := makeJunction(link, outside); err != nil {
		t.Skipf("cannot make a junction here: %v", err)
	}
	info, err := os.Lstat(link)
	if err != nil || info.Mode()&(fs.ModeSymlink|fs.ModeIrregular) == 0 {
		t.Skipf("the junction made does not show as a reparse point here: %v, %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(link, "keep")); err != nil {
		t.Skipf("the junction made does not lead to its target here: %v", err)
	}
	if got, err := PruneDead(ws); !slices.Equal(got, []string{"dead"}) || err != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want [dead], nil", got, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("PruneDead deleted the file behind a junction: %v", err)
	}
}

// TestPruneKeepsHeldSlot holds a file of a dead slot open in a child, as a
// job the dead leaf started would: Windows refuses the rename that detaches
// the slot, and PruneDead must report the slot in use and keep it whole.
func TestPruneKeepsHeldSlot(t *testing.T) {
	ws, swarm := workspace(t)
	dir := addSlot(t, swarm, "held", pidLine(deadPID(t)))
	held := filepath.Join(dir, "wt", "open.txt")
	mkdirs(t, filepath.Dir(held))
	writeFile(t, held, "work")
	cmd := helperCmd(t, testBinary(t), "hold")
	cmd.Env = append(cmd.Env, helperArgEnv+"="+held)
	startHelper(t, cmd, "hold")

	got, err := PruneDead(ws)
	if got != nil || !errors.Is(err, ErrInUse) {
		t.Errorf("PruneDead(ws) = %v, %v, want nil and an ErrInUse", got, err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("the held file is gone from its slot: %v", err)
	}
}
