package slotgc

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A FUSE file system small enough to serve from a helper child of the test
// binary, spoken straight over /dev/fuse, so that a test can make a mount
// whose server stops answering. The structures are those of the kernel's
// include/uapi/linux/fuse.h, in the machine's byte order. Every reply says
// its names and attributes may be cached for no time at all: so each stat,
// and each path walk through the mount, goes to the server, and once the
// server stops, every one of them waits.
//
// The server serves a fuseFS: the tree of fuseTestFS, or any other.

const (
	fuseFileName    = "f"
	fuseSubName     = "sub"
	fuseFileContent = "served by the slotgc test FUSE server\n"
)

// Node ids of fuseTestFS's tree; the root's is fixed by the protocol.
const (
	fuseRootID = 1
	fuseFileID = 2
	fuseSubID  = 3
)

type fuseNode struct {
	parent uint64
	name   string
	mode   uint32
	data   string
}

// fuseFS is a file system the server serves: a tree of nodes by id. It
// is read-only: every request to change it is answered EROFS.
type fuseFS struct {
	nodes map[uint64]fuseNode
	// time is every node's access, modification and change time.
	time time.Time
	// lockErr, where not zero, has INIT ask for POSIX and BSD locks
	// (FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS), so that the kernel hands the
	// server every fcntl and flock lock of a file, and refuses each with
	// this error, as an NFS server may; the kernel finds no lock in the
	// way (GETLK) all the same. Zero leaves locks to the kernel.
	lockErr syscall.Errno

	// replaced, where not nil, maps a directory to the one that takes its
	// name once the first has been read, as if the first were renamed
	// away and another made under its name while a walk was on: lookups
	// find the second from then on, and both stay listed under the name.
	// read holds the directories read so far.
	replaced map[uint64]uint64
	read     map[uint64]bool

	mu       sync.Mutex
	requests map[string]int // the requests read, by the names count gives
}

// fuseTestFS is the tree the fuse-serve helper serves: the root, a regular
// file fuseFileName holding fuseFileContent, and an empty directory
// fuseSubName.
func fuseTestFS() *fuseFS {
	return &fuseFS{
		nodes: map[uint64]fuseNode{
			fuseRootID: {0, "", syscall.S_IFDIR | 0o755, ""},
			fuseFileID: {fuseRootID, fuseFileName, syscall.S_IFREG | 0o644, fuseFileContent},
			fuseSubID:  {fuseRootID, fuseSubName, syscall.S_IFDIR | 0o755, ""},
		},
		time:     time.Now(),
		requests: make(map[string]int),
	}
}

// fuseTreeFS returns a file system holding the regular files that files
// names by their slash-separated paths from the root, with their
// contents, and the directories on their way; lockErr is its fuseFS field.
func fuseTreeFS(files map[string]string, lockErr syscall.Errno) *fuseFS {
	fsys := &fuseFS{
		nodes:    map[uint64]fuseNode{fuseRootID: {0, "", syscall.S_IFDIR | 0o755, ""}},
		time:     time.Now(),
		lockErr:  lockErr,
		requests: make(map[string]int),
	}
	dirs := map[string]uint64{"": fuseRootID}
	next := uint64(fuseRootID + 1)
	for _, path := range slices.Sorted(maps.Keys(files)) {
		parent, dir := uint64(fuseRootID), ""
		names := strings.Split(path, "/")
		for _, name := range names[:len(names)-1] {
			dir += "/" + name
			id, ok := dirs[dir]
			if !ok {
				id, next = next, next+1
				dirs[dir] = id
				fsys.nodes[id] = fuseNode{parent, name, syscall.S_IFDIR | 0o755, ""}
			}
			parent = id
		}
		fsys.nodes[next] = fuseNode{parent, names[len(names)-1], syscall.S_IFREG | 0o644, files[path]}
		next++
	}
	return fsys
}

// Opcodes of the requests the server answers, or takes without an answer.
const (
	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseOpen        = 14
	fuseRead        = 15
	fuseStatfs      = 17
	fuseRelease     = 18
	fuseFlush       = 25
	fuseInit        = 26
	fuseOpendir     = 27
	fuseReaddir     = 28
	fuseReleasedir  = 29
	fuseGetlk       = 31
	fuseSetlk       = 32
	fuseSetlkw      = 33
	fuseAccess      = 34
	fuseInterrupt   = 36
	fuseBatchForget = 42
)

