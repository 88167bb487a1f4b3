//go:build linux

package slotgc

import (
	"errors"
	"syscall"
	"time"
)

// openPIDFile opens the pid file of a swarm entry relative to the swarm
// directory, with the path built on the stack: the scan pays one open per
// slot and allocates nothing for it. openat2 refuses to cross into another
// mount or through a symlink on the way (EXDEV, ELOOP): a slot directory
// that is itself a mount point, of a stalled FUSE or NFS file system say,
// is never looked into, so its server is never asked. Before Linux 5.6
// (no openat2) the pid file is opened with openat(2), which crosses.
func openPIDFile(sw *swarmDir, entry string) (int, error) {
	// NAME_MAX is 255: the path fits unless the name is not a real entry.
	var buf [256 + len("/"+PIDFile+"\x00")]byte
	path, err := makePath(buf[:], entry, "/"+PIDFile)
	if err != nil {
		return -1, err
	}
	if !noOpenat2.Load() {
		how := openHow{flags: pidFileFlags, resolve: resolveNoXdev | resolveNoSymlinks | resolveNoMagiclinks | resolveBeneath}
		fd, err := openat2(int(sw.fd), path, &how)
		switch {
		case errors.Is(err, syscall.EXDEV):
			return -1, errSlotIsMount
		case !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EPERM):
			return fd, err
		}
		noOpenat2.Store(true)
	}
	return openat(int(sw.fd), path, pidFileFlags, 0)
}

// errSlotIsMount is the cause for a slot whose pid file cannot be reached
// without crossing into another mount: the slot is a mount point.
var errSlotIsMount = errors.New("the pid file lies on another mount than the swarm directory (the slot, or the file, is a mount point); it is not looked into")

// modTime returns the modification time fstat reported.
func modTime(st *syscall.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix())
}
