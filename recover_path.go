//go:build !linux

package slotgc

import (
	"errors"
	"fmt"
	"io"
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

func (rd *recoveryDir) recordDir() string { return filepath.Join(rd.path, recordDirName) }

func (rd *recoveryDir) recordPath(name string) string { return filepath.Join(rd.recordDir(), name) }

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

// readRecord reads the record of the entry name; none is an error
// wrapping fs.ErrNotExist.
func (rd *recoveryDir) readRecord(name string) (record, error) {
	path := rd.recordPath(name)
	info, err := os.Lstat(path)
	if err != nil {
		return record{}, err
	}
	if !info.Mode().IsRegular() {
		return record{}, errBadRecord
	}
	f, err := os.Open(path)
	if err != nil {
		return record{}, err
	}
	defer f.Close()
	content, err := io.ReadAll(io.LimitReader(f, maxRecordSize))
	if err != nil {
		return record{}, err
	}
	return parseRecord(content)
}

// recordNames returns the names of the records; none when there is no
// records directory.
func (rd *recoveryDir) recordNames() ([]string, error) {
	dirEntries, err := os.ReadDir(rd.recordDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range dirEntries {
		if !e.IsDir() && !isTrashName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// writeRecord records that slotgc makes the entry name, before the entry
// is there: a name already recorded is fs.ErrExist. The record stays held
// until release (see holdRecord), so that no expiry takes it for a stale
// one while its entry is being made.
func (rd *recoveryDir) writeRecord(name string, rec record) (release func(), err error) {
	if _, err := openDirPath(rd.recordDir(), true, recordDirMode); err != nil {
		return nil, err
	}
	path := rd.recordPath(name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	holdRecord(f)
	if _, err := f.Write(rec.encode()); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return func() { f.Close() }, nil
}

// dropRecord removes the record of the entry name.
func (rd *recoveryDir) dropRecord(name string) { os.Remove(rd.recordPath(name)) }

// dropStaleRecord removes the record of the entry name, which is not
// there, unless a prune holds it: that prune is making the entry.
func (rd *recoveryDir) dropStaleRecord(name string) {
	f, err := os.Open(rd.recordPath(name))
	if err != nil {
		return
	}
	held := holdRecord(f) != nil
	f.Close()
	if !held {
		// On Windows a held record refuses to go: its maker shares no
		// delete access.
		os.Remove(rd.recordPath(name))
	}
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

// hasWorktree reports whether the tree at name holds a worktree, a real
// directory WorktreeDir.
func (sw *swarmDir) hasWorktree(l *entryLock, name string) (bool, error) {
	wt, err := sw.openWorktree(l, name)
	return wt != nil, err
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

// expireEntry removes the entry name, whose record is rec, if it is the
// entry the record was made for, detaching it into the records directory
// first, as on Linux.
func (rd *recoveryDir) expireEntry(name string, rec record, e *Recovery) (bool, error) {
	info, err := os.Lstat(e.Path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !isRealDir(info) {
		rd.dropStaleRecord(name)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !rec.matches(identityOf(info)) {
		rd.dropStaleRecord(name)
		return false, nil
	}
	unlock, err := lockDir(e.Path, name)
	if err != nil {
		if errors.Is(err, errBusy) {
			return false, nil
		}
		return false, err
	}
	defer unlock()
	e.ModTime = info.ModTime()
	e.Bytes = rd.measure(name)
	// Windows reads a file's identity lazily, by the path it was found
	// at, which the rename takes away: read it now (see lockEntry).
	os.SameFile(info, info)
	trash := filepath.Join(rd.recordDir(), trashName("expire."))
	if err := renameDir(e.Path, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if moved, err := os.Lstat(trash); err != nil || !os.SameFile(moved, info) {
		renameDir(trash, e.Path)
		return false, fmt.Errorf("%s changed while it was being expired; left in place", e.Path)
	}
	rd.dropRecord(name)
	if err := removeTree(trash, info); err != nil {
		return false, fmt.Errorf("remove %s, detached from %s (the next prune retries): %w", trash, e.Path, err)
	}
	return true, nil
}

// finishExpiring removes the trees an expiry detached into the records
// directory and did not finish, unless a running prune holds them.
func (rd *recoveryDir) finishExpiring() error {
	dirEntries, err := os.ReadDir(rd.recordDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range dirEntries {
		if !e.IsDir() || !isTrashName(e.Name()) {
			continue
		}
		path := filepath.Join(rd.recordDir(), e.Name())
		info, err := os.Lstat(path)
		if err != nil || !isRealDir(info) {
			continue
		}
		unlock, err := lockDir(path, e.Name())
		if err != nil {
			continue
		}
		if err := removeTree(path, info); err != nil {
			errs = append(errs, err)
		}
		unlock()
	}
	return errors.Join(errs...)
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

// walkPath walks the tree at top, never following a symlink, junction or
// other reparse point, and never descending into a directory on another
// device than top's, where the system tells devices apart.
func (w *treeWalk) walkPath(top string) error {
	topInfo, err := os.Lstat(top)
	if err != nil {
		return err
	}
	if w.noteInfo(topInfo) {
		w.recent = top
		return nil
	}
	return filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if err := w.fail(err); err != nil {
				return err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if path == top {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return w.fail(err)
		}
		if w.noteInfo(info) {
			w.recent = path
			return fs.SkipAll
		}
		if !d.IsDir() {
			return nil
		}
		if d.Type()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
			return fs.SkipDir
		}
		if !sameDevice(info, topInfo) {
			if err := w.fail(mountInsideError([]string{path})); err != nil {
				return err
			}
			return fs.SkipDir
		}
		return nil
	})
}

func (w *treeWalk) noteInfo(info fs.FileInfo) bool {
	bytes, linked := diskBytes(info)
	return w.note(info.ModTime(), bytes, linked)
}

// walkLocked walks the tree at name in the swarm directory.
func (sw *swarmDir) walkLocked(_ *entryLock, name string, w *treeWalk) error {
	return w.walkPath(sw.entryPath(name))
}

// diskUse returns the disk use of the entry name of the swarm directory;
// what cannot be looked at is passed over.
func (sw *swarmDir) diskUse(name string) (int64, error) {
	info, err := os.Lstat(sw.entryPath(name))
	if err != nil {
		return 0, err
	}
	if !isRealDir(info) {
		return 0, &fs.PathError{Op: "open", Path: sw.entryPath(name), Err: errNotRealDir}
	}
	var w treeWalk
	err = w.walkPath(sw.entryPath(name))
	return w.bytes, err
}
