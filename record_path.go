//go:build !linux

package slotgc

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

func (rd *recoveryDir) recordDir() string { return filepath.Join(rd.path, recordDirName) }

func (rd *recoveryDir) recordPath(name string) string { return filepath.Join(rd.recordDir(), name) }

// checkRecords checks that the records directory may be trusted (see
// recordDirTrusted); a missing one is an error wrapping fs.ErrNotExist.
func (rd *recoveryDir) checkRecords() error {
	info, err := os.Lstat(rd.recordDir())
	if err != nil {
		return err
	}
	if !isRealDir(info) {
		return &fs.PathError{Op: "open", Path: rd.recordDir(), Err: errNotRealDir}
	}
	if err := recordDirTrusted(info); err != nil {
		return &fs.PathError{Op: "open", Path: rd.recordDir(), Err: err}
	}
	return nil
}

// readRecord reads the record of the entry name; none is an error
// wrapping fs.ErrNotExist.
func (rd *recoveryDir) readRecord(name string) (record, error) {
	if err := rd.checkRecords(); err != nil {
		return record{}, err
	}
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
	err := rd.checkRecords()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dirEntries, err := os.ReadDir(rd.recordDir())
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
	if err := rd.checkRecords(); err != nil {
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
