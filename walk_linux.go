//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// A tree is looked through, for the grace period and for its disk use,
// through descriptors, as it is removed: each directory opened relative to
// its parent with openSubdir, which crosses no mount and follows no
// symlink, and each entry described by statx relative to its directory,
// without following it, triggering no automount and answered from the
// kernel's cache (AT_STATX_DONT_SYNC): a mount inside the tree, of a FUSE
// or network file system whose server does not answer, is never asked.

// entryStat is what a walk reads of one entry.
type entryStat struct {
	isDir bool
	// mountRoot says the entry is the root of a mount: a file or
	// directory mounted over one of the tree's.
	mountRoot bool
	mtime     time.Time
	blocks    int64
	nlink     uint64
	id        fileIdentity
}

// The statx fields a walk asks for besides those sys_linux.go names
// (https://man7.org/linux/man-pages/man2/statx.2.html).
const (
	statxMtime  = 0x40
	statxBlocks = 0x400
	statxBtime  = 0x800
	// atNoAutomount keeps statx from mounting what an automount point
	// names, which can wait on a server.
	atNoAutomount = 0x800
	// statxAttrMountRoot is the attribute of a mount's root (Linux 5.8).
	statxAttrMountRoot = 0x2000
)

// errNoMtime says a file system gave no modification time.
var errNoMtime = errors.New("the file system gives no modification time")

// statAt describes the entry name of the directory dirfd, or dirfd itself
// when name is "", without following a symlink. Before Linux 4.11 it
// falls back to fstat on an O_PATH descriptor.
func statAt(dirfd int, name string) (entryStat, error) {
	var buf [256]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return entryStat{}, err
	}
	flags := atSymlinkNofollow | atNoAutomount | atStatxDontSync
	if name == "" {
		flags |= atEmptyPath
	}
	var stx statxT
	err = statx(dirfd, path, flags, statxType|statxNlink|statxInoMask|statxMtime|statxBlocks|statxBtime, &stx)
	if err == nil {
		if stx.mask&statxMtime == 0 {
			return entryStat{}, errNoMtime
		}
		var birth int64
		if stx.mask&statxBtime != 0 {
			birth = stx.btime.sec*int64(time.Second) + int64(stx.btime.nsec)
		}
		return entryStat{
			isDir:     stx.mode&syscall.S_IFMT == syscall.S_IFDIR,
			mountRoot: stx.attributesMask&stx.attributes&statxAttrMountRoot != 0,
			mtime:     time.Unix(stx.mtime.sec, int64(stx.mtime.nsec)),
			blocks:    int64(stx.blocks),
			nlink:     uint64(stx.nlink),
			id:        fileIdentity{dev: stx.dev(), ino: stx.ino, birth: birth},
		}, nil
	}
	if !errors.Is(err, syscall.ENOSYS) {
		return entryStat{}, err
	}
	fd := dirfd
	if name != "" {
		if fd, err = openat(dirfd, path, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0); err != nil {
			return entryStat{}, err
		}
		defer syscall.Close(fd)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return entryStat{}, err
	}
	return entryStat{
		isDir:  st.Mode&syscall.S_IFMT == syscall.S_IFDIR,
		mtime:  modTime(&st),
		blocks: int64(st.Blocks),
		nlink:  uint64(st.Nlink),
		id:     fileIdentity{dev: uint64(st.Dev), ino: st.Ino},
	}, nil
}

// blockSize is the unit of st_blocks.
const blockSize = 512

// walkFD walks the tree under the open directory fd, at path.
func (w *treeWalk) walkFD(fd int, path string) error {
	st, err := statAt(fd, "")
	if err != nil {
		return &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if w.noteStat(st, path) {
		return nil
	}
	return w.dir(fd, path, st.id.dev)
}

func (w *treeWalk) noteStat(st entryStat, path string) bool {
	var linked *fileIdentity
	if !st.isDir && st.nlink > 1 {
		linked = &st.id
	}
	if w.note(st.mtime, st.blocks*blockSize, linked) {
		w.recent = path
		return true
	}
	return false
}

// dir walks the entries of the open directory fd, at path, on device dev.
// Where the walk is strict, anything it cannot look at ends it with an
// error; otherwise that part is passed over.
func (w *treeWalk) dir(fd int, path string, dev uint64) error {
	entries, err := readTreeEntries(fd)
	if err != nil {
		return w.fail(&fs.PathError{Op: "readdirent", Path: path, Err: err})
	}
	for _, e := range entries {
		st, err := statAt(fd, e.name)
		switch {
		case errors.Is(err, syscall.ENOENT):
			continue
		case err != nil:
			if err := w.fail(&fs.PathError{Op: "statx", Path: filepath.Join(path, e.name), Err: err}); err != nil {
				return err
			}
			continue
		}
		if st.mountRoot {
			// What is mounted there is not the tree's: neither its time nor
			// its size counts, and it is not looked into.
			if err := w.fail(&fs.PathError{Op: "statx", Path: filepath.Join(path, e.name), Err: fmt.Errorf("%w, not looked into", errMountPoint)}); err != nil {
				return err
			}
			continue
		}
		if w.noteStat(st, filepath.Join(path, e.name)) {
			return nil
		}
		if !st.isDir {
			continue
		}
		sub, err := openSubdir(fd, e.name, dev)
		if err != nil {
			if errors.Is(err, errMountPoint) {
				err = fmt.Errorf("%w, not looked into", err)
			}
			if err := w.fail(&fs.PathError{Op: "open", Path: filepath.Join(path, e.name), Err: err}); err != nil {
				return err
			}
			continue
		}
		err = w.dir(sub, filepath.Join(path, e.name), dev)
		syscall.Close(sub)
		if err != nil || !w.recentAt.IsZero() {
			return err
		}
	}
	return nil
}

// walkLocked walks the locked tree at name in the swarm directory.
func (sw *swarmDir) walkLocked(l *entryLock, name string, w *treeWalk) error {
	return w.walkFD(l.fd, sw.entryPath(name))
}

// hasWorktree reports whether the locked tree at name holds a worktree: a
// real directory WorktreeDir, not a symlink to one.
func (sw *swarmDir) hasWorktree(l *entryLock, name string) (bool, error) {
	st, err := statAt(l.fd, WorktreeDir)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return false, nil
	case err != nil:
		return false, &fs.PathError{Op: "statx", Path: filepath.Join(sw.entryPath(name), WorktreeDir), Err: err}
	}
	return st.isDir, nil
}

// diskUse returns the disk use of the entry name of the swarm directory;
// what cannot be looked at is passed over.
func (sw *swarmDir) diskUse(name string) (int64, error) {
	dev, err := sw.device()
	if err != nil {
		return 0, err
	}
	fd, err := openSubdir(int(sw.fd), name, dev)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: sw.entryPath(name), Err: err}
	}
	defer syscall.Close(fd)
	var w treeWalk
	err = w.walkFD(fd, sw.entryPath(name))
	return w.bytes, err
}
