//go:build unix && !linux

package slotgc

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// holdRecord locks the record f (see lockExclusive) while its entry is
// being made; on a record another prune holds, it fails with errBusy.
func holdRecord(f *os.File) error { return lockExclusive(int(f.Fd())) }

// identityOf returns the device and inode of the file info describes.
func identityOf(info fs.FileInfo) fileIdentity {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return fileIdentity{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return fileIdentity{}
}

// recordDirTrusted checks the records directory info describes (see
// trustedRecordDir).
func recordDirTrusted(info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: its owner cannot be read", errUntrustedRecords)
	}
	return trustedRecordDir(int(st.Uid), uint32(st.Mode))
}

// diskBytes returns the disk use of the file info describes, in allocated
// blocks of 512 bytes, and its identity when it has several links, so
// that it counts once.
func diskBytes(info fs.FileInfo) (int64, *fileIdentity) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return info.Size(), nil
	}
	if !info.IsDir() && st.Nlink > 1 {
		id := identityOf(info)
		return int64(st.Blocks) * 512, &id
	}
	return int64(st.Blocks) * 512, nil
}
