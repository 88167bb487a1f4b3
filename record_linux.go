//go:build linux

package slotgc

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
)

// records opens the records directory, making it if asked; a missing one
// otherwise is an error wrapping syscall.ENOENT.
func (rd *recoveryDir) records(create bool) (int, error) {
	if rd.recordFd < 0 {
		path := filepath.Join(rd.path, recordDirName)
		fd, err := openDirAt(rd.fd, recordDirName, create, recordDirMode)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			syscall.Close(fd)
			return -1, &fs.PathError{Op: "fstat", Path: path, Err: err}
		}
		if err := trustedRecordDir(int(st.Uid), st.Mode); err != nil {
			syscall.Close(fd)
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		rd.recordFd = fd
	}
	return rd.recordFd, nil
}

// readRecord reads the record of the entry name; none is an error
// wrapping fs.ErrNotExist.
func (rd *recoveryDir) readRecord(name string) (record, error) {
	dirfd, err := rd.records(false)
	if err != nil {
		return record{}, err
	}
	path, err := makePath(nil, name)
	if err != nil {
		return record{}, err
	}
	fd, err := openat(dirfd, path, pidFileFlags, 0)
	if err != nil {
		return record{}, &fs.PathError{Op: "open", Path: rd.recordPath(name), Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return record{}, errBadRecord
	}
	var buf [maxRecordSize]byte
	n, err := readFD(fd, buf[:])
	if err != nil {
		return record{}, &fs.PathError{Op: "read", Path: rd.recordPath(name), Err: err}
	}
	return parseRecord(buf[:n])
}

func (rd *recoveryDir) recordPath(name string) string {
	return filepath.Join(rd.path, recordDirName, name)
}

// recordNames returns the names of the records, a name per entry slotgc
// made; none when there is no records directory.
func (rd *recoveryDir) recordNames() ([]string, error) {
	dirfd, err := rd.records(false)
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := readTreeEntries(dirfd)
	if err != nil {
		return nil, &fs.PathError{Op: "getdents64", Path: filepath.Join(rd.path, recordDirName), Err: err}
	}
	var names []string
	for _, e := range entries {
		if !e.isDir && !isTrashName(e.name) {
			names = append(names, e.name)
		}
	}
	return names, nil
}

// writeRecord records that slotgc makes the entry name, before the entry
// is there: a name already recorded is fs.ErrExist. The record stays
// locked until release, so that no expiry takes it for a stale one while
// its entry is being made.
func (rd *recoveryDir) writeRecord(name string, rec record) (release func(), err error) {
	dirfd, err := rd.records(true)
	if err != nil {
		return nil, err
	}
	path, err := makePath(nil, name)
	if err != nil {
		return nil, err
	}
	fd, err := openat(dirfd, path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, syscall.EEXIST) {
		return nil, fs.ErrExist
	}
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: rd.recordPath(name), Err: err}
	}
	lockExclusive(fd)
	content := rec.encode()
	for len(content) > 0 && err == nil {
		var n int
		n, err = syscall.Write(fd, content)
		if errors.Is(err, syscall.EINTR) {
			err = nil
		}
		content = content[n:]
	}
	if err != nil {
		unlinkat(dirfd, path, 0)
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "write", Path: rd.recordPath(name), Err: err}
	}
	return func() { syscall.Close(fd) }, nil
}

// dropRecord removes the record of the entry name.
func (rd *recoveryDir) dropRecord(name string) {
	if dirfd, err := rd.records(false); err == nil {
		if path, err := makePath(nil, name); err == nil {
			unlinkat(dirfd, path, 0)
		}
	}
}

// dropStaleRecord removes the record of the entry name, which is not
// there, unless a prune holds it: that prune is making the entry.
func (rd *recoveryDir) dropStaleRecord(name string) {
	dirfd, err := rd.records(false)
	if err != nil {
		return
	}
	path, err := makePath(nil, name)
	if err != nil {
		return
	}
	fd, err := openat(dirfd, path, pidFileFlags, 0)
	if err != nil {
		return
	}
	defer syscall.Close(fd)
	if lockExclusive(fd) == nil {
		unlinkat(dirfd, path, 0)
	}
}