// fuseOpNames names the opcodes of the requests the server counts.
var fuseOpNames = map[uint32]string{
	fuseLookup: "LOOKUP", fuseForget: "FORGET", fuseGetattr: "GETATTR", 4: "SETATTR",
	5: "READLINK", 6: "SYMLINK", 8: "MKNOD", 9: "MKDIR", 10: "UNLINK", 11: "RMDIR",
	12: "RENAME", 13: "LINK", fuseOpen: "OPEN", fuseRead: "READ", 16: "WRITE",
	fuseStatfs: "STATFS", fuseRelease: "RELEASE", 20: "FSYNC", 21: "SETXATTR",
	22: "GETXATTR", 23: "LISTXATTR", 24: "REMOVEXATTR", fuseFlush: "FLUSH",
	fuseInit: "INIT", fuseOpendir: "OPENDIR", fuseReaddir: "READDIR",
	fuseReleasedir: "RELEASEDIR", 30: "FSYNCDIR", fuseGetlk: "GETLK",
	fuseSetlk: "SETLK", fuseSetlkw: "SETLKW", fuseAccess: "ACCESS", 35: "CREATE",
	fuseInterrupt: "INTERRUPT", 39: "IOCTL", fuseBatchForget: "BATCH_FORGET",
	43: "FALLOCATE", 44: "READDIRPLUS", 45: "RENAME2", 46: "LSEEK",
	47: "COPY_FILE_RANGE", 50: "SYNCFS", 51: "TMPFILE", 52: "STATX",
}

// fuseChanges are the requests that would change a file system, by
// their names in fuseOpNames. The server refuses every one.
var fuseChanges = []string{
	"SETATTR", "SYMLINK", "MKNOD", "MKDIR", "UNLINK", "RMDIR", "RENAME", "LINK",
	"WRITE", "SETXATTR", "REMOVEXATTR", "CREATE", "FALLOCATE", "RENAME2",
	"COPY_FILE_RANGE", "TMPFILE",
}

// children returns the ids of the directory id's entries, in order.
// current reports whether the node id is the one a lookup of its name
// finds (see fuseFS.replaced).
func (fsys *fuseFS) current(id uint64) bool {
	for first, second := range fsys.replaced {
		switch id {
		case first:
			return !fsys.read[first]
		case second:
			return fsys.read[first]
		}
	}
	return true
}

func (fsys *fuseFS) children(id uint64) []uint64 {
	var ids []uint64
	for childID, n := range fsys.nodes {
		if n.parent == id && childID != fuseRootID {
			ids = append(ids, childID)
		}
	}
	slices.Sort(ids)
	return ids
}

// count counts the request req under its name: its opcode's, and for a
// lock request of flock(2), that with "/flock" after it.
func (fsys *fuseFS) count(req []byte) {
	ne := binary.NativeEndian
	opcode := ne.Uint32(req[4:])
	name, ok := fuseOpNames[opcode]
	if !ok {
		name = "OP" + strconv.FormatUint(uint64(opcode), 10)
	}
	// struct fuse_lk_in: fh, owner, the lock (24 bytes), then lk_flags.
	const lkFlagsOffset = fuseInHeaderSize + 40
	if (opcode == fuseGetlk || opcode == fuseSetlk || opcode == fuseSetlkw) &&
		len(req) >= lkFlagsOffset+4 && ne.Uint32(req[lkFlagsOffset:])&fuseLKFlock != 0 {
		name += "/flock"
	}
	fsys.mu.Lock()
	fsys.requests[name]++
	fsys.mu.Unlock()
}

// reportRequests writes one line to w: "requests", then NAME=count for
// each kind of request read so far, sorted by name.
func (fsys *fuseFS) reportRequests(w io.Writer) {
	fsys.mu.Lock()
	line := "requests"
	for _, name := range slices.Sorted(maps.Keys(fsys.requests)) {
		line += fmt.Sprintf(" %s=%d", name, fsys.requests[name])
	}
	fsys.mu.Unlock()
	fmt.Fprintln(w, line)
}

// fuseTreeFSFromArgs makes the fuse-tree helper's file system from its
// arguments.
func fuseTreeFSFromArgs(args []string) (*fuseFS, error) {
	if len(args)%2 != 1 {
		return nil, fmt.Errorf("arguments %q: want an errno, then pairs of a path and a content", args)
	}
	errno, err := strconv.ParseUint(args[0], 10, 16)
	if err != nil {
		return nil, err
	}
	files := make(map[string]string)
	for i := 1; i < len(args); i += 2 {
		files[args[i]] = args[i+1]
	}
	return fuseTreeFS(files, syscall.Errno(errno)), nil
}
