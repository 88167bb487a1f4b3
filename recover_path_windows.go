//go:build windows

package slotgc

import (
	"io/fs"
	"os"
)

// holdRecord has nothing to do: a record's maker holds it open without
// sharing delete access, which keeps any other process from removing it
// while its entry is being made.
func holdRecord(*os.File) error { return nil }

// identityOf is zero: the standard library reads a file's volume and index
// on Windows only for os.SameFile, and keeps them to itself, so a record
// names its entry by name alone.
func identityOf(fs.FileInfo) fileIdentity { return fileIdentity{} }

// recordDirTrusted has nothing to check that the standard library shows:
// who may write in a directory is its access control list's to say, and
// the one slotgc makes the records directory with is inherited from the
// recovery directory.
func recordDirTrusted(fs.FileInfo) error { return nil }

// diskBytes returns the size of the file info describes: the standard
// library gives no allocation size on Windows. Hard links are counted at
// each of their names.
func diskBytes(info fs.FileInfo) (int64, *fileIdentity) {
	if info.IsDir() {
		return 0, nil
	}
	return info.Size(), nil
}
