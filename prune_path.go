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

// Without openat2, renameat2 and unlinkat in the standard library on every
// one of these systems, PruneDead resolves paths below the swarm directory
// again for each step. It removes a tree with a walk of its own rather than
// os.RemoveAll, which, on Windows, opens a directory it could not delete
// as a file by following it (os/removeall_at.go, rootOpenDir): through a
// junction into its target. The walk removes every symlink, junction and
// other reparse point as a link, and never descends into one.

// pruneGuard is empty: nothing is shared between the slots of one call.
type pruneGuard struct{}

// entryLock is an entry of the swarm directory, a real directory, held so
// that no other PruneDead works on it at once; see lockDir.
type entryLock struct {
	info   fs.FileInfo
	unlock func()
}

// lockEntry locks the entry name, which must be a real directory: anything
// else reads as fs.ErrNotExist.
func (sw *swarmDir) lockEntry(name string) (*entryLock, error) {
	path := filepath.Join(sw.path, name)
	info, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() || info.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return nil, fs.ErrNotExist
	}
	unlock, err := lockDir(path, name)
	if err != nil {
		return nil, err
	}
	// Windows reads a file's identity lazily, by the path it was found at,
	// which the rename that detaches the tree takes away: read it now.
	os.SameFile(info, info)
	return &entryLock{info: info, unlock: unlock}, nil
}

func (l *entryLock) release() { l.unlock() }

// is reports whether the entry name of the swarm directory is the locked
// directory.
func (l *entryLock) is(sw *swarmDir, name string) bool {
	info, err := os.Lstat(filepath.Join(sw.path, name))
	return err == nil && os.SameFile(info, l.info)
}

func (sw *swarmDir) renameEntry(from, to string) error {
	return renameDir(filepath.Join(sw.path, from), filepath.Join(sw.path, to))
}

// restoreEntry renames a detached tree back to its slot name unless the
// name is taken. Between the check and the rename a new empty directory of
// that name could be replaced on Unix; Windows never replaces a directory.
func (sw *swarmDir) restoreEntry(from, to string) error {
	if _, err := os.Lstat(filepath.Join(sw.path, to)); err == nil {
		return fs.ErrExist
	}
	return sw.renameEntry(from, to)
}

// check refuses to let the tree at name go while a mount point is inside
// it, told by a change of device where the system gives one. Like
// removeTree, it never descends into a symlink or reparse point (on
// Windows a junction reads as a directory).
func (guard *pruneGuard) check(sw *swarmDir, _ *entryLock, name string) error {
	top := filepath.Join(sw.path, name)
	topInfo, err := os.Lstat(top)
	if err != nil {
		return err
	}
	var points []string
	err = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil || !d.IsDir():
			return nil
		case d.Type()&(fs.ModeSymlink|fs.ModeIrregular) != 0:
			return fs.SkipDir
		}
		if info, err := d.Info(); err == nil && !sameDevice(info, topInfo) {
			points = append(points, path)
			return fs.SkipDir
		}
		return nil
	})
	if len(points) > 0 {
		return mountInsideError(points)
	}
	return err
}

// removeLocked removes the tree at name. Its pid file goes last, and only
// once everything else has gone: a pruner that crashes or fails midway
// leaves a tree whose pid file still tells that it is garbage.
func (sw *swarmDir) removeLocked(l *entryLock, name string) error {
	top := sw.entryPath(name)
	if held := firstHeld(top); held != "" {
		return fmt.Errorf("%w: %s is open", ErrInUse, held)
	}
	entries, err := os.ReadDir(top)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != PIDFile {
			if err := removeTree(filepath.Join(top, e.Name()), l.info); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := removeTree(filepath.Join(top, PIDFile), l.info); err != nil {
		return err
	}
	return os.Remove(top)
}

// holdsNoFiles reports whether the tree at name holds nothing but
// directories; a symlink or reparse point counts as a file. A directory
// that cannot be read is an error: it cannot tell.
func (sw *swarmDir) holdsNoFiles(_ *entryLock, name string) (bool, error) {
	empty := true
	err := filepath.WalkDir(sw.entryPath(name), func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case !d.IsDir() || d.Type()&(fs.ModeSymlink|fs.ModeIrregular) != 0:
			empty = false
			return filepath.SkipAll
		}
		return nil
	})
	return empty && err == nil, err
}

// removeTree removes the tree at path, depth first. A symlink, junction or
// other reparse point is removed as a link and never descended into; a
// directory on another device than top (the tree's top directory) is a
// mount point, and refused with everything above it. A directory the
// caller owns but may not read or write is made usable first.
func removeTree(path string, top fs.FileInfo) error {
	info, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if info.IsDir() && info.Mode()&(fs.ModeSymlink|fs.ModeIrregular) == 0 {
		if !sameDevice(info, top) {
			return mountInsideError([]string{path})
		}
		makeDirUsable(path, info)
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		var errs []error
		for _, e := range entries {
			if err := removeTree(filepath.Join(path, e.Name()), top); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return os.Remove(path)
}

// users finds none: these systems give no view of the files a process
// uses.
func (*pruneGuard) users(*swarmDir, string) ([]Process, error) { return nil, nil }

// usesEntry is false: these systems give no view of the files a process
// uses.
func (sw *swarmDir) usesEntry(string, int) bool { return false }

// fileClockOffset makes a file in the swarm directory and returns how far
// the time the file system stamped on it is from this clock's reading just
// before.
func (sw *swarmDir) fileClockOffset() (time.Duration, error) {
	path := filepath.Join(sw.path, clockProbeName())
	before := time.Now().Round(0)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	// Held until its name is gone, so no other PruneDead takes it for a
	// crashed one's (see removeStaleProbe).
	holdProbe(f)
	defer dropProbe(f, path)
	if testHookClockProbe != nil {
		testHookClockProbe(path)
	}
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.ModTime().Sub(before), nil
}
