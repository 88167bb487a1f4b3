package slotgc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// dirent encodes one linux_dirent64 record, padded to 8 bytes as the
// kernel does.
func dirent(name string, typ byte) []byte { return direntWithIno(name, 1, typ) }

// direntWithIno is dirent with the inode number ino.
func direntWithIno(name string, ino uint64, typ byte) []byte {
	reclen := (19 + len(name) + 1 + 7) &^ 7
	rec := make([]byte, reclen)
	binary.NativeEndian.PutUint64(rec[0:], ino)
	binary.NativeEndian.PutUint16(rec[16:], uint16(reclen))
	rec[18] = typ
	copy(rec[19:], name)
	return rec
}

func TestReadSwarmEntries(t *testing.T) {
	ws, swarm := workspace(t)
	for i := range 300 { // more than one getdents64 buffer's worth of names
		addSlot(t, swarm, fmt.Sprintf("slot-%03d-%s", i, strings.Repeat("x", 100)), noPIDFile)
	}
	if err := os.WriteFile(filepath.Join(swarm, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ws, filepath.Join(swarm, "link-to-dir")); err != nil {
		t.Fatal(err)
	}
	sw, got, err := openSwarm(swarm)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.close()
	dirEntries, err := os.ReadDir(swarm)
	if err != nil {
		t.Fatal(err)
	}
	var want []dirEntry
	for _, e := range dirEntries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, dirEntry{name: e.Name(), ino: info.Sys().(*syscall.Stat_t).Ino, isDir: e.IsDir()})
	}
	if !slices.Equal(got, want) {
		t.Errorf("openSwarm(swarm) entries differ from os.ReadDir:\n got %v\nwant %v", got, want)
	}
}

func TestAppendDirents(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "unknown-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	records := slices.Concat(
		dirent(".", 4), dirent("..", 4),
		dirent("a", 4), dirent("file", 8), dirent("link", 10),
		dirent("unknown-dir", 0), dirent("unknown-missing", 0),
	)
	fd, err := syscall.Open(dir, dirFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	got, err := appendDirents(nil, records, fd)
	// dirent numbers every record's inode 1.
	want := []dirEntry{{"a", 1, true}, {"file", 1, false}, {"link", 1, false}, {"unknown-dir", 1, true}, {"unknown-missing", 1, false}}
	if !slices.Equal(got, want) || err != nil {
		t.Errorf("appendDirents = %v, %v, want %v, nil", got, err, want)
	}
	for _, bad := range [][]byte{records[:10], append(dirent("a", 4), 1, 2, 3)} {
		if _, err := appendDirents(nil, bad, fd); !errors.Is(err, errDirent) {
			t.Errorf("appendDirents(%q) error %v, want %v", bad, err, errDirent)
		}
	}
}

func FuzzAppendDirents(f *testing.F) {
	f.Add(slices.Concat(dirent(".", 4), dirent("slot", 4), dirent("f", 8)))
	f.Add(dirent("x", 0))
	f.Add([]byte{})
	fd, err := syscall.Open(f.TempDir(), dirFlags, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { syscall.Close(fd) })
	f.Fuzz(func(t *testing.T, buf []byte) {
		entries, err := appendDirents(nil, buf, fd)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsRune(e.name, 0) {
				t.Fatalf("appendDirents(%q) gave entry %q", buf, e.name)
			}
		}
		// What parsed, encoded again and parsed, gives the same.
		var again []byte
		for _, e := range entries {
			typ := byte(8)
			if e.isDir {
				typ = 4
			}
			again = append(again, direntWithIno(e.name, e.ino, typ)...)
		}
		if got, err := appendDirents(nil, again, fd); !slices.Equal(got, entries) || err != nil {
			t.Fatalf("round trip of %q: %v, %v, want %v", buf, got, err, entries)
		}
	})
}
