//go:build linux

package slotgc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// surveyDir and surveyFile mark, in a survey, what an inode number was
// found as.
const (
	surveyDir uint8 = 1 << iota
	surveyFile
)

// treeSurvey is what a read-only walk of a tree found: the device of its
// top directory and the inode numbers of everything in it, the top
// directory included, each marked with what it was found as.
type treeSurvey struct {
	dev    uint64
	inodes map[uint64]uint8
	// probed says a file's d_ino was compared with its st_ino; statAll,
	// that they differed, so every entry is stat'ed as well.
	probed, statAll bool
}

// uses reports whether any of files is in the surveyed tree: a
// working or root directory that is anything in it, an open or mapped
// file that is a file in it.
func (s treeSurvey) uses(files []inUse) bool {
	for _, f := range files {
		kind := s.inodes[f.ino]
		if kind&surveyFile != 0 || f.dir && kind != 0 {
			return true
		}
	}
	return false
}

// surveyTree walks the tree under the open directory fd and records its
// inodes. It returns an error naming the first directory it cannot open
// or read, and a mount point inside as an error naming it (path is the
// tree's path, for messages). It changes nothing but, for the walk, the
// mode of a directory the caller owns and may not read or search, which it
// sets back.
func surveyTree(fd int, path string) (treeSurvey, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return treeSurvey{}, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	s := treeSurvey{dev: uint64(st.Dev), inodes: map[uint64]uint8{st.Ino: surveyDir}}
	restore := readableForSurvey(fd, &st)
	defer restore()
	return s, s.walk(fd, path, true)
}

// walk records the tree under fd. The slot's own pid file is left out at
// the top: every scan opens it for a moment, and one that happens to be
// reading it does not use the slot.
func (s *treeSurvey) walk(fd int, path string, top bool) error {
	entries, err := readTreeEntries(fd)
	if err != nil {
		return &fs.PathError{Op: "readdirent", Path: path, Err: err}
	}
	for _, e := range entries {
		kind := surveyFile
		if e.isDir {
			kind = surveyDir
		}
		if top && e.name == PIDFile {
			kind = 0
		}
		s.inodes[e.ino] |= kind
		if !e.isDir {
			if err := s.statFile(fd, e, kind, path); err != nil {
				return err
			}
			continue
		}
		if err := s.walkSubdir(fd, e.name, filepath.Join(path, e.name)); err != nil {
			return err
		}
	}
	return nil
}

// statFile records the st_ino of a file where d_ino cannot be trusted
// to be it, and finds that out on the first file met.
func (s *treeSurvey) statFile(dirfd int, e dirEntry, kind uint8, path string) error {
	if s.probed && !s.statAll {
		return nil
	}
	ino, err := statxIno(dirfd, []byte(e.name), atSymlinkNofollow)
	if err != nil {
		return &fs.PathError{Op: "statx", Path: filepath.Join(path, e.name), Err: err}
	}
	if !s.probed {
		s.probed, s.statAll = true, ino != e.ino
	}
	s.inodes[ino] |= kind
	return nil
}

// walkSubdir records the directory name in dirfd and the tree under it.
func (s *treeSurvey) walkSubdir(dirfd int, name, path string) error {
	sub, err := openSubdir(dirfd, name, s.dev)
	if errors.Is(err, syscall.EACCES) {
		var restore func()
		sub, restore, err = openOwnDir(dirfd, name, s.dev)
		if err == nil {
			defer restore()
		}
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(sub)
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(sub, &st) }); err != nil {
		return &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	s.inodes[st.Ino] |= surveyDir
	restore := readableForSurvey(sub, &st)
	defer restore()
	return s.walk(sub, path, false)
}

// readableForSurvey gives the caller read and search permission on the
// open directory fd, whose status is st, if it owns it and lacks them,
// and returns what sets its mode back.
func readableForSurvey(fd int, st *syscall.Stat_t) (restore func()) {
	mode := st.Mode & 0o7777
	if int(st.Uid) != os.Geteuid() || mode&0o500 == 0o500 {
		return func() {}
	}
	if syscall.Fchmod(fd, mode|0o500) != nil {
		return func() {}
	}
	return func() { syscall.Fchmod(fd, mode) }
}

// openOwnDir opens the directory name in dirfd, which the caller may not
// read, if the caller owns it, by giving itself read and search
// permission first through an O_PATH descriptor and its /proc/self/fd
// link, as makeUsableAt does; restore sets the mode back.
func openOwnDir(dirfd int, name string, dev uint64) (fd int, restore func(), err error) {
	path, err := makePath(nil, name)
	if err != nil {
		return -1, nil, err
	}
	ref, err := openat(dirfd, path, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(ref, &st); err != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o500 == 0o500 {
		syscall.Close(ref)
		return -1, nil, syscall.EACCES
	}
	link := "/proc/self/fd/" + strconv.Itoa(ref)
	mode := st.Mode & 0o7777
	if err := syscall.Chmod(link, mode|0o500); err != nil {
		syscall.Close(ref)
		return -1, nil, syscall.EACCES
	}
	restore = func() {
		syscall.Chmod(link, mode)
		syscall.Close(ref)
	}
	fd, err = openSubdir(dirfd, name, dev)
	if err != nil {
		restore()
		return -1, nil, err
	}
	return fd, restore, nil
}
