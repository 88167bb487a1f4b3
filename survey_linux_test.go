//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"os"
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

// TestSurveyOfDirectoryRenamedWhileRead has the look that lets a tree go
// read a directory in which another process renames a subdirectory from
// name to name all along, by paths, from outside the tree; ext4 returns a
// directory's entries in hash order, so a read can pass the subdirectory
// under neither name. A process holds a file in that subdirectory open
// all along: every look must find it, or fail; none may let the tree go.
// Entries of unknown type (a file system made without the filetype
// feature) are looked at one by one during the read, and must not make a
// renamed directory pass for a file either.
func TestSurveyOfDirectoryRenamedWhileRead(t *testing.T) {
	const (
		names   = 16
		fillers = 3000
		looking = 2 * time.Second
	)
	for _, tc := range []struct {
		name string
		mkfs []string
	}{
		{"d_type", nil},
		{"no d_type", []string{"-O", "^filetype"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setRemovalWorkers(t, 1)
			mnt := mountLoopFS(t, 64<<20, "mkfs.ext4", tc.mkfs...)
			tree := filepath.Join(mnt, "tree")
			renamed := filepath.Join(tree, "renamed")
			mkdirs(t, filepath.Join(renamed, "sub0"))
			for i := range fillers {
				writeFile(t, filepath.Join(renamed, fmt.Sprintf("filler-%04d", i)), "")
			}
			held := filepath.Join(renamed, "sub0", "held")
			writeFile(t, held, "work\n")
			cmd := helperCmd(t, testBinary(t), "hold")
			cmd.Env = append(cmd.Env, helperArgEnv+"="+held)
			cmd.Dir = tempDir(t)
			holder := startHelper(t, cmd, "hold").Process.Pid

			sw, err := openSwarmDir(mnt)
			if err != nil || sw == nil {
				t.Fatalf("setup: openSwarmDir(%s) = %v, %v", mnt, sw, err)
			}
			defer sw.close()
			fd, err := syscall.Open(tree, dirFlags, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)

			stop := make(chan struct{})
			renames := make(chan int)
			go func() {
				count, at := 0, 0
				for {
					select {
					case <-stop:
						renames <- count
						return
					default:
					}
					next := (at + 7) % names
					if os.Rename(filepath.Join(renamed, fmt.Sprintf("sub%d", at)), filepath.Join(renamed, fmt.Sprintf("sub%d", next))) == nil {
						at = next
						count++
					}
				}
			}()
			var looks, inUse, letGo int
			for end := time.Now().Add(looking); time.Now().Before(end); looks++ {
				g := &pruneGuard{}
				_, errs := g.recheckTrees(sw, []detachedTree{{fd: fd, path: tree, slot: true}})
				switch {
				case errs[0] == nil:
					letGo++
				case errors.Is(errs[0], ErrInUse):
					inUse++
				}
			}
			close(stop)
			if n := <-renames; n == 0 {
				t.Fatalf("setup: the subdirectory was never renamed")
			}
			t.Logf("%d looks: %d found pid %d, %d failed, %d let the tree go", looks, inUse, holder, looks-inUse-letGo, letGo)
			if letGo > 0 {
				t.Errorf("recheckTrees(%s) let the tree go %d times of %d, want never: pid %d holds renamed/sub*/held open", tree, letGo, looks, holder)
			}
		})
	}
}
