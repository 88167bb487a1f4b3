package slotgc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// fuseLKFlock, in a lock request's lk_flags, says the lock is a flock(2)
// one, not fcntl's.
const fuseLKFlock = 1 << 0

// INIT flags: the kernel hands POSIX (fcntl) and BSD (flock) locks of a
// file to the server.
const (
	fusePosixLocks = 1 << 1
	fuseFlockLocks = 1 << 10
)

const (
	fuseInHeaderSize  = 40
	fuseOutHeaderSize = 16
	fuseMajor         = 7
	// fuseNewestMinor is the newest minor version whose reply layouts this
	// server writes; it answers INIT with the older of this and the
	// kernel's.
	fuseNewestMinor = 38
	fuseMaxWrite    = 4096
	// fuseReadBuffer must hold the largest request the kernel may send, or
	// the read fails with EINVAL: at least 8 KiB, and a write request's
	// header and max_write bytes of data.
	fuseReadBuffer = 64 << 10
)

// fuseMountData is the mount data that hands the kernel the open /dev/fuse
// descriptor. allow_other lets the processes of every user reach the
// mount, so that a stall catches a slotgc call of any user, where without
// it the others would get EACCES at once.
func fuseMountData(fd int) string {
	return fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,allow_other", fd, os.Getuid(), os.Getgid())
}

// errFUSEUnavailable says this system, or this process, cannot have a FUSE
// mount: no /dev/fuse, no permission, or no fuse file system type.
var errFUSEUnavailable = errors.New("unavailable")

// runFUSEServer mounts fsys on mountPoint and answers the kernel until the
// connection ends (ENODEV: unmounted or aborted). ready is called once
// INIT is answered, when the mount can be used.
func runFUSEServer(mountPoint string, fsys *fuseFS, ready func()) error {
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: open /dev/fuse: %w", errFUSEUnavailable, err)
	}
	// Only this process may hold the descriptor: its death must end the
	// connection, and so release whoever waits on it.
	defer syscall.Close(fd)
	if err := syscall.Mount("slotgc-test", mountPoint, "fuse", syscall.MS_NOSUID|syscall.MS_NODEV, fuseMountData(fd)); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENODEV) {
			return fmt.Errorf("%w: mount fuse on %s: %w", errFUSEUnavailable, mountPoint, err)
		}
		return fmt.Errorf("mount fuse on %s: %w", mountPoint, err)
	}
	buf := make([]byte, fuseReadBuffer)
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case errors.Is(err, syscall.ENODEV):
			return nil
		// ENOENT: the request was interrupted before it could be read.
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ENOENT):
			continue
		case err != nil:
			return fmt.Errorf("read /dev/fuse: %w", err)
		case n < fuseInHeaderSize:
			return fmt.Errorf("read /dev/fuse: a request of %d bytes", n)
		}
		opcode := binary.NativeEndian.Uint32(buf[4:])
		fsys.count(buf[:n])
		reply := fsys.answer(buf[:n])
		if reply == nil {
			continue
		}
		if _, err := syscall.Write(fd, reply); err != nil && !errors.Is(err, syscall.ENOENT) {
			// ENOENT: the request was interrupted or aborted meanwhile.
			// Anything else means this server wrote a bad reply.
			return fmt.Errorf("reply to opcode %d: %w", opcode, err)
		}
		if opcode == fuseInit && ready != nil {
			ready()
			ready = nil
		}
	}
}

