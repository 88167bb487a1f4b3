//go:build !linux

package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// expireEntry removes the entry name, whose record is rec, if it is the
// entry the record was made for, detaching it into the records directory
// first, as on Linux.
func (rd *recoveryDir) expireEntry(name string, rec record, e *Recovery, _ *swarmDir, _ *pruneGuard) (bool, error) {
	info, err := os.Lstat(e.Path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !isRealDir(info) {
		rd.dropStaleRecord(name)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !rec.matches(identityOf(info), info.ModTime()) {
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
// directory and did not finish, unless a running prune holds them; these
// systems have no guard to ask.
func (rd *recoveryDir) finishExpiring(*swarmDir, *pruneGuard) error {
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
