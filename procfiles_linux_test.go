//go:build linux

package slotgc

import (
	"os"
	"syscall"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		line    string
		dev     fsDev
		ino     uint64
		wantErr bool
	}{
		{"7f1c2a000000-7f1c2a022000 r--p 00000000 fe:00 9980475                    /usr/lib/libc.so.6", makeFSDev(0xfe, 0), 9980475, false},
		{"00400000-00401000 r-xp 00000000 103:02 12 /bin/x (deleted)", makeFSDev(0x103, 2), 12, false},
		{"7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]", 0, 0, false},
		{"7ffd1000-7ffd2000 rw-p 00000000 00:29 10", makeFSDev(0, 0x29), 10, false},
		{"7ffd1000-7ffd2000 rw-p 00000000", 0, 0, true},
		{"7ffd1000-7ffd2000 rw-p 00000000 0029 10 /x", 0, 0, true},
		{"7ffd1000-7ffd2000 rw-p 00000000 00:zz 10 /x", 0, 0, true},
		{"", 0, 0, true},
	}
	for _, tc := range tests {
		dev, ino, ok := parseMapsLine([]byte(tc.line))
		if dev != tc.dev || ino != tc.ino || ok == tc.wantErr {
			t.Errorf("parseMapsLine(%q) = %#x, %d, %v, want %#x, %d, %v", tc.line, dev, ino, ok, tc.dev, tc.ino, !tc.wantErr)
		}
	}
}

func TestParseMountInfo(t *testing.T) {
	tests := []struct {
		line string
		id   uint64
		m    mountInfo
		ok   bool
	}{
		{"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw", 27, mountInfo{dev: makeFSDev(254, 0)}, true},
		{"48 27 0:41 / /m rw,relatime shared:1 master:2 - overlay overlay rw,lowerdir=/l", 48, mountInfo{dev: makeFSDev(0, 41), stacked: true}, true},
		{"48 27 0:41 / /m rw,relatime shared:1", 0, mountInfo{}, false},
		{"x 27 0:41 / /m rw - tmpfs tmpfs rw", 0, mountInfo{}, false},
		{"48 27 041 / /m rw - tmpfs tmpfs rw", 0, mountInfo{}, false},
	}
	for _, tc := range tests {
		id, m, ok := parseMountInfo([]byte(tc.line))
		if id != tc.id || m != tc.m || ok != tc.ok {
			t.Errorf("parseMountInfo(%q) = %d, %+v, %v, want %d, %+v, %v", tc.line, id, m, ok, tc.id, tc.m, tc.ok)
		}
	}
}

// TestOwnMountInTable: the mount of a directory of this process is in its
// own table, with the device its maps would name.
func TestOwnMountInTable(t *testing.T) {
	dir, err := os.Open(tempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	sw := &swarmDir{path: dir.Name(), f: dir, fd: dir.Fd()}
	_, target, err := swarmTarget(sw)
	if err != nil || !target.known {
		t.Fatalf("swarmTarget(%s) = %+v, %v, want a known mount", dir.Name(), target, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(dir.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	// Outside btrfs and overlayfs a directory's st_dev is its file
	// system's.
	if want := makeFSDev(uint64(st.Dev>>8&0xfff), uint64(st.Dev&0xff|st.Dev>>12&0xfff00)); target.fs.dev != want {
		t.Errorf("swarmTarget(%s) device %#x, want %#x", dir.Name(), target.fs.dev, want)
	}
}

func TestParseFdinfo(t *testing.T) {
	tests := []struct {
		text    string
		want    fdInfo
		wantErr bool
	}{
		{"pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t3\n", fdInfo{mnt: 24, ino: 3, hasIno: true}, false},
		{"pos:\t0\nflags:\t02\nmnt_id:\t48\nino:\t9980475\nlock:\t1: POSIX\n", fdInfo{mnt: 48, ino: 9980475, hasIno: true}, false},
		{"pos:\t0\nflags:\t0100000\nmnt_id:\t24\n", fdInfo{mnt: 24}, false},         // before fdinfo had ino
		{"pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t31", fdInfo{mnt: 24}, false}, // cut short: 31 may be 314
		{"pos:\t0\nflags:\t0100000\nmnt_id:\t2", fdInfo{}, true},
		{"", fdInfo{}, true},
	}
	for _, tc := range tests {
		got, err := parseFdinfo([]byte(tc.text))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseFdinfo(%q) = %+v, %v, want %+v, error %v", tc.text, got, err, tc.want, tc.wantErr)
		}
	}
}
