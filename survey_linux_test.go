//go:build linux

package slotgc

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Node ids of the tree the fuse-renamed helper serves: t holds a directory
// x, which holds a file kept; once x has been read, the name x leads to
// another, empty directory, and t lists both under it.
const (
	renamedTreeID  = 2
	renamedFirstID = 3
	renamedKeptID  = 4
	renamedNextID  = 5
)

var _ = registerHelper("fuse-renamed", func() {
	serveFUSE("fuse-renamed", &fuseFS{
		nodes: map[uint64]fuseNode{
			fuseRootID:     {0, "", syscall.S_IFDIR | 0o755, ""},
			renamedTreeID:  {fuseRootID, "t", syscall.S_IFDIR | 0o755, ""},
			renamedFirstID: {renamedTreeID, "x", syscall.S_IFDIR | 0o755, ""},
			renamedKeptID:  {renamedFirstID, "kept", syscall.S_IFREG | 0o644, "work\n"},
			renamedNextID:  {renamedTreeID, "x", syscall.S_IFDIR | 0o755, ""},
		},
		replaced: map[uint64]uint64{renamedFirstID: renamedNextID},
		read:     map[uint64]bool{},
		time:     time.Now(),
		requests: make(map[string]int),
	})
})

// TestSurveyOfNameReadTwice has the look that lets a tree go read a
// directory that names a subdirectory twice, the name leading to another
// directory by the second open, as when a directory is renamed away and
// another made under its name while its parent is read. A process holds a
// file of the first directory open all along: the tree is in use.
func TestSurveyOfNameReadTwice(t *testing.T) {
	setRemovalWorkers(t, 1)
	m := mountServed(t, tempDir(t), "fuse-renamed")
	tree := filepath.Join(m.Dir, "t")
	holder := m.spawn("hold", filepath.Join(tree, "x", "kept"))
	if line, err := holder.line(settleTimeout); err != nil || line != "ready" {
		t.Fatalf("setup: the holder said %q, %v, want ready", line, err)
	}
	sw, err := openSwarmDir(m.Dir)
	if err != nil || sw == nil {
		t.Fatalf("setup: openSwarmDir(%s) = %v, %v", m.Dir, sw, err)
	}
	defer sw.close()
	fd, err := syscall.Open(tree, dirFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)

	g := &pruneGuard{}
	_, errs := g.recheckTrees(sw, []detachedTree{{fd: fd, path: tree, slot: true}})
	if !errors.Is(errs[0], ErrInUse) {
		t.Errorf("recheckTrees(%s) = %v, want ErrInUse: pid %d holds x/kept open", tree, errs[0], holder.pid())
	}
}
