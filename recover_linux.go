//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

// The recovery directory is worked on as the swarm directory is: through
// the descriptor opened first, every name below it resolved relative to
// it, no symlink followed. Worktrees are moved in and out by renameat2
// with RENAME_NOREPLACE, from and to descriptors, so no path is walked
// again. Entries, and the trees an expiry detached, are flock(2)ed while
// one call works on them, so an expiry and a Restore never share one.

// recoveryDir is an open recovery directory.
type recoveryDir struct {
	path string
	fd   int
	dev  uint64
	// recordFd is the records directory, -1 until opened.
	recordFd int
}

// openRecoveryDir opens the recovery directory of the state directory
// stateDir, making it (mode 0700) when it is missing and create is set; a
// missing one otherwise yields nil, nil. The state directory's path is
// the operator's to choose, and is followed; the recovery directory
// itself must be a real directory, never a symlink.
func openRecoveryDir(stateDir string, create bool) (*recoveryDir, error) {
	path := filepath.Join(stateDir, recoveryName)
	var stateFd int
	err := ignoringEINTR(func() (err error) {
		stateFd, err = syscall.Open(stateDir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) && !create {
			return nil, nil
		}
		return nil, &fs.PathError{Op: "open", Path: stateDir, Err: err}
	}
	defer syscall.Close(stateFd)
	fd, err := openDirAt(stateFd, recoveryName, create, recoveryDirMode)
	switch {
	case errors.Is(err, syscall.ENOENT) && !create:
		return nil, nil
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	dev, _, err := dirIdentity(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	return &recoveryDir{path: path, fd: fd, dev: dev, recordFd: -1}, nil
}

// errNotRealDir says a directory slotgc keeps is a symlink or no
// directory at all.
var errNotRealDir = errors.New("not a directory, or a symlink, which is never followed")

// openDirAt opens the directory name in dirfd without following a
// symlink, making it with mode first when it is missing and create is
// set.
func openDirAt(dirfd int, name string, create bool, mode uint32) (int, error) {
	path, err := makePath(nil, name)
	if err != nil {
		return -1, err
	}
	fd, err := openat(dirfd, path, dirFlags, 0)
	if errors.Is(err, syscall.ENOENT) && create {
		if err := syscall.Mkdirat(dirfd, name, mode); err != nil && !errors.Is(err, syscall.EEXIST) {
			return -1, err
		}
		fd, err = openat(dirfd, path, dirFlags, 0)
	}
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return -1, fmt.Errorf("%w: %w", errNotRealDir, err)
	}
	return fd, err
}

func (rd *recoveryDir) close() {
	syscall.Close(rd.fd)
	if rd.recordFd >= 0 {
		syscall.Close(rd.recordFd)
	}
}

// entries returns the real directories of the recovery directory but the
// records directory.
func (rd *recoveryDir) entries() ([]entryInfo, error) {
	entries, err := readTreeEntries(rd.fd)
	if err != nil {
		return nil, &fs.PathError{Op: "getdents64", Path: rd.path, Err: err}
	}
	infos := make([]entryInfo, 0, len(entries))
	for _, e := range entries {
		if !e.isDir || e.name == recordDirName {
			continue
		}
		if st, err := statAt(rd.fd, e.name); err == nil && st.isDir {
			infos = append(infos, entryInfo{name: e.name, modTime: st.mtime, id: st.id})
		}
	}
	return infos, nil
}

// identity returns the identity and modification time of the entry name.
func (rd *recoveryDir) identity(name string) (fileIdentity, time.Time, error) {
	st, err := statAt(rd.fd, name)
	if err == nil && !st.isDir {
		err = errNotRealDir
	}
	return st.id, st.mtime, err
}

// measure returns the disk use of the entry name; what cannot be looked
// at is passed over.
func (rd *recoveryDir) measure(name string) int64 {
	fd, err := openSubdir(rd.fd, name, rd.dev)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	var w treeWalk
	w.walkFD(fd, filepath.Join(rd.path, name))
	return w.bytes
}

// sameFileSystem tells whether a worktree in the locked tree at name in
// the swarm directory can be renamed into the recovery directory: it
// refuses another device. (Another mount of the same file system shows
// only when the rename fails.)
func (rd *recoveryDir) sameFileSystem(sw *swarmDir, l *entryLock, name string) error {
	dev, _, err := dirIdentity(l.fd)
	if err != nil {
		return &fs.PathError{Op: "fstat", Path: sw.entryPath(name), Err: err}
	}
	if dev != rd.dev {
		return fmt.Errorf("it is on another file system than %s, and a worktree is only ever renamed, never copied", sw.entryPath(name))
	}
	return nil
}

// worktree is a slot's worktree directory, open while it is moved.
type worktree struct {
	fd int
	id fileIdentity
}

// openWorktree opens the worktree of the locked tree at name; nil, nil
// when it has none, or only a symlink or file of that name.
func (sw *swarmDir) openWorktree(l *entryLock, name string) (*worktree, error) {
	dev, _, err := dirIdentity(l.fd)
	if err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: sw.entryPath(name), Err: err}
	}
	fd, err := openSubdir(l.fd, WorktreeDir, dev)
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		return nil, nil
	case errors.Is(err, errMountPoint):
		return nil, mountInsideError([]string{filepath.Join(sw.entryPath(name), WorktreeDir)})
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(sw.entryPath(name), WorktreeDir), Err: err}
	}
	st, err := statAt(fd, "")
	if err != nil {
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "statx", Path: filepath.Join(sw.entryPath(name), WorktreeDir), Err: err}
	}
	return &worktree{fd: fd, id: st.id}, nil
}