// answer returns the reply to one request, or nil for the requests that
// take none.
func (fsys *fuseFS) answer(req []byte) []byte {
	ne := binary.NativeEndian
	opcode := ne.Uint32(req[4:])
	unique := ne.Uint64(req[8:])
	id := ne.Uint64(req[16:])
	body := req[fuseInHeaderSize:]
	node, known := fsys.nodes[id]
	if !known && opcode != fuseInit && opcode != fuseForget && opcode != fuseBatchForget && opcode != fuseInterrupt {
		return fuseReply(unique, syscall.ENOENT, nil)
	}
	if slices.Contains(fuseChanges, fuseOpNames[opcode]) {
		return fuseReply(unique, syscall.EROFS, nil)
	}
	switch opcode {
	case fuseInit:
		return fuseReply(unique, 0, fsys.initOut(body))
	case fuseForget, fuseBatchForget:
		// Nothing is counted, so nothing is forgotten.
		return nil
	case fuseInterrupt:
		// Every request is answered at once anyway; an interrupt asks for
		// no answer of its own.
		return nil
	case fuseLookup:
		name := cString(body)
		for _, childID := range fsys.children(id) {
			if fsys.nodes[childID].name == name && fsys.current(childID) {
				return fuseReply(unique, 0, fsys.entryOut(childID))
			}
		}
		return fuseReply(unique, syscall.ENOENT, nil)
	case fuseGetattr:
		out := ne.AppendUint64(nil, 0) // attr_valid: 0 s, so no stat is answered from the cache
		out = ne.AppendUint32(out, 0)  // attr_valid_nsec
		out = ne.AppendUint32(out, 0)  // dummy
		return fuseReply(unique, 0, fsys.appendAttr(out, id))
	case fuseOpen, fuseOpendir:
		if (opcode == fuseOpendir) != (node.mode&syscall.S_IFMT == syscall.S_IFDIR) {
			return fuseReply(unique, syscall.EISDIR, nil)
		}
		if flags := ne.Uint32(body); flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
			return fuseReply(unique, syscall.EROFS, nil)
		}
		out := ne.AppendUint64(nil, 0) // fh
		out = ne.AppendUint32(out, 0)  // open_flags
		out = ne.AppendUint32(out, 0)  // padding
		return fuseReply(unique, 0, out)
	case fuseRead:
		offset, size := ne.Uint64(body[8:]), uint64(ne.Uint32(body[16:]))
		data := node.data[min(offset, uint64(len(node.data))):]
		return fuseReply(unique, 0, []byte(data[:min(size, uint64(len(data)))]))
	case fuseReaddir:
		if fsys.read != nil {
			fsys.read[id] = true
		}
		return fuseReply(unique, 0, fsys.dirents(id, ne.Uint64(body[8:]), int(ne.Uint32(body[16:]))))
	case fuseAccess, fuseFlush, fuseRelease, fuseReleasedir:
		return fuseReply(unique, 0, nil)
	case fuseGetlk:
		// struct fuse_lk_out: no lock is in the way of the one asked
		// about.
		out := ne.AppendUint64(nil, 0)              // start
		out = ne.AppendUint64(out, 0)               // end
		out = ne.AppendUint32(out, syscall.F_UNLCK) // type
		return fuseReply(unique, 0, ne.AppendUint32(out, 0))
	case fuseSetlk, fuseSetlkw:
		if fsys.lockErr != 0 {
			return fuseReply(unique, fsys.lockErr, nil)
		}
		return fuseReply(unique, syscall.ENOSYS, nil)
	case fuseStatfs:
		var out []byte
		for range 5 { // blocks, bfree, bavail, files, ffree
			out = ne.AppendUint64(out, 0)
		}
		out = ne.AppendUint32(out, 4096) // bsize
		out = ne.AppendUint32(out, 255)  // namelen
		out = ne.AppendUint32(out, 4096) // frsize
		out = append(out, make([]byte, 4+6*4)...)
		return fuseReply(unique, 0, out)
	default:
		return fuseReply(unique, syscall.ENOSYS, nil)
	}
}

// fuseReply frames a reply; an error reply carries no body.
func fuseReply(unique uint64, errno syscall.Errno, body []byte) []byte {
	ne := binary.NativeEndian
	out := ne.AppendUint32(nil, uint32(fuseOutHeaderSize+len(body)))
	out = ne.AppendUint32(out, uint32(-int32(errno)))
	out = ne.AppendUint64(out, unique)
	return append(out, body...)
}

// initOut answers the kernel's INIT: the same major version, the older
// minor, and no optional features but the lock ones, where the file
// system refuses locks and the kernel offers them.
func (fsys *fuseFS) initOut(in []byte) []byte {
	ne := binary.NativeEndian
	minor := min(ne.Uint32(in[4:]), fuseNewestMinor)
	var flags uint32
	if fsys.lockErr != 0 {
		flags = ne.Uint32(in[12:]) & (fusePosixLocks | fuseFlockLocks)
	}
	out := ne.AppendUint32(nil, fuseMajor)
	out = ne.AppendUint32(out, minor)
	out = ne.AppendUint32(out, ne.Uint32(in[8:])) // max_readahead, as offered
	out = ne.AppendUint32(out, flags)             // flags
	out = ne.AppendUint16(out, 0)                 // max_background
	out = ne.AppendUint16(out, 0)                 // congestion_threshold
	out = ne.AppendUint32(out, fuseMaxWrite)
	out = ne.AppendUint32(out, 1) // time_gran, ns
	out = ne.AppendUint16(out, 0) // max_pages
	out = ne.AppendUint16(out, 0) // map_alignment
	out = ne.AppendUint32(out, 0) // flags2
	return append(out, make([]byte, 7*4)...)
}

