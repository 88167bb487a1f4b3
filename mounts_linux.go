//go:build linux

package slotgc

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The mount check reads /proc/self/mountinfo once per PruneDead call, and
// only once something is to be removed, rather than probing every entry of
// a tree while walking it: a file can be a mount point as well as a
// directory, and only the table names both without a system call per file.
// The walk itself refuses to cross a mount as well (openSubdir), so a mount
// made after the table was read still stops the removal there.

// mountsUnder returns the mount points at or below the directory open as
// fd, as this process sees them.
func (g *pruneGuard) mountsUnder(fd int) []string {
	if !g.mountsRead {
		g.mountsRead = true
		g.mounts = readMountPoints()
	}
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !strings.HasPrefix(dir, "/") {
		return nil
	}
	var under []string
	for _, m := range g.mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			under = append(under, m)
		}
	}
	return under
}

// readMountPoints returns the mount points /proc/self/mountinfo lists, or
// none if it cannot be read; the walk's own refusal to cross a mount then
// stands alone.
func readMountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for lines.Scan() {
		if m, ok := mountPoint(lines.Bytes()); ok {
			points = append(points, m)
		}
	}
	return points
}

// mountPoint returns the mount point, field 5, of a mountinfo line
// (https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html), with
// the kernel's octal escapes of space, tab, newline and backslash undone.
func mountPoint(line []byte) (string, bool) {
	fields := bytes.Fields(line)
	if len(fields) < 5 {
		return "", false
	}
	return unescapeOctal(fields[4]), true
}

func unescapeOctal(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) {
			if n, err := strconv.ParseUint(string(b[i+1:i+4]), 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(b[i])
	}
	return out.String()
}

// A process's file is told to be on the swarm's file system by the mount
// it was reached through, which /proc gives without asking any file
// system: /proc/<pid>/fdinfo names an open file's mount id, and a mount
// table, /proc/<pid>/mountinfo, names each mount's file system by the
// device number of its superblock (the major:minor field). That number is
// the one every mount of the file system shares, bind mounts and copies
// in other mount namespaces included, and the one /proc/<pid>/maps gives
// for a mapped file; it is not always the st_dev that stat(2) reports,
// which on btrfs names a subvolume and on overlayfs without xino names
// the layer a file comes from (directories report the overlay's own).
//
// Mount ids are unique across the system while a mount exists, whatever
// namespace holds it, so one table serves a whole pass: this process's
// own, read first, and each other mount namespace's (told apart by the
// link /proc/<pid>/ns/mnt) read once, the first time one of its
// processes names a mount the table lacks.

// fsDev is a file system's device number as mountinfo and maps give it:
// the major number in the high 32 bits, the minor in the low ones.
type fsDev uint64

func makeFSDev(major, minor uint64) fsDev { return fsDev(major<<32 | minor&(1<<32-1)) }

// mountInfo is what the pass needs of one mount.
type mountInfo struct {
	dev fsDev
	// stacked says the file system serves files of others (overlayfs):
	// a mapping of one of its files may name the file beneath.
	stacked bool
}

// mountTable maps mount ids to their file systems.
type mountTable struct {
	mounts     map[uint64]mountInfo
	namespaces map[string]bool // the /proc/<pid>/ns/mnt links whose tables are in
	buf        []byte
}

func newMountTable() *mountTable {
	return &mountTable{mounts: make(map[uint64]mountInfo), namespaces: make(map[string]bool)}
}

// readSelf adds this process's own mount table.
func (t *mountTable) readSelf() error {
	return t.addTable(atFDCWD, "/proc/self/mountinfo")
}

// lookup returns the mount with id mnt, reading the mount table of the
// process or thread whose /proc directory is open as dir if no table read
// so far has it. It reports false for a mount no table holds: one
// detached from every namespace (umount -l) while a process still uses
// it, or made after its namespace's table was read.
func (t *mountTable) lookup(dir int, mnt uint64) (mountInfo, bool) {
	if m, ok := t.mounts[mnt]; ok {
		return m, true
	}
	var link [64]byte
	n, err := readlinkName(dir, []byte("ns/mnt"), link[:])
	ns := string(link[:n])
	if err == nil && t.namespaces[ns] {
		return mountInfo{}, false
	}
	if t.addTable(dir, "mountinfo") == nil && err == nil {
		t.namespaces[ns] = true
	}
	m, ok := t.mounts[mnt]
	return m, ok
}

// addTable adds the mounts the mountinfo file name, relative to the
// directory dir, lists.
func (t *mountTable) addTable(dir int, name string) error {
	path, err := makePath(nil, name)
	if err != nil {
		return err
	}
	fd, err := openat(dir, path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if t.buf == nil {
		t.buf = make([]byte, 64<<10)
	}
	return readLines(fd, t.buf, func(line []byte) {
		if id, m, ok := parseMountInfo(line); ok {
			t.mounts[id] = m
		}
	})
}

// parseMountInfo picks the mount id (field 1), the device (field 3) and
// the file system type (the first field after the separator "-") out of
// a mountinfo line
// (https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html).
func parseMountInfo(line []byte) (id uint64, m mountInfo, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 7 {
		return 0, mountInfo{}, false
	}
	id, err := strconv.ParseUint(string(fields[0]), 10, 64)
	if err != nil {
		return 0, mountInfo{}, false
	}
	major, minor, ok := bytes.Cut(fields[2], []byte(":"))
	if !ok {
		return 0, mountInfo{}, false
	}
	maj, err1 := strconv.ParseUint(string(major), 10, 32)
	min, err2 := strconv.ParseUint(string(minor), 10, 32)
	if err1 != nil || err2 != nil {
		return 0, mountInfo{}, false
	}
	m.dev = makeFSDev(maj, min)
	for i := 6; i+1 < len(fields); i++ {
		if string(fields[i]) == "-" {
			m.stacked = string(fields[i+1]) == "overlay"
			return id, m, true
		}
	}
	return 0, mountInfo{}, false
}

// swarmTarget reads this process's mount table and finds in it the file
// system of the swarm directory sw.
func swarmTarget(sw *swarmDir) (*mountTable, procTarget, error) {
	mounts := newMountTable()
	if err := mounts.readSelf(); err != nil {
		return nil, procTarget{}, &fs.PathError{Op: "read", Path: "/proc/self/mountinfo", Err: err}
	}
	id, err := mountID(int(sw.fd))
	if err != nil {
		return nil, procTarget{}, fmt.Errorf("the mount of %s: %w", sw.path, err)
	}
	mnt, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, procTarget{}, fmt.Errorf("the mount of %s: %w", sw.path, err)
	}
	m, ok := mounts.mounts[mnt]
	return mounts, procTarget{fs: m, known: ok}, nil
}
