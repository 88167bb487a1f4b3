//go:build linux

package slotgc

import (
	"bytes"
	"os"
	"strconv"
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
