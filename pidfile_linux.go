//go:build linux

package slotgc

import (
	"syscall"
	"time"
)

// openPIDFile opens the pid file of a swarm entry relative to the swarm
// directory, with the path built on the stack: the scan pays one openat
// per slot and allocates nothing for it.
func openPIDFile(sw *swarmDir, entry string) (int, error) {
	// NAME_MAX is 255: the path fits unless the name is not a real entry.
	var buf [256 + len("/"+PIDFile+"\x00")]byte
	path, err := makePath(buf[:], entry, "/"+PIDFile)
	if err != nil {
		return -1, err
	}
	return openat(int(sw.fd), path, pidFileFlags, 0)
}

// modTime returns the modification time fstat reported.
func modTime(st *syscall.Stat_t) time.Time {
	return time.Unix(st.Mtim.Unix())
}
