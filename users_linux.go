//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A process uses a slot when its working directory or root directory is
// in the slot's tree, or it holds a file of the tree open. An open
// directory does not count: directories are held open only while something
// walks a tree, and every PruneDead holds the tree it works on so; counting
// them would have concurrent PruneDead calls keep each other's slots. Nor
// does the slot's pid file, which every scan opens for a moment. That is read
// from /proc/<pid>/cwd, /root and /fd/*, which stat(2) follows to the very
// file even for a process in another mount namespace, whose paths mean
// nothing here; so files are compared by device and inode, never by path.
// The links of another user's process cannot be read without privilege
// (https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html): such a
// process is passed over.

// fileID is a file's identity: its device and inode numbers.
type fileID struct{ dev, ino uint64 }

// procFiles is what one process has in use: its working and root
// directories and its open files.
type procFiles struct {
	pid   int
	files []fileID
}

// statID returns the identity of the file path names, following symlinks
// (and so /proc's magic links), and whether it is a directory.
func statID(path string) (id fileID, isDir, ok bool) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Stat(path, &st) }); err != nil {
		return fileID{}, false, false
	}
	return fileID{uint64(st.Dev), st.Ino}, st.Mode&syscall.S_IFMT == syscall.S_IFDIR, true
}

// readProcFiles returns the files that process pid uses and are on device
// dev: only those can be in a slot's tree.
func readProcFiles(pid int, dev uint64) []fileID {
	dir := "/proc/" + strconv.Itoa(pid)
	var files []fileID
	for _, link := range [...]string{"/cwd", "/root"} {
		if id, _, ok := statID(dir + link); ok && id.dev == dev {
			files = append(files, id)
		}
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return files
	}
	for _, fd := range fds {
		if id, isDir, ok := statID(dir + "/fd/" + fd.Name()); ok && !isDir && id.dev == dev {
			files = append(files, id)
		}
	}
	return files
}

// snapshotProcesses reads, once, the files every process this one may
// inspect uses on device dev.
func snapshotProcesses(dev uint64) []procFiles {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var procs []procFiles
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid < 1 {
			continue
		}
		if files := readProcFiles(pid, dev); len(files) > 0 {
			procs = append(procs, procFiles{pid, files})
		}
	}
	return procs
}

// uses reports whether any of files is in the surveyed tree.
func (s treeSurvey) uses(files []fileID) bool {
	for _, f := range files {
		if f.dev == s.dev && s.inodes[f.ino] {
			return true
		}
	}
	return false
}

// commandName returns the command name of process pid, or "?" when it
// cannot be read.
func commandName(pid int) string {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return string(bytes.TrimSuffix(comm, []byte("\n")))
}

// pruneGuard holds what one PruneDead call reads at most once, and only
// when something is to be removed: the mount table and the files every
// process uses.
type pruneGuard struct {
	mountsRead bool
	mounts     []string
	procsRead  bool
	procs      []procFiles
}

// check refuses to let the locked tree go while a mount point is inside it
// or a process uses it.
func (g *pruneGuard) check(sw *swarmDir, l *entryLock, name string) error {
	if points := g.mountsUnder(l.fd); len(points) > 0 {
		return mountInsideError(points)
	}
	users, err := g.usersOf(l.fd, filepath.Join(sw.path, name))
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return inUseError(users)
	}
	return nil
}

// usersOf returns the processes that use the tree under the open directory
// fd, at path. A mount point met on the way is an error wrapping
// ErrMountInside.
func (g *pruneGuard) usersOf(fd int, path string) ([]Process, error) {
	survey, err := surveyTree(fd, path)
	if errors.Is(err, errMountPoint) {
		return nil, fmt.Errorf("%w: %w", ErrMountInside, err)
	}
	if err != nil {
		return nil, err
	}
	if !g.procsRead {
		g.procsRead = true
		g.procs = snapshotProcesses(survey.dev)
	}
	var users []Process
	for _, p := range g.procs {
		if survey.uses(p.files) {
			users = append(users, Process{PID: p.pid, Command: commandName(p.pid)})
		}
	}
	return users, nil
}

// users returns the processes that use the entry name of the swarm
// directory.
func (g *pruneGuard) users(sw *swarmDir, name string) ([]Process, error) {
	dev, err := sw.device()
	if err != nil {
		return nil, err
	}
	fd, err := openSubdir(int(sw.fd), name, dev)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(sw.path, name), Err: err}
	}
	defer syscall.Close(fd)
	return g.usersOf(fd, filepath.Join(sw.path, name))
}

// usesEntry reports whether process pid uses the slot directory entry: its
// working or root directory is in the slot's tree, or it holds a file of
// the tree open. Only a process whose links can be read, and that uses a
// file on the slot's device, costs a walk of the tree.
func (sw *swarmDir) usesEntry(entry string, pid int) bool {
	dev, err := sw.device()
	if err != nil {
		return false
	}
	files := readProcFiles(pid, dev)
	if len(files) == 0 {
		return false
	}
	fd, err := openSubdir(int(sw.fd), entry, dev)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	survey, _ := surveyTree(fd, filepath.Join(sw.path, entry))
	return survey.inodes != nil && survey.uses(files)
}

// treeSurvey is what a read-only walk of a tree found: the device it is on
// and the inode numbers of everything in it, the top directory included.
type treeSurvey struct {
	dev    uint64
	inodes map[uint64]bool
}

// surveyTree walks the tree under the open directory fd without changing
// anything and records its inodes. A mount point inside is an error naming
// it (path is the tree's path, for messages). A directory that cannot be
// read is passed over: its contents go unrecorded.
func surveyTree(fd int, path string) (treeSurvey, error) {
	dev, ino, err := dirIdentity(fd)
	if err != nil {
		return treeSurvey{}, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	s := treeSurvey{dev: dev, inodes: map[uint64]bool{ino: true}}
	return s, s.walk(fd, path, true)
}

// walk records the tree under fd. The slot's own pid file is left out at
// the top: every scan opens it for a moment, and one that happens to be
// reading it does not use the slot.
func (s *treeSurvey) walk(fd int, path string, top bool) error {
	entries, err := readTreeEntries(fd)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !(top && e.name == PIDFile) {
			s.inodes[e.ino] = true
		}
		if !e.isDir {
			continue
		}
		sub, err := openSubdir(fd, e.name, s.dev)
		switch {
		case errors.Is(err, errMountPoint):
			return &fs.PathError{Op: "survey", Path: filepath.Join(path, e.name), Err: err}
		case err != nil:
			continue
		}
		err = s.walk(sub, filepath.Join(path, e.name), false)
		syscall.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// inUseError names the processes that use a slot.
func inUseError(users []Process) error {
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.String()
	}
	return fmt.Errorf("%w by %s; left in place", ErrInUse, strings.Join(names, ", "))
}
