//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"strconv"
	"syscall"
)

// threads appends what the threads of a process without memory use: a
// kernel thread and a process that has exited have one thread (the
// thread count is the link count of /proc/<pid>/task, less two), while a
// process whose main thread exited has its others.
func (r *procReader) threads(dir procDir, files []inUse) ([]inUse, error) {
	st, err := statxOf(dir.fd, []byte("task"), 0, statxNlink)
	if err != nil {
		return files, dir.error("statx", "task", err)
	}
	if st.nlink <= 3 {
		return files, nil
	}
	tasks, err := openat(dir.fd, []byte("task\x00"), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", "task", err)
	}
	defer syscall.Close(tasks)
	var tids []int
	err = readDirNames(tasks, r.dirents, func(name []byte) {
		if tid, ok := parseDecimal(name); ok && int(tid) != dir.pid {
			tids = append(tids, int(tid))
		}
	})
	if err != nil {
		return files, dir.error("getdents64", "task", err)
	}
	mapped := false
	for _, tid := range tids {
		var name [24]byte
		fd, err := openat(tasks, append(strconv.AppendInt(name[:0], int64(tid), 10), 0), oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			if gone(err) {
				continue
			}
			return files, dir.error("open", "task/"+strconv.Itoa(tid), err)
		}
		task := procDir{fd: fd, pid: dir.pid, tid: tid}
		if !mapped {
			files, mapped, err = r.mappings(task, files)
		}
		if err == nil {
			files, err = r.task(task, files)
		}
		syscall.Close(fd)
		if err != nil && !gone(err) {
			return files, err
		}
	}
	return files, nil
}

// gone reports whether err says the process, thread or descriptor asked
// about is no more.
func gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}

// task appends the working and root directories and the open files of the
// process or thread whose /proc directory is dir.
func (r *procReader) task(dir procDir, files []inUse) ([]inUse, error) {
	for _, link := range [...]string{"cwd", "root"} {
		var err error
		if files, err = r.dirLink(dir, link, files); err != nil {
			return files, err
		}
	}
	return r.openFiles(dir, files)
}

// dirLink appends the directory the link name (cwd or root) of dir leads
// to, if it is on the target. A task that has exited has none.
func (r *procReader) dirLink(dir procDir, name string, files []inUse) ([]inUse, error) {
	var path [8]byte
	fd, err := openat(dir.fd, append(append(path[:0], name...), 0), oPath|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", name, err)
	}
	defer syscall.Close(fd)
	var fdName [24]byte
	info, err := r.fdinfo(r.selfFdinfo, strconv.AppendInt(fdName[:0], int64(fd), 10))
	if err != nil {
		return files, dir.error("read fdinfo of", name, err)
	}
	if !r.keepsMount(dir, info.mnt) {
		return files, nil
	}
	if !info.hasIno {
		if info.ino, err = statxIno(fd, nil, 0); err != nil {
			return files, dir.error("statx", name, err)
		}
	}
	return append(files, inUse{ino: info.ino, dir: true}), nil
}

// openFiles appends the open files of dir that are on the target.
func (r *procReader) openFiles(dir procDir, files []inUse) ([]inUse, error) {
	fds, err := openat(dir.fd, []byte("fd\x00"), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return files, dir.error("open", "fd", err)
	}
	defer syscall.Close(fds)
	var failed error
	err = readDirNames(fds, r.dirents, func(name []byte) {
		if failed != nil {
			return
		}
		var link [2]byte
		n, err := readlinkName(fds, name, link[:])
		switch {
		case gone(err):
			return // closed meanwhile
		case err != nil:
			failed = dir.error("readlink", "fd/"+string(name), err)
			return
		case n == 0 || link[0] != '/':
			return
		}
		var path [32]byte
		info, err := r.fdinfo(dir.fd, append(append(path[:0], "fdinfo/"...), name...))
		switch {
		case gone(err):
			return
		case err != nil:
			failed = dir.error("read", "fdinfo/"+string(name), err)
			return
		case !r.keepsMount(dir, info.mnt):
			return
		case !info.hasIno:
			if info.ino, err = statxIno(fds, name, 0); err != nil {
				if !gone(err) {
					failed = dir.error("statx", "fd/"+string(name), err)
				}
				return
			}
		}
		files = append(files, inUse{ino: info.ino})
	})
	if err != nil {
		return files, dir.error("getdents64", "fd", err)
	}
	return files, failed
}

// keepsMount reports whether a file reached through mount id mnt, named
// by the process or thread whose /proc directory is dir, may be on the
// target. A mount no table holds may be.
func (r *procReader) keepsMount(dir procDir, mnt uint64) bool {
	if !r.target.known {
		return true
	}
	m, ok := r.mounts.lookup(dir.fd, mnt)
	return !ok || m.dev == r.target.fs.dev
}

// fdInfo is what slotgc needs of an fdinfo file.
type fdInfo struct {
	mnt, ino uint64
	hasIno   bool
}

// fdinfo reads the fdinfo file at name, relative to the directory dir.
// Its first lines are the ones asked for, and /proc makes the whole file
// at the first read, so one read does.
func (r *procReader) fdinfo(dir int, name []byte) (fdInfo, error) {
	var path [48]byte
	if len(name) >= len(path) {
		return fdInfo{}, syscall.ENAMETOOLONG
	}
	fd, err := openat(dir, append(append(path[:0], name...), 0), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fdInfo{}, err
	}
	defer syscall.Close(fd)
	var buf [256]byte
	n, err := syscall.Read(fd, buf[:])
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf[:])
	}
	if err != nil {
		return fdInfo{}, err
	}
	return parseFdinfo(buf[:n])
}

// parseFdinfo picks the mnt_id and ino lines out of the start of an
// fdinfo file
// (https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html); a line
// cut short by the end of b is not read.
func parseFdinfo(b []byte) (fdInfo, error) {
	var info fdInfo
	hasMnt := false
	for len(b) > 0 {
		line, rest, whole := bytes.Cut(b, []byte("\n"))
		if !whole {
			break
		}
		b = rest
		if v, ok := bytes.CutPrefix(line, []byte("mnt_id:")); ok {
			info.mnt, hasMnt = parseDecimal(bytes.TrimSpace(v))
		} else if v, ok := bytes.CutPrefix(line, []byte("ino:")); ok {
			info.ino, info.hasIno = parseDecimal(bytes.TrimSpace(v))
		}
	}
	if !hasMnt {
		return info, errNoMountID
	}
	return info, nil
}

var errNoMountID = errors.New("no mnt_id line")
