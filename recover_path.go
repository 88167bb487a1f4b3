//go:build !linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Without descriptor-relative calls on every one of these systems, the
// recovery directory is worked on by path, each step resolving it again,
// as PruneDead works on the swarm directory here (see prune_path.go); a
// name is checked free before a rename takes it, which leaves a moment in
// which an empty directory made under that name could be replaced on
// Unix (Windows never replaces a directory).

// recoveryDir is the recovery directory, checked to be a real directory.
type recoveryDir struct {
	path string
	info fs.FileInfo
}

// errNotRealDir says a directory slotgc keeps is a symlink or no
// directory at all.
var errNotRealDir = errors.New("not a directory, or a symlink or reparse point, which is never followed")

// isRealDir reports whether info describes a directory that is no symlink,
// junction or other reparse point.
func isRealDir(info fs.FileInfo) bool {
	return info.IsDir() && info.Mode()&(fs.ModeSymlink|fs.ModeIrregular) == 0
}

// openDirPath checks that path is a real directory, making it with mode
// first when it is missing and create is set.
func openDirPath(path string, create bool, mode fs.FileMode) (fs.FileInfo, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := os.Mkdir(path, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		info, err = os.Lstat(path)
	}
	if err != nil {
		return nil, err
	}
	if !isRealDir(info) {
		return nil, &fs.PathError{Op: "open", Path: path, Err: errNotRealDir}
	}
	return info, nil
}

// openRecoveryDir finds the recovery directory of the state directory
// stateDir, making it (mode 0700) when it is missing and create is set; a
// missing one otherwise yields nil, nil.
func openRecoveryDir(stateDir string, create bool) (*recoveryDir, error) {
	path := filepath.Join(stateDir, recoveryName)
	info, err := openDirPath(path, create, recoveryDirMode)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &recoveryDir{path: path, info: info}, nil
}

func (rd *recoveryDir) close() {}

// entries returns the real directories of the recovery directory but the
// records directory.
func (rd *recoveryDir) entries() ([]entryInfo, error) {
	dirEntries, err := os.ReadDir(rd.path)
	if err != nil {
		return nil, err
	}
	infos := make([]entryInfo, 0, len(dirEntries))
	for _, e := range dirEntries {
		if e.Name() == recordDirName {
			continue
		}
		if info, err := os.Lstat(filepath.Join(rd.path, e.Name())); err == nil && isRealDir(info) {
			infos = append(infos, entryInfo{name: e.Name(), modTime: info.ModTime(), id: identityOf(info)})
		}
	}
	return infos, nil
}

// identity returns the identity and modification time of the entry name.
func (rd *recoveryDir) identity(name string) (fileIdentity, time.Time, error) {
	info, err := os.Lstat(filepath.Join(rd.path, name))
	if err != nil {
		return fileIdentity{}, time.Time{}, err
	}
	if !isRealDir(info) {
		return fileIdentity{}, time.Time{}, errNotRealDir
	}
	return identityOf(info), info.ModTime(), nil
}

// measure returns the disk use of the entry name; what cannot be looked
// at is passed over.
func (rd *recoveryDir) measure(name string) int64 {
	var w treeWalk
	w.walkPath(filepath.Join(rd.path, name))
	return w.bytes
}

// sameFileSystem tells whether a worktree in the tree at name in the
// swarm directory can be renamed into the recovery directory, where the
// system tells devices apart; elsewhere only the rename tells.
func (rd *recoveryDir) sameFileSystem(sw *swarmDir, _ *entryLock, name string) error {
	info, err := os.Lstat(sw.entryPath(name))
	if err != nil {
		return err
	}
	if !sameDevice(info, rd.info) {
		return fmt.Errorf("it is on another file system than %s, and a worktree is only ever renamed, never copied", sw.entryPath(name))
	}
	return nil
}

// worktree is a slot's worktree directory, found by path.
type worktree struct {
	id fileIdentity
}

// openWorktree finds the worktree of the tree at name; nil, nil when it
// has none, or only a symlink, junction or file of that name.
func (sw *swarmDir) openWorktree(_ *entryLock, name string) (*worktree, error) {
	info, err := os.Lstat(filepath.Join(sw.entryPath(name), WorktreeDir))
	if errors.Is(err, fs.ErrNotExist) || err == nil && !isRealDir(info) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &worktree{id: identityOf(info)}, nil
}

func (wt *worktree) close() {}

// touch sets the moved worktree's times to now; best effort, as on Linux.
func (wt *worktree) touch(rd *recoveryDir, name string, now time.Time) {
	os.Chtimes(filepath.Join(rd.path, name), now, now)
}

// moveIn renames the worktree of the tree at trash into the recovery
// directory as name; a name taken is fs.ErrExist.
func (rd *recoveryDir) moveIn(sw *swarmDir, _ *entryLock, trash, name string) error {
	to := filepath.Join(rd.path, name)
	if _, err := os.Lstat(to); err == nil {
		return fs.ErrExist
	}
	return renameDir(filepath.Join(sw.entryPath(trash), WorktreeDir), to)
}

// restoreInto moves the entry name back into the swarm directory as the
// worktree of a new, half-built slot, as on Linux.
func (rd *recoveryDir) restoreInto(sw *swarmDir, name, slot string) error {
	slotPath := sw.entryPath(slot)
	if err := os.Mkdir(slotPath, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; restore refuses to touch a slot that is there: %w", slotPath, fs.ErrExist)
		}
		return err
	}
	entryPath := filepath.Join(rd.path, name)
	unlock, err := lockDir(entryPath, name)
	if err != nil {
		os.Remove(slotPath)
		if errors.Is(err, errBusy) {
			return fmt.Errorf("%s: a prune is removing it", entryPath)
		}
		return err
	}
	defer unlock()
	if err := renameDir(entryPath, filepath.Join(slotPath, WorktreeDir)); err != nil {
		os.Remove(slotPath)
		return err
	}
	rd.dropRecord(name)
	return nil
}
