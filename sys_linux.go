//go:build linux

package slotgc

import (
	"bytes"
	"runtime"
	"syscall"
	"unsafe"
)

// Every raw system call the package makes on Linux is wrapped here, once:
// those the syscall package lacks (openat2, renameat2, the pidfd calls),
// and those whose syscall wrappers copy a string path to the heap on every
// call (openat, unlinkat, readlinkat), which a scan would pay for per
// slot. Paths are passed as sysPath, built in the caller's buffer.

// sysNumbers are the numbers of the system calls the syscall package does
// not name.
type sysNumbers struct {
	renameat2, statx, pidfdSendSignal, pidfdOpen, openat2 uintptr
}

// sysno holds them for this architecture; a zero number is one this table
// does not know, and the wrapper answers ENOSYS rather than call it. The
// calls added since Linux 5.1 are numbered alike on every architecture
// but MIPS, whose ABIs count from 4000 (o32) and 5000 (n64)
// (https://man7.org/linux/man-pages/man2/syscall.2.html); renameat2 is
// and statx are older and numbered apart on each.
var sysno = map[string]sysNumbers{
	"386":      {renameat2: 353, statx: 383, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"amd64":    {renameat2: 316, statx: 332, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"arm":      {renameat2: 382, statx: 397, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"arm64":    {renameat2: 276, statx: 291, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"loong64":  {renameat2: 276, statx: 291, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"mips":     {renameat2: 4351, statx: 4366, pidfdSendSignal: 4424, pidfdOpen: 4434, openat2: 4437},
	"mipsle":   {renameat2: 4351, statx: 4366, pidfdSendSignal: 4424, pidfdOpen: 4434, openat2: 4437},
	"mips64":   {renameat2: 5311, statx: 5326, pidfdSendSignal: 5424, pidfdOpen: 5434, openat2: 5437},
	"mips64le": {renameat2: 5311, statx: 5326, pidfdSendSignal: 5424, pidfdOpen: 5434, openat2: 5437},
	"ppc64":    {renameat2: 357, statx: 383, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"ppc64le":  {renameat2: 357, statx: 383, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"riscv64":  {renameat2: 276, statx: 291, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
	"s390x":    {renameat2: 347, statx: 379, pidfdSendSignal: 424, pidfdOpen: 434, openat2: 437},
}[runtime.GOARCH]

const (
	// atFDCWD makes a path relative to the working directory; for an
	// absolute one it does not matter.
	atFDCWD = -0x64
	// atRemoveDir makes unlinkat remove a directory.
	atRemoveDir = 0x200
	// oPath is O_PATH, which the syscall package does not name: a
	// descriptor that locates a file without opening it for reading.
	oPath = 0x200000
	// renameNoReplace makes renameat2 fail with EEXIST rather than replace.
	renameNoReplace = 1
)

// sysPath is a NUL-terminated path for the wrappers here.
type sysPath []byte

// makePath joins parts into a NUL-terminated path in buf, which a caller
// may keep on its stack so that nothing is allocated (the path outgrows it
// onto the heap if it must). A part holding a NUL cannot be passed to the
// kernel: EINVAL, as the syscall package answers.
func makePath[S ~string | ~[]byte](buf []byte, parts ...S) (sysPath, error) {
	p := buf[:0]
	for _, part := range parts {
		start := len(p)
		p = append(p, part...)
		if bytes.IndexByte(p[start:], 0) >= 0 {
			return nil, syscall.EINVAL
		}
	}
	return append(p, 0), nil
}

// errnoErr turns a raw call's errno into an error, nil for success.
func errnoErr(errno syscall.Errno) error {
	if errno != 0 {
		return errno
	}
	return nil
}

// openat is openat(2); mode matters only with O_CREAT.
func openat(dirfd int, path sysPath, flags int, mode uint32) (int, error) {
	for {
		fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags), uintptr(mode), 0, 0)
		if errno != syscall.EINTR {
			return int(fd), errnoErr(errno)
		}
	}
}

// openHow is openat2's struct open_how.
type openHow struct {
	flags   uint64
	mode    uint64
	resolve uint64
}

// The resolve flags of openat2 (https://man7.org/linux/man-pages/man2/openat2.2.html).
const (
	// resolveNoXdev refuses to cross a mount point, bind mounts included.
	resolveNoXdev = 0x01
	// resolveNoMagiclinks refuses /proc's magic links.
	resolveNoMagiclinks = 0x02
	// resolveNoSymlinks refuses any symlink on the way.
	resolveNoSymlinks = 0x04
	// resolveBeneath keeps ".." inside.
	resolveBeneath = 0x08
)

// openat2 is openat2(2), available from Linux 5.6.
func openat2(dirfd int, path sysPath, how *openHow) (int, error) {
	if sysno.openat2 == 0 {
		return -1, syscall.ENOSYS
	}
	for {
		fd, _, errno := syscall.Syscall6(sysno.openat2, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(how)), unsafe.Sizeof(*how), 0, 0)
		if errno != syscall.EINTR && errno != syscall.EAGAIN {
			return int(fd), errnoErr(errno)
		}
	}
}

// unlinkat is unlinkat(2).
func unlinkat(dirfd int, path sysPath, flags int) error {
	for {
		_, _, errno := syscall.Syscall(syscall.SYS_UNLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags))
		if errno != syscall.EINTR {
			return errnoErr(errno)
		}
	}
}

// renameat2 is renameat2(2), available from Linux 3.15.
func renameat2(olddirfd int, oldpath sysPath, newdirfd int, newpath sysPath, flags uint) error {
	if sysno.renameat2 == 0 {
		return syscall.ENOSYS
	}
	for {
		_, _, errno := syscall.Syscall6(sysno.renameat2, uintptr(olddirfd), uintptr(unsafe.Pointer(&oldpath[0])), uintptr(newdirfd), uintptr(unsafe.Pointer(&newpath[0])), uintptr(flags), 0)
		if errno != syscall.EINTR {
			return errnoErr(errno)
		}
	}
}

// statxT is struct statx, as far as the fields read here and padded to
// the size the kernel may fill
// (https://man7.org/linux/man-pages/man2/statx.2.html).
type statxT struct {
	mask, blksize                     uint32
	attributes                        uint64
	nlink, uid, gid                   uint32
	mode                              uint16
	_                                 uint16
	ino, size, blocks, attributesMask uint64
	atime, btime, ctime, mtime        statxTimestamp
	rdevMajor, rdevMinor              uint32
	devMajor, devMinor                uint32
	mntID                             uint64
	_                                 [13]uint64
}

// dev returns the device number of the file, encoded as stat(2) encodes
// it (new_encode_dev), so that it compares with what fstat gives.
func (st *statxT) dev() uint64 {
	return uint64(st.devMinor&0xff) | uint64(st.devMajor)<<8 | uint64(st.devMinor&^0xff)<<12
}

// statxTimestamp is struct statx_timestamp.
type statxTimestamp struct {
	sec  int64
	nsec uint32
	_    int32
}

const (
	// atSymlinkNofollow makes statx describe a symlink itself.
	atSymlinkNofollow = 0x100
	// atEmptyPath makes statx describe dirfd itself, given an empty path.
	atEmptyPath = 0x1000
	// atStatxDontSync makes statx answer from what the kernel has cached,
	// never asking a network or FUSE file system's server: a stalled one
	// cannot hang the call.
	atStatxDontSync = 0x4000
	// statxType, statxNlink and statxInoMask ask for the file type, the
	// link count and the inode number.
	statxType    = 0x1
	statxNlink   = 0x4
	statxInoMask = 0x100
)

// statx is statx(2), available from Linux 4.11.
func statx(dirfd int, path sysPath, flags int, mask uint32, st *statxT) error {
	if sysno.statx == 0 {
		return syscall.ENOSYS
	}
	for {
		_, _, errno := syscall.Syscall6(sysno.statx, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags), uintptr(mask), uintptr(unsafe.Pointer(st)), 0)
		if errno != syscall.EINTR {
			return errnoErr(errno)
		}
	}
}

// readlinkat is readlinkat(2); it returns how much of buf it filled, and
// cuts a longer link short.
func readlinkat(dirfd int, path sysPath, buf []byte) (int, error) {
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
		if errno != syscall.EINTR {
			return int(n), errnoErr(errno)
		}
	}
}

// ioctl is ioctl(2) with a pointer argument.
func ioctl(fd int, request uintptr, arg unsafe.Pointer) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), request, uintptr(arg))
	return errnoErr(errno)
}

// pidfdOpen is pidfd_open(2), available from Linux 5.3.
func pidfdOpen(pid int) (uintptr, error) {
	if sysno.pidfdOpen == 0 {
		return 0, syscall.ENOSYS
	}
	fd, _, errno := syscall.Syscall(sysno.pidfdOpen, uintptr(pid), 0, 0)
	return fd, errnoErr(errno)
}

// pidfdSendSignal is pidfd_send_signal(2).
func pidfdSendSignal(pidfd uintptr, sig syscall.Signal) error {
	_, _, errno := syscall.Syscall6(sysno.pidfdSendSignal, pidfd, uintptr(sig), 0, 0, 0, 0)
	return errnoErr(errno)
}

// clockGettime is clock_gettime(2).
func clockGettime(clock int, ts *syscall.Timespec) error {
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(ts)), 0)
	return errnoErr(errno)
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// pollIn asks poll(2) whether a descriptor is readable.
const pollIn = 0x1

// ppoll is ppoll(2) with no signal mask; it returns how many descriptors
// are ready.
func ppoll(fds []pollFd, timeout *syscall.Timespec) (int, error) {
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(timeout)), 0, 0, 0)
	return int(n), errnoErr(errno)
}
