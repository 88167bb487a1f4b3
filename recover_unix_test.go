//go:build unix

package slotgc

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// treeBytes returns the disk use of the tree at dir as du -s counts it:
// the allocated 512-byte blocks of every entry, a file with several links
// once.
func treeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		id := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
		if !d.IsDir() && st.Nlink > 1 {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += int64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// addHardLink links the file at path as link too.
func addHardLink(t *testing.T, path, link string) {
	t.Helper()
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
}
