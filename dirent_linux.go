//go:build linux

package slotgc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"syscall"
)

// Directories are read with getdents64(2) and the records parsed here,
// allocating nothing per entry but its name; the os package allocates a
// DirEntry per entry besides. The swarm directory and the trees PruneDead
// walks are read alike.

// dirEntry is an entry of a directory: its name, its inode number as the
// directory record gives it, and whether it is a real directory (not a
// symlink to one).
type dirEntry struct {
	name  string
	ino   uint64
	isDir bool
}

// readSwarmEntries reads the swarm directory, just opened, with a buffer
// that holds a swarm of several hundred slots in one system call.
func readSwarmEntries(sw *swarmDir) ([]dirEntry, error) {
	var buf [32 << 10]byte
	entries, err := readDir(int(sw.fd), buf[:])
	if err != nil {
		return nil, &fs.PathError{Op: "getdents64", Path: sw.path, Err: err}
	}
	return entries, nil
}

// readTreeEntries reads a directory of a tree being walked, from its
// start: the offset is rewound first, so a directory walked twice (the
// survey, then the removal) is seen whole both times.
func readTreeEntries(fd int) ([]dirEntry, error) {
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var buf [8 << 10]byte
	return readDir(fd, buf[:])
}

// readDir reads the entries of the open directory fd, a buffer at a time;
// the caller's buffer may sit on its stack. An entry whose type the file
// system did not record (DT_UNKNOWN) is looked at through fd.
func readDir(fd int, buf []byte) ([]dirEntry, error) {
	var entries []dirEntry
	for {
		n, err := getdents(fd, buf)
		switch {
		case err != nil:
			return nil, err
		case n <= 0:
			return entries, nil
		}
		if entries, err = appendDirents(entries, buf[:n], fd); err != nil {
			return nil, err
		}
	}
}

// getdents reads the next records of the open directory fd into buf,
// again if a signal interrupts it, and returns how many bytes it filled:
// 0 at the end.
func getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

var errDirent = errors.New("malformed directory record")

// Types of linux_dirent64 records (d_type).
const (
	dtUnknown = 0
	dtDir     = 4
)

// appendDirents appends the entries of the linux_dirent64 records in buf,
// read from the open directory dirfd.
func appendDirents(entries []dirEntry, buf []byte, dirfd int) ([]dirEntry, error) {
	err := walkDirents(buf, func(name string, ino uint64, typ byte) {
		e := dirEntry{name: name, ino: ino, isDir: typ == dtDir}
		if typ == dtUnknown {
			e.isDir = isDirAt(dirfd, name)
		}
		entries = append(entries, e)
	})
	return entries, err
}

// walkDirents calls each for every linux_dirent64 record in buf
// (https://man7.org/linux/man-pages/man2/getdents.2.html) but "." and "..",
// with its name, inode number and type. The name is passed as a string, a
// copy: a slice of buf would make buf escape to the heap through each.
func walkDirents(buf []byte, each func(name string, ino uint64, typ byte)) error {
	for len(buf) > 0 {
		name, ino, typ, rest, err := nextDirent(buf)
		if err != nil {
			return err
		}
		buf = rest
		if name != nil {
			each(string(name), ino, typ)
		}
	}
	return nil
}

// nextDirent parses the first linux_dirent64 record of buf, returning its
// name (a slice of buf, nil for "." and ".."), inode number and type, and
// the records after it.
func nextDirent(buf []byte) (name []byte, ino uint64, typ byte, rest []byte, err error) {
	const (
		reclenOffset = 16 // after d_ino and d_off, 8 bytes each
		typeOffset   = 18
		nameOffset   = 19
	)
	if len(buf) < nameOffset {
		return nil, 0, 0, nil, errDirent
	}
	reclen := int(binary.NativeEndian.Uint16(buf[reclenOffset:]))
	if reclen <= nameOffset || reclen > len(buf) {
		return nil, 0, 0, nil, errDirent
	}
	record := buf[:reclen]
	name = record[nameOffset:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if len(name) == 0 || string(name) == "." || string(name) == ".." {
		name = nil
	}
	return name, binary.NativeEndian.Uint64(record), record[typeOffset], buf[reclen:], nil
}

// isDirAt reports whether name in the directory dirfd is a directory, not
// following a symlink. statx answers from the kernel's cache
// (AT_STATX_DONT_SYNC), so an entry that is a mount point of a stalled
// network or FUSE file system cannot hang it; before Linux 4.11 the answer
// comes from fstat on an O_PATH descriptor.
func isDirAt(dirfd int, name string) bool {
	var buf [256]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return false
	}
	var stx statxT
	err = statx(dirfd, path, atSymlinkNofollow|atStatxDontSync, statxType, &stx)
	if err == nil {
		return stx.mode&syscall.S_IFMT == syscall.S_IFDIR
	}
	if !errors.Is(err, syscall.ENOSYS) {
		return false
	}
	fd, err := openat(dirfd, path, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	return syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR
}
