//go:build windows

package slotgc

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// treeBytes returns the sizes of the files in the tree at dir, which is
// what Windows lets the standard library measure.
func treeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		total += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// addHardLink makes link a copy of the file at path: Windows counts a hard
// link at each of its names, so a copy measures as a link does.
func addHardLink(t *testing.T, path, link string) {
	t.Helper()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, content, 0o644); err != nil {
		t.Fatal(err)
	}
}
