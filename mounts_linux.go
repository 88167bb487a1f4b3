//go:build linux

package slotgc

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
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
// fd, as this process sees them, and those of every other mount namespace
// it can see into (see mountsElsewhere).
func (g *pruneGuard) mountsUnder(fd int) []string {
	if !g.mountsRead {
		g.mountsRead = true
		g.mounts = readMountPoints()
		g.elsewhere = readOtherNamespaces()
	}
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !strings.HasPrefix(dir, "/") {
		return nil
	}
	var under []string
	for _, m := range g.mounts {
		if pathWithin(m, dir) {
			under = append(under, m)
		}
	}
	return append(under, mountsElsewhere(dir, g.elsewhere)...)
}

// pathWithin reports whether the clean absolute path p is dir or lies
// below it.
func pathWithin(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// A mount made in another mount namespace (a container's, or any process
// that called unshare(CLONE_NEWNS)) on a directory of a slot does not show
// in this process's table, and the walk, which refuses to cross mounts,
// does not meet it: in this namespace the directory is a plain one. Yet
// removing that directory detaches the mount there, with all it showed
// (Linux 3.18 and later, https://man7.org/linux/man-pages/man2/rmdir.2.html).
// Paths do not carry across namespaces, but places on a file system do:
// each mountinfo line says which directory of its file system a mount
// shows (root, field 4) and where it sits (field 5) under its parent mount,
// so a mount's place on the file system beneath it is its parent's root
// joined with its point below the parent's. A mount whose place lies in
// the slot, or that shows a directory of the slot elsewhere (a bind mount
// of it), keeps the slot.

// mountPlace is where one mount sits: its id, its parent's, the device of
// its file system, the directory of it that it shows, and its mount point.
type mountPlace struct {
	id, parent  uint64
	dev         fsDev
	root, point string
}

// namespaceMounts is the mount table of one other mount namespace, and a
// process in it, for messages.
type namespaceMounts struct {
	pid    int
	places []mountPlace
}

// readOtherNamespaces reads the mount table of every mount namespace but
// this process's that /proc lets it tell apart (another user's processes
// only as root), once each. Reading a table asks no file system.
func readOtherNamespaces() []namespaceMounts {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	seen := map[string]bool{own: true}
	var tables []namespaceMounts
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		if places := readMountPlaces("/proc/" + e.Name() + "/mountinfo"); places != nil {
			tables = append(tables, namespaceMounts{pid: pid, places: places})
		}
	}
	return tables
}

// readMountPlaces reads the mount table at path.
func readMountPlaces(path string) []mountPlace {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var places []mountPlace
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for lines.Scan() {
		if m, ok := parseMountPlace(lines.Bytes()); ok {
			places = append(places, m)
		}
	}
	return places
}

// parseMountPlace picks fields 1 to 5 out of a mountinfo line
// (https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html).
func parseMountPlace(line []byte) (mountPlace, bool) {
	fields := bytes.Fields(line)
	if len(fields) < 5 {
		return mountPlace{}, false
	}
	id, err1 := strconv.ParseUint(string(fields[0]), 10, 64)
	parent, err2 := strconv.ParseUint(string(fields[1]), 10, 64)
	major, minor, ok := bytes.Cut(fields[2], []byte(":"))
	maj, err3 := strconv.ParseUint(string(major), 10, 32)
	min, err4 := strconv.ParseUint(string(minor), 10, 32)
	if !ok || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return mountPlace{}, false
	}
	return mountPlace{id, parent, makeFSDev(maj, min), unescapeOctal(fields[3]), unescapeOctal(fields[4])}, true
}

// placeOf returns where the path p, below mount m's point, lies on m's
// file system.
func placeOf(m mountPlace, p string) string {
	return path.Join(m.root, strings.TrimPrefix(p, m.point))
}

// mountsElsewhere returns the mounts of other namespaces' tables that sit
// in, or show a part of, the directory dir of this namespace.
func mountsElsewhere(dir string, tables []namespaceMounts) []string {
	own := readMountPlaces("/proc/self/mountinfo")
	var home mountPlace
	found := false
	for _, m := range own {
		if pathWithin(dir, m.point) && (!found || len(m.point) >= len(home.point)) {
			home, found = m, true
		}
	}
	if !found {
		return nil
	}
	slot := placeOf(home, dir)
	var points []string
	for _, t := range tables {
		byID := make(map[uint64]mountPlace, len(t.places))
		for _, m := range t.places {
			byID[m.id] = m
		}
		for _, m := range t.places {
			parent, ok := byID[m.parent]
			switch {
			case ok && parent.dev == home.dev && m.id != parent.id && pathWithin(placeOf(parent, m.point), slot):
				points = append(points, fmt.Sprintf("%s (in the mount namespace of pid %d)", m.point, t.pid))
			case m.dev == home.dev && pathWithin(m.root, slot):
				points = append(points, fmt.Sprintf("%s, showing %s (in the mount namespace of pid %d)", m.point, path.Join(dir, strings.TrimPrefix(m.root, slot)), t.pid))
			}
		}
	}
	return points
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
