//go:build !linux

package slotgc

import (
	"io/fs"
	"os"
	"path/filepath"
)

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

// hasWorktree reports whether the tree at name holds a worktree, a real
// directory WorktreeDir.
func (sw *swarmDir) hasWorktree(l *entryLock, name string) (bool, error) {
	wt, err := sw.openWorktree(l, name)
	return wt != nil, err
}
