//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
)

// statxOf is statx(2) of the file name in the directory dir, or of dir
// itself when name is empty, asking for the attributes in mask; it fails
// unless all of them are given.
func statxOf(dir int, name []byte, flags int, mask uint32) (statxT, error) {
	var buf [256]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return statxT{}, err
	}
	if len(name) == 0 {
		flags |= atEmptyPath
	}
	var st statxT
	if err := statx(dir, path, flags, mask, &st); err != nil {
		return st, err
	}
	if st.mask&mask != mask {
		return st, errStatxMask
	}
	return st, nil
}

var errStatxMask = errors.New("statx did not give what was asked")

// statxIno returns the inode number of the file name in the directory dir
// (of dir itself when name is empty), with statx's flags and
// AT_STATX_DONT_SYNC: FUSE and NFS answer from what they hold, and asked
// for the inode number alone, NFS flushes no dirty pages first.
func statxIno(dir int, name []byte, flags int) (uint64, error) {
	st, err := statxOf(dir, name, flags|atStatxDontSync, statxInoMask)
	return st.ino, err
}

// readlinkName reads the link name in the directory dir into buf,
// returning how many bytes it filled; a link longer than buf is cut short.
func readlinkName(dir int, name []byte, buf []byte) (int, error) {
	var pathBuf [64]byte
	path, err := makePath(pathBuf[:], name)
	if err != nil {
		return 0, err
	}
	return readlinkat(dir, path, buf)
}

// readLines calls each with every line, without its newline, of the file
// open as fd, reading it through buf, which must hold the longest line.
// The files read are /proc's, made as they are read: one is read to its
// end, never judged complete by a short read.
func readLines(fd int, buf []byte, each func(line []byte)) error {
	held := 0
	for {
		n, err := syscall.Read(fd, buf[held:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			if held > 0 {
				each(buf[:held])
			}
			return nil
		}
		data := buf[:held+n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			each(data[:i])
			data = data[i+1:]
		}
		held = copy(buf, data)
		if held == len(buf) {
			return errLongLine
		}
	}
}

var errLongLine = errors.New("a line longer than 64 KiB")

// readDirNames calls each with the name of every entry, but "." and "..",
// of the directory open as fd, reading it through buf.
func readDirNames(fd int, buf []byte, each func(name []byte)) error {
	for {
		n, err := syscall.ReadDirent(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n <= 0:
			return nil
		}
		records := buf[:n]
		for len(records) > 0 {
			const reclenOffset, nameOffset = 16, 19
			if len(records) < nameOffset {
				return errDirent
			}
			reclen := int(records[reclenOffset]) | int(records[reclenOffset+1])<<8
			if reclen <= nameOffset || reclen > len(records) {
				return errDirent
			}
			name := records[nameOffset:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			records = records[reclen:]
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			each(name)
		}
	}
}

// procPassLimit bounds a pass over /proc. Nothing in it asks a file
// system, but reading a process's maps waits for its memory map's lock
// (https://man7.org/linux/man-pages/man5/proc_pid_maps.5.html), which a
// thread of that process stuck in a file system could keep from it; past
// the limit the pass is left to finish on its own and every slot is kept.
// A pass takes milliseconds.
var procPassLimit = 10 * time.Second

// errPassCutShort says a pass over /proc did not finish within
// procPassLimit.
var errPassCutShort = errors.New("the pass over /proc did not finish in time")

// within runs read in a goroutine of its own and returns its result, or
// an error wrapping errPassCutShort if it takes longer than
// procPassLimit; it is then left to finish, or to wait, on its own.
// at says which pid read was at, for the message.
func within[T any](at *atomic.Int64, read func() T) (T, error) {
	done := make(chan T, 1)
	go func() { done <- read() }()
	timer := time.NewTimer(procPassLimit)
	defer timer.Stop()
	select {
	case v := <-done:
		return v, nil
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%w (%v): it was reading /proc/%d", errPassCutShort, procPassLimit, at.Load())
	}
}