// entryOut answers a LOOKUP that found id.
func (fsys *fuseFS) entryOut(id uint64) []byte {
	ne := binary.NativeEndian
	out := ne.AppendUint64(nil, id)
	out = ne.AppendUint64(out, 1) // generation
	out = ne.AppendUint64(out, 0) // entry_valid: 0 s, so every walk asks again
	out = ne.AppendUint64(out, 0) // attr_valid
	out = ne.AppendUint32(out, 0) // entry_valid_nsec
	out = ne.AppendUint32(out, 0) // attr_valid_nsec
	return fsys.appendAttr(out, id)
}

// appendAttr appends struct fuse_attr for node id, owned by root.
func (fsys *fuseFS) appendAttr(out []byte, id uint64) []byte {
	ne := binary.NativeEndian
	node := fsys.nodes[id]
	nlink := uint32(1)
	if node.mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	out = ne.AppendUint64(out, id)                     // ino
	out = ne.AppendUint64(out, uint64(len(node.data))) // size
	out = ne.AppendUint64(out, 0)                      // blocks
	for range 3 {                                      // atime, mtime, ctime
		out = ne.AppendUint64(out, uint64(fsys.time.Unix()))
	}
	for range 3 { // their nanoseconds
		out = ne.AppendUint32(out, uint32(fsys.time.Nanosecond()))
	}
	out = ne.AppendUint32(out, node.mode)
	out = ne.AppendUint32(out, nlink)
	out = ne.AppendUint32(out, 0)    // uid
	out = ne.AppendUint32(out, 0)    // gid
	out = ne.AppendUint32(out, 0)    // rdev
	out = ne.AppendUint32(out, 4096) // blksize
	return ne.AppendUint32(out, 0)   // flags
}

// dirents answers a READDIR of directory id from entry offset on, in at
// most size bytes. Each entry's offset field is where the next read
// resumes.
func (fsys *fuseFS) dirents(id, offset uint64, size int) []byte {
	ne := binary.NativeEndian
	type entry struct {
		ino  uint64
		name string
		mode uint32
	}
	entries := []entry{{id, ".", syscall.S_IFDIR}, {max(fsys.nodes[id].parent, fuseRootID), "..", syscall.S_IFDIR}}
	for _, childID := range fsys.children(id) {
		entries = append(entries, entry{childID, fsys.nodes[childID].name, fsys.nodes[childID].mode})
	}
	var out []byte
	for i := offset; i < uint64(len(entries)); i++ {
		e := entries[i]
		reclen := (24 + len(e.name) + 7) &^ 7
		if len(out)+reclen > size {
			break
		}
		rec := ne.AppendUint64(nil, e.ino)
		rec = ne.AppendUint64(rec, i+1)
		rec = ne.AppendUint32(rec, uint32(len(e.name)))
		rec = ne.AppendUint32(rec, e.mode>>12) // the DT_ type
		rec = append(rec, e.name...)
		out = append(out, rec...)
		out = append(out, make([]byte, reclen-len(rec))...)
	}
	return out
}

// cString returns the NUL-terminated string at the start of b.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// The fuse-serve helper mounts the test file system on the directory
// SLOTGC_TEST_ARG names, says "ready" once the kernel's INIT is answered,
// and serves until the connection ends or it is killed. The test stops it
// with SIGSTOP to make the mount hang.
//
// The fuse-tree helper does the same with the tree its arguments give: an
// errno to refuse every lock with (0: locks stay the kernel's), then pairs
// of a file's path and its content. Both print a line of the requests
// read so far (see reportRequests) on each SIGUSR1.
var (
	_ = registerHelper("fuse-serve", func() { serveFUSE("fuse-serve", fuseTestFS()) })
	_ = registerHelper("fuse-tree", func() {
		fsys, err := fuseTreeFSFromArgs(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "fuse-tree:", err)
			os.Exit(2)
		}
		serveFUSE("fuse-tree", fsys)
	})
)

// serveFUSE is the fuse-serve and fuse-tree helpers' work once fsys is
// made; it exits when the connection ends.
func serveFUSE(mode string, fsys *fuseFS) {
	report := make(chan os.Signal, 1)
	signal.Notify(report, syscall.SIGUSR1)
	go func() {
		for range report {
			fsys.reportRequests(os.Stdout)
		}
	}()
	err := runFUSEServer(os.Getenv(helperArgEnv), fsys, func() { fmt.Println("ready") })
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, errFUSEUnavailable):
		// Said on stdout, where the test waits for "ready", so that it
		// can skip rather than fail.
		fmt.Println(err)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", mode, err)
	}
	os.Exit(2)
}
