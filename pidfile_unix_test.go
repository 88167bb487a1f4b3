//go:build unix

package slotgc

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSpecialPIDFiles puts files that are no regular files, or far too
// large, where the pid file goes: each must be refused without blocking,
// without reading it whole and without following it.
func TestSpecialPIDFiles(t *testing.T) {
	ws, swarm := workspace(t)
	dead := deadPID(t)
	tests := []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o644) }},
		{"fifo-with-writer", func(path string) error {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				return err
			}
			// A writer holding the FIFO open: a reader would get data.
			w, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { w.Close() })
			_, err = w.WriteString(pidLine(dead))
			return err
		}},
		{"sparse-terabyte", func(path string) error {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString(pidLine(dead)); err != nil {
				return err
			}
			return f.Truncate(1 << 40)
		}},
		{"symlink-to-dead-pid", func(path string) error {
			target := filepath.Join(t.TempDir(), "pid")
			if err := os.WriteFile(target, []byte(pidLine(dead)), 0o644); err != nil {
				return err
			}
			return os.Symlink(target, path)
		}},
		{"dangling-symlink", func(path string) error { return os.Symlink("/nonexistent/leaf.pid", path) }},
		{"unix-socket", func(path string) error {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { syscall.Close(fd) })
			return syscall.Bind(fd, &syscall.SockaddrUnix{Name: path})
		}},
	}
	for _, tc := range tests {
		dir := addSlot(t, swarm, tc.name, noPIDFile)
		if err := tc.make(filepath.Join(dir, PIDFile)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	if os.Getuid() == 0 {
		// The null device, as root can make it; refused, never opened.
		dir := addSlot(t, swarm, "char-device", noPIDFile)
		if err := syscall.Mknod(filepath.Join(dir, PIDFile), syscall.S_IFCHR|0o644, 1<<8|3); err != nil {
			t.Logf("no character device case: mknod: %v", err)
			os.Remove(dir)
		}
	}
	got := states(scanWithin(t, ws))
	if len(got) < len(tests) {
		t.Errorf("Scan(ws) = %v, want all %d slots", got, len(tests))
	}
	for name, state := range got {
		t.Run(name, func(t *testing.T) {
			if state != BadPIDFile {
				t.Errorf("Scan(ws) says %s, want %s", state, BadPIDFile)
			}
		})
	}
	if dead, err := DeadSlots(ws); dead != nil || err != nil {
		t.Errorf("DeadSlots(ws) = %v, %v, want nil, nil", dead, err)
	}
}

func TestPIDFileUnreadable(t *testing.T) {
	needRoot(t)
	ws, swarm := workspace(t)
	openToAll(t, swarm)
	dir := addSlot(t, swarm, "secret", pidLine(deadPID(t)))
	if err := os.Chmod(filepath.Join(dir, PIDFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := asNobody(t, "DeadSlots", ws); r.Names != nil || r.Err != "" {
		t.Errorf("DeadSlots(ws) as nobody = %v, %q, want nil: an unreadable pid file is unusable", r.Names, r.Err)
	}
	if r := asNobody(t, "PruneDead", ws); r.Names != nil || r.Err != "" {
		t.Errorf("PruneDead(ws) as nobody = %v, %q, want nil, no error", r.Names, r.Err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("slot with an unreadable pid file was removed: %v", err)
	}
}