func (wt *worktree) close() { syscall.Close(wt.fd) }

// touch sets the moved worktree's times to now. It is best effort: an
// entry left with its old time is still whole, only perhaps not the one
// bones apply picks first.
func (wt *worktree) touch(_ *recoveryDir, _ string, now time.Time) {
	// utimensat(2) with no path changes the file fd names: no /proc needed,
	// no name resolved.
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(now.UnixNano()), syscall.NsecToTimespec(now.UnixNano())}
	syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(wt.fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
}

// moveIn renames the worktree of the locked tree at trash into the
// recovery directory as name, never replacing an entry there: a name
// taken is fs.ErrExist.
func (rd *recoveryDir) moveIn(sw *swarmDir, l *entryLock, trash, name string) error {
	err := renameExclusive(l.fd, WorktreeDir, rd.fd, name)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return fs.ErrExist
	case errors.Is(err, syscall.EXDEV):
		return fmt.Errorf("it is on another mount than %s, and a worktree is only ever renamed, never copied: %w",
			sw.entryPath(trash), &fs.PathError{Op: "renameat2", Path: filepath.Join(rd.path, name), Err: err})
	}
	return &fs.PathError{Op: "renameat2", Path: filepath.Join(rd.path, name), Err: err}
}

// restoreInto moves the entry name back into the swarm directory as the
// worktree of a new, half-built slot: the slot's directory is made (and
// must not exist), then the entry renamed into it. Anything failing leaves
// the entry where it was and removes the directory made.
func (rd *recoveryDir) restoreInto(sw *swarmDir, name, slot string) error {
	dev, err := sw.device()
	if err != nil {
		return err
	}
	slotPath, err := makePath(nil, slot)
	if err != nil {
		return err
	}
	if err := syscall.Mkdirat(int(sw.fd), slot, 0o755); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("%s exists; restore refuses to touch a slot that is there: %w", sw.entryPath(slot), fs.ErrExist)
		}
		return &fs.PathError{Op: "mkdirat", Path: sw.entryPath(slot), Err: err}
	}
	done := false
	defer func() {
		if !done {
			unlinkat(int(sw.fd), slotPath, atRemoveDir)
		}
	}()
	slotFd, err := openSubdir(int(sw.fd), slot, dev)
	if err != nil {
		return &fs.PathError{Op: "open", Path: sw.entryPath(slot), Err: err}
	}
	defer syscall.Close(slotFd)
	entryPath := filepath.Join(rd.path, name)
	entryFd, err := openSubdir(rd.fd, name, rd.dev)
	if err != nil {
		return &fs.PathError{Op: "open", Path: entryPath, Err: err}
	}
	defer syscall.Close(entryFd)
	if err := lockExclusive(entryFd); err != nil {
		if errors.Is(err, errBusy) {
			return fmt.Errorf("%s: a prune is removing it", entryPath)
		}
		return lockError(entryPath, err)
	}
	err = renameExclusive(rd.fd, name, slotFd, WorktreeDir)
	if errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("%s is on another file system or mount than %s, and a worktree is only ever renamed, never copied: %w",
			entryPath, sw.path, &fs.PathError{Op: "renameat2", Path: entryPath, Err: err})
	}
	if err != nil {
		return &fs.PathError{Op: "renameat2", Path: entryPath, Err: err}
	}
	done = true
	rd.dropRecord(name)
	return nil
}
