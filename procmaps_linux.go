//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// mappings appends the files mapped by the process or thread whose /proc
// directory is dir, and reports whether it has memory at all: a kernel
// thread has none, nor does a process that has exited or whose main
// thread has.
func (r *procReader) mappings(dir procDir, files []inUse) ([]inUse, bool, error) {
	fd, err := openat(dir.fd, []byte("maps\x00"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, false, dir.error("open", "maps", err)
	}
	defer syscall.Close(fd)
	if !noMapQuery.Load() {
		queried, mapped, err := r.queryMappings(fd, files)
		if err == nil {
			return queried, mapped, nil
		}
		// Whatever the query could not answer, the text may: it is read
		// instead, from the start, and fails for itself if it must.
		if errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EINVAL) {
			noMapQuery.Store(true)
		}
	}
	mapped := false
	err = readLines(fd, r.lines, func(line []byte) {
		mapped = true
		if dev, ino, ok := parseMapsLine(line); ok && ino != 0 {
			files = r.appendMapping(files, dev, ino)
		}
	})
	if err != nil {
		return files, false, dir.error("read", "maps", err)
	}
	return files, mapped, nil
}

// appendMapping appends a mapping of inode ino on device dev, if it may be
// on the target.
func (r *procReader) appendMapping(files []inUse, dev fsDev, ino uint64) []inUse {
	if !r.target.keepsMapping(dev) {
		return files
	}
	// A file is mapped in several pieces, one after another.
	if n := len(files); n > 0 && files[n-1] == (inUse{ino: ino}) {
		return files
	}
	return append(files, inUse{ino: ino})
}

// noMapQuery is set once PROCMAP_QUERY is found missing (Linux before
// 6.11); from then on maps are read as text.
var noMapQuery atomic.Bool

// procmapQuery is struct procmap_query of linux/fs.h (Linux 6.11).
type procmapQuery struct {
	size, flags, addr, vmaStart, vmaEnd, vmaFlags, pageSize, offset, inode uint64
	devMajor, devMinor, nameSize, buildIDSize                              uint32
	nameAddr, buildIDAddr                                                  uint64
}

const (
	// procmapQueryIoctl is PROCMAP_QUERY, _IOWR('f', 17, struct
	// procmap_query): the same number on every architecture.
	procmapQueryIoctl = 0xC0686611
	// The query asks for the first file-backed mapping at or after an
	// address.
	procmapCoveringOrNext = 0x10
	procmapFileBacked     = 0x20
)

// queryMappings appends the files mapped by the process whose maps file
// is open as fd, asking for them one by one with the PROCMAP_QUERY ioctl
// (https://docs.kernel.org/filesystems/proc.html, /proc/PID/maps), which
// skips anonymous memory and makes no text: it costs half the reading of
// the text. It reports whether the process has memory at all (ESRCH
// says it has none).
func (r *procReader) queryMappings(fd int, files []inUse) ([]inUse, bool, error) {
	var next uint64
	for {
		q := procmapQuery{size: uint64(unsafe.Sizeof(procmapQuery{})), flags: procmapCoveringOrNext | procmapFileBacked, addr: next}
		err := ioctl(fd, procmapQueryIoctl, unsafe.Pointer(&q))
		switch {
		case err == nil:
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOENT):
			return files, true, nil
		case errors.Is(err, syscall.ESRCH):
			return files, false, nil
		default:
			return files, false, err
		}
		if q.inode != 0 {
			files = r.appendMapping(files, makeFSDev(uint64(q.devMajor), uint64(q.devMinor)), q.inode)
		}
		if q.vmaEnd <= next {
			return files, true, errors.New("PROCMAP_QUERY went backwards")
		}
		next = q.vmaEnd
	}
}

// parseMapsLine picks the device and inode (fields 4 and 5) out of a
// /proc/<pid>/maps line: "start-end perms offset major:minor inode path",
// the device in hexadecimal.
func parseMapsLine(line []byte) (fsDev, uint64, bool) {
	for range 3 {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			return 0, 0, false
		}
		line = line[i+1:]
	}
	dev, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return 0, 0, false
	}
	major, minor, ok := bytes.Cut(dev, []byte(":"))
	if !ok {
		return 0, 0, false
	}
	ino, _, _ := bytes.Cut(rest, []byte(" "))
	maj, ok1 := parseHex(major)
	min, ok2 := parseHex(minor)
	n, ok3 := parseDecimal(ino)
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, false
	}
	return makeFSDev(maj, min), n, true
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}
