//go:build linux

package slotgc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// setRemovalWorkers sets the bound on removal workers for the rest of b
// (or a test).
func setRemovalWorkers(tb testing.TB, workers int) {
	tb.Helper()
	was := removers.Swap(newRemovalPool(workers, defaultRemovalFDBudget()))
	tb.Cleanup(func() { removers.Store(was) })
}

// buildTree makes dirs directories under top, each a chain of depth
// directories with files files at every level, and returns the paths of
// the chains' top directories.
func buildTree(t *testing.T, top string, dirs, depth, files int) []string {
	t.Helper()
	var tops []string
	for d := range dirs {
		dir := filepath.Join(top, fmt.Sprintf("d%03d", d))
		tops = append(tops, dir)
		for range depth {
			mkdirs(t, dir)
			for f := range files {
				writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", f)), "content")
			}
			dir = filepath.Join(dir, "sub")
		}
	}
	return tops
}

// openTop opens the directory top of a tree as PruneDead holds a slot's,
// for removeTreeContents, and returns it and its device.
func openTop(t *testing.T, top string) (fd int, dev uint64) {
	t.Helper()
	fd, err := syscall.Open(top, dirFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	dev, _, err = dirIdentity(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, dev
}

// entriesOf lists the names in dir.
func entriesOf(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestParallelRemovalEmptiesTree removes a big tree with many workers: all
// of it goes, with helpers, and the walks hold no descriptor after.
func TestParallelRemovalEmptiesTree(t *testing.T) {
	setRemovalWorkers(t, 8)
	top := tempDir(t)
	buildTree(t, top, 40, 4, 5)
	writeFile(t, filepath.Join(top, PIDFile), "1\n")
	fd, dev := openTop(t, top)
	if err := removeTreeContents(fd, top, dev, true, nil); err != nil {
		t.Fatalf("removeTreeContents = %v, want nil", err)
	}
	if left := entriesOf(t, top); len(left) != 0 {
		t.Errorf("after the removal the tree holds %v, want nothing", left)
	}
	pool := removers.Load()
	if pool.lent.Load() == 0 {
		t.Error("a tree of 40 subtrees was removed with no helper")
	}
	if n := pool.fds.Load(); n != 0 {
		t.Errorf("the walks hold %d descriptors after the removal, want 0", n)
	}
}

// TestRemovalOfSmallTreeTakesNoHelper: a tree smaller than
// minHelpedEntries is removed by its caller alone, and so is a directory
// whose walker has nothing else to do.
func TestRemovalOfSmallTreeTakesNoHelper(t *testing.T) {
	setRemovalWorkers(t, 8)
	for _, tc := range []struct {
		name  string
		build func(top string)
	}{
		{"small", func(top string) { buildTree(t, top, 3, 2, 4) }},
		{"one deep chain", func(top string) { buildTree(t, top, 1, 30, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := tempDir(t)
			tc.build(top)
			writeFile(t, filepath.Join(top, PIDFile), "1\n")
			fd, dev := openTop(t, top)
			before := removers.Load().lent.Load()
			if err := removeTreeContents(fd, top, dev, true, nil); err != nil {
				t.Fatalf("removeTreeContents = %v, want nil", err)
			}
			if n := removers.Load().lent.Load() - before; n != 0 {
				t.Errorf("the removal took %d helpers, want none", n)
			}
			if left := entriesOf(t, top); len(left) != 0 {
				t.Errorf("after the removal the tree holds %v, want nothing", left)
			}
		})
	}
}

// TestParallelRemovalKeepsPIDFileOnFailure puts bind mounts deep in two
// subtrees of a big tree that many workers remove, with openat2 and
// without it: every other entry goes, the error names both mount points,
// nothing on them is touched, and the pid file stays, so the leftover can
// still be judged.
func TestParallelRemovalKeepsPIDFileOnFailure(t *testing.T) {
	needRoot(t)
	setRemovalWorkers(t, 8)
	for _, withoutOpenat2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("without openat2=%v", withoutOpenat2), func(t *testing.T) {
			if was := noOpenat2.Swap(withoutOpenat2); was != withoutOpenat2 {
				t.Cleanup(func() { noOpenat2.Store(was) })
			}
			top := tempDir(t)
			shared := tempDir(t)
			writeFile(t, filepath.Join(shared, "keep"), "precious")
			tops := buildTree(t, top, 40, 3, 5)
			points := []string{filepath.Join(tops[5], "sub", "mnt"), filepath.Join(tops[30], "sub", "sub", "mnt")}
			for _, p := range points {
				mkdirs(t, p)
				mount(t, shared, p, "")
			}
			writeFile(t, filepath.Join(top, PIDFile), "1\n")
			fd, dev := openTop(t, top)

			err := removeTreeContents(fd, top, dev, true, nil)
			if !errors.Is(err, errMountPoint) {
				t.Fatalf("removeTreeContents = %v, want errors wrapping %v", err, errMountPoint)
			}
			for _, p := range points {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("the error %q does not name the mount point %s", err, p)
				}
				if _, err := os.Stat(filepath.Join(p, "keep")); err != nil {
					t.Errorf("the removal deleted a file on the mount at %s: %v", p, err)
				}
			}
			want := []string{filepath.Base(tops[5]), filepath.Base(tops[30]), PIDFile}
			slices.Sort(want)
			if left := entriesOf(t, top); !slices.Equal(left, want) {
				t.Errorf("after the removal the tree holds %v, want only %v: the mounts' ancestors and the pid file", left, want)
			}
			if left := entriesOf(t, tops[5]); !slices.Equal(left, []string{"sub"}) {
				t.Errorf("%s holds %v after the removal, want only the way to the mount", tops[5], left)
			}
		})
	}
}

// setImmutable sets or clears the immutable attribute of the file at path
// (chattr +i), which keeps even root from unlinking it, or skips the test
// where the file system or the caller cannot.
func setImmutable(t *testing.T, path string, on bool) {
	t.Helper()
	// FS_IOC_GETFLAGS and FS_IOC_SETFLAGS are _IOR and _IOW('f', 1 and 2,
	// long); the kernel reads and writes an int through them.
	const (
		fsIocGetflags = 0x80006601 | unsafe.Sizeof(uintptr(0))<<16
		fsIocSetflags = 0x40006602 | unsafe.Sizeof(uintptr(0))<<16
		fsImmutableFl = 0x10
	)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var flags int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), fsIocGetflags, uintptr(unsafe.Pointer(&flags))); errno != 0 {
		t.Skipf("the file system of %s keeps no attributes: %v", path, errno)
	}
	if on {
		flags |= fsImmutableFl
	} else {
		flags &^= fsImmutableFl
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), fsIocSetflags, uintptr(unsafe.Pointer(&flags))); errno != 0 {
		t.Skipf("cannot make %s immutable: %v", path, errno)
	}
}

// TestParallelRemovalGoesOnPastFailures makes files that cannot be
// unlinked in a big flat directory, whose files helpers share, and in a
// subtree: the removal takes everything else, names each file it could
// not take once, and keeps the pid file; so it does when a survey's
// listing names the files it cannot take.
func TestParallelRemovalGoesOnPastFailures(t *testing.T) {
	needRoot(t)
	setRemovalWorkers(t, 8)
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprintf("listed=%v", listed), func(t *testing.T) {
			testRemovalGoesOnPastFailures(t, listed)
		})
	}
}

func testRemovalGoesOnPastFailures(t *testing.T, listed bool) {
	t.Helper()
	top := tempDir(t)
	flat := filepath.Join(top, "flat")
	mkdirs(t, flat)
	for f := range 10 * filesPerHelper {
		writeFile(t, filepath.Join(flat, fmt.Sprintf("f%04d", f)), "")
	}
	tops := buildTree(t, top, 20, 3, 5)
	stuck := []string{
		filepath.Join(flat, "f0003"), filepath.Join(flat, fmt.Sprintf("f%04d", 10*filesPerHelper-2)),
		filepath.Join(tops[7], "sub", "f01"),
	}
	for _, f := range stuck {
		setImmutable(t, f, true)
		t.Cleanup(func() { setImmutable(t, f, false) })
	}
	writeFile(t, filepath.Join(top, PIDFile), "1\n")
	fd, dev := openTop(t, top)
	var listing *dirListing
	if listed {
		listing = listTree(t, fd, top)
	}
	before := removers.Load().lent.Load()

	err := removeTreeContents(fd, top, dev, true, listing)
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("removeTreeContents = %v, want errors wrapping EPERM", err)
	}
	for _, f := range stuck {
		if n := strings.Count(err.Error(), f+":"); n != 1 {
			t.Errorf("the error %q names %s %d times, want once", err, f, n)
		}
	}
	if n := len(strings.Split(err.Error(), "\n")); n != len(stuck) {
		t.Errorf("the error %q joins %d errors, want %d: one for each file that stayed", err, n, len(stuck))
	}
	if removers.Load().lent.Load() == before {
		t.Error("the removal took no helper")
	}
	want := []string{filepath.Base(tops[7]), "flat", PIDFile}
	if left := entriesOf(t, top); !slices.Equal(left, want) {
		t.Errorf("after the removal the tree holds %v, want %v", left, want)
	}
	if left := entriesOf(t, flat); len(left) != 2 {
		t.Errorf("after the removal %s holds %v, want only the 2 immutable files", flat, left)
	}
}

// listTree surveys the tree under fd, at path, as the guard's last look
// does, and returns what it read.
func listTree(t *testing.T, fd int, path string) *dirListing {
	t.Helper()
	survey, err := surveyTree(fd, path, nil, true, true)
	if err != nil || survey.listing == nil {
		t.Fatalf("surveyTree(%s) = %+v, %v, want a listing and no error", path, survey, err)
	}
	return survey.listing
}

// TestListingIsBounded lists trees bigger than a listing may take, by
// their directories, nested or side by side, or by their files: the
// listing leaves some of the tree out, keeps no more memory alive than
// maxListingBytes (with room for the walk's pooled buffer and the
// runtime's own), counts no more than that either, and the removal given
// it still removes the whole tree.
func TestListingIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		// build makes the tree under top and returns how many
		// directories and files it holds.
		build func(t *testing.T, top string) (dirs, files int)
	}{
		{"nested directories", func(t *testing.T, top string) (int, int) {
			// 2.3 MB as listed: each directory has a map of one.
			const depth = 6000
			fd, err := syscall.Open(top, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			for range depth {
				err := syscall.Mkdirat(fd, "d", 0o755)
				sub := -1
				if err == nil {
					sub, err = syscall.Openat(fd, "d", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
				}
				syscall.Close(fd)
				if err != nil {
					t.Fatal(err)
				}
				fd = sub
			}
			syscall.Close(fd)
			return depth, 0
		}},
		{"directories side by side", func(t *testing.T, top string) (int, int) {
			// 5.4 MB as listed.
			const children = 40000
			for c := range children {
				if err := os.Mkdir(filepath.Join(top, fmt.Sprintf("child-%05d", c)), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			return children, 0
		}},
		{"files", func(t *testing.T, top string) (int, int) {
			// 2.6 MB as listed: 6,000 files of 204-byte names, in
			// directories read several buffers at a time.
			const parents, files = 3, 2000
			longName := strings.Repeat("n", 200)
			for p := range parents {
				parent := filepath.Join(top, fmt.Sprintf("p%02d", p))
				mkdirs(t, parent)
				for f := range files {
					writeFile(t, filepath.Join(parent, fmt.Sprintf("%s%04d", longName, f)), "x")
				}
			}
			return parents, parents * files
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setRemovalWorkers(t, 1)
			top := tempDir(t)
			dirs, files := tc.build(t, top)
			fd, dev := openTop(t, top)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			listing := listTree(t, fd, top)
			runtime.GC()
			runtime.ReadMemStats(&after)
			if kept, most := int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(maxListingBytes)*11/10; kept > most {
				t.Errorf("the listing keeps %d bytes alive, want at most %d", kept, most)
			}
			var listedDirs, listedFiles, size int
			var count func(l *dirListing)
			count = func(l *dirListing) {
				for _, f := range l.files {
					name, _, _ := bytes.Cut(l.path(f), []byte{0})
					listedFiles++
					size += listedFileCost(name)
				}
				if len(l.subdirs) > 0 {
					size += listedMapBytes
				}
				for name, sub := range l.subdirs {
					listedDirs++
					size += listedDirBytes + len(name)
					count(sub)
				}
			}
			count(listing)
			if size > maxListingBytes || listedDirs+listedFiles >= dirs+files {
				t.Errorf("the listing counts %d bytes for %d of the %d directories and %d of the %d files, want at most %d bytes and some left out",
					size, listedDirs, dirs, listedFiles, files, maxListingBytes)
			}
			if err := removeTreeContents(fd, top, dev, true, listing); err != nil {
				t.Fatalf("removeTreeContents = %v, want nil", err)
			}
			if left := entriesOf(t, top); len(left) != 0 {
				t.Errorf("after the removal the tree holds %d entries, want nothing", len(left))
			}
		})
	}
}

// TestRemovalWithStaleListing changes a tree after a survey listed it, as
// a process that held something in it could: the removal given that
// listing removes the tree as it is now, whatever the listing says of it,
// and touches nothing outside it.
func TestRemovalWithStaleListing(t *testing.T) {
	setRemovalWorkers(t, 8)
	for _, tc := range []struct {
		name string
		// change changes the tree under top, whose subtrees are tops,
		// and may use the directory outside, which holds precious.
		change func(t *testing.T, top string, tops []string, outside string)
	}{
		{"file turned into a directory", func(t *testing.T, _ string, tops []string, _ string) {
			f := filepath.Join(tops[0], "f00")
			removePath(t, f)
			mkdirs(t, filepath.Join(f, "deeper"))
			writeFile(t, filepath.Join(f, "deeper", "inner"), "new")
		}},
		{"file removed", func(t *testing.T, _ string, tops []string, _ string) {
			removePath(t, filepath.Join(tops[1], "sub", "f03"))
		}},
		{"files added", func(t *testing.T, top string, tops []string, _ string) {
			writeFile(t, filepath.Join(top, "new"), "new")
			writeFile(t, filepath.Join(tops[2], "sub", "new"), "new")
			mkdirs(t, filepath.Join(tops[2], "newdir"))
		}},
		{"file turned into a symlink to outside", func(t *testing.T, _ string, tops []string, outside string) {
			f := filepath.Join(tops[3], "f01")
			removePath(t, f)
			symlink(t, filepath.Join(outside, "precious"), f)
		}},
		{"directory turned into a symlink to outside", func(t *testing.T, _ string, tops []string, outside string) {
			removePath(t, tops[4])
			symlink(t, outside, tops[4])
		}},
		{"directory moved out and another made at its name", func(t *testing.T, _ string, tops []string, outside string) {
			if err := os.Rename(tops[5], filepath.Join(outside, "moved")); err != nil {
				t.Fatal(err)
			}
			mkdirs(t, tops[5])
			writeFile(t, filepath.Join(tops[5], "f00"), "new")
			writeFile(t, filepath.Join(tops[5], "other"), "new")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := tempDir(t)
			outside := tempDir(t)
			writeFile(t, filepath.Join(outside, "precious"), "keep me")
			tops := buildTree(t, top, 20, 2, 10)
			writeFile(t, filepath.Join(top, PIDFile), "1\n")
			fd, dev := openTop(t, top)
			listing := listTree(t, fd, top)
			outsideBefore := treeOf(t, outside)
			tc.change(t, top, tops, outside)
			outsideChanged := treeOf(t, outside)

			if err := removeTreeContents(fd, top, dev, true, listing); err != nil {
				t.Fatalf("removeTreeContents = %v, want nil", err)
			}
			if left := entriesOf(t, top); len(left) != 0 {
				t.Errorf("after the removal the tree holds %v, want nothing", left)
			}
			if got := treeOf(t, outside); !slices.Equal(got, outsideChanged) {
				t.Errorf("outside the tree holds %v after the removal, want %v as before it (%v before the change)", got, outsideChanged, outsideBefore)
			}
		})
	}
}

// removePath removes the file or tree at path, as setup.
func removePath(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

// symlink makes a symlink at path to target, as setup.
func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// treeOf lists the paths under dir, relative to it, with each regular
// file's content.
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel += "=" + string(data)
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRemovalSymlinkSwapRace removes big trees with many workers while
// another goroutine swaps their directories, at the top and one level
// down, for symlinks to a directory outside that holds entries of the same
// names. inotify watches the outside: nothing there may change.
func TestRemovalSymlinkSwapRace(t *testing.T) {
	setRemovalWorkers(t, 8)
	const (
		rounds = 10
		dirs   = 60
	)
	outside := tempDir(t)
	outsideSub := filepath.Join(outside, "sub")
	mkdirs(t, outsideSub)
	for _, dir := range []string{outside, outsideSub} {
		for f := range 5 {
			writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", f)), "outside")
		}
	}
	inotify, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(inotify)
	const changes = syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE | syscall.IN_CREATE |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ATTRIB | syscall.IN_MODIFY
	for _, dir := range []string{outside, outsideSub} {
		if _, err := syscall.InotifyAddWatch(inotify, dir, changes); err != nil {
			t.Fatal(err)
		}
	}

	swaps := 0
	for range rounds {
		top := tempDir(t)
		tops := buildTree(t, top, dirs, 3, 5)
		writeFile(t, filepath.Join(top, PIDFile), "1\n")
		fd, dev := openTop(t, top)
		var swapper sync.WaitGroup
		swapper.Go(func() {
			for i := range tops {
				// Every other chain is swapped at its top, the rest one
				// level down; from the end, to meet the walkers midway.
				dir, target := tops[len(tops)-1-i], outside
				if i%2 == 1 {
					dir, target = filepath.Join(dir, "sub"), outsideSub
				}
				if os.Rename(dir, dir+".away") == nil && os.Symlink(target, dir) == nil {
					swaps++
				}
			}
		})
		removeTreeContents(fd, top, dev, true, nil) // errors expected: a swap fails an open
		swapper.Wait()
		if err := os.RemoveAll(top); err != nil {
			t.Fatal(err)
		}
	}
	if swaps == 0 {
		t.Fatal("no directory was swapped for a symlink: the test tested nothing")
	}
	var events [4096]byte
	if n, err := syscall.Read(inotify, events[:]); n > 0 {
		t.Errorf("the removal changed the directory outside the tree: %s", describeInotify(events[:n]))
	} else if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("reading inotify: %v", err)
	}
	for dir, want := range map[string]int{outside: 6, outsideSub: 5} {
		if n := len(entriesOf(t, dir)); n != want {
			t.Errorf("%s holds %d entries after the removals, want %d", dir, n, want)
		}
	}
	t.Logf("%d directories swapped for symlinks over %d removals", swaps, rounds)
}

// TestRemovalOutOfDescriptors removes a deep tree while the process can
// open no more descriptors than a few: the walk waits for some to come
// free rather than skip a directory, and when none do in time it fails,
// keeping the pid file, and a later removal finishes the tree.
func TestRemovalOutOfDescriptors(t *testing.T) {
	setRemovalWorkers(t, 4)
	wasLimit := fdWaitLimit
	t.Cleanup(func() { fdWaitLimit = wasLimit })
	const (
		depth = 12
		// freeAfter is when the descriptors held come free in the first
		// removal: well within fdWaitLimit.
		freeAfter = 200 * time.Millisecond
	)

	for _, comeFree := range []bool{true, false} {
		t.Run(fmt.Sprintf("descriptors come free=%v", comeFree), func(t *testing.T) {
			top := tempDir(t)
			buildTree(t, top, 8, depth, 2)
			writeFile(t, filepath.Join(top, PIDFile), "1\n")
			fd, dev := openTop(t, top)
			fdWaitLimit = wasLimit
			if !comeFree {
				fdWaitLimit = freeAfter
			}
			// Fill every descriptor but two, fewer than the tree's depth.
			held := exhaustDescriptorsBut(t, 2)
			release := sync.OnceFunc(func() {
				for _, h := range held {
					syscall.Close(h)
				}
			})
			defer release()
			if comeFree {
				time.AfterFunc(freeAfter, release)
			}
			err := removeTreeContents(fd, top, dev, true, nil)
			release()
			switch {
			case comeFree && err != nil:
				t.Fatalf("removeTreeContents = %v, want nil once the descriptors came free", err)
			case comeFree:
			case !errors.Is(err, syscall.EMFILE):
				t.Fatalf("removeTreeContents with no descriptors = %v, want an error wrapping EMFILE", err)
			default:
				if _, err := os.Stat(filepath.Join(top, PIDFile)); err != nil {
					t.Fatalf("the failed removal took the pid file: %v", err)
				}
				if err := removeTreeContents(fd, top, dev, true, nil); err != nil {
					t.Fatalf("removeTreeContents again, with descriptors = %v, want nil", err)
				}
			}
			if left := entriesOf(t, top); len(left) != 0 {
				t.Errorf("after the removal the tree holds %v, want nothing", left)
			}
		})
	}
}

// exhaustDescriptorsBut opens /dev/null until the process can open no more,
// then closes spare of them again, and returns those it holds. Go raises
// the soft RLIMIT_NOFILE to the hard one at start; it is lowered to what
// is open now and a little more, so that filling takes few, and restored
// when the test ends.
func exhaustDescriptorsBut(t *testing.T, spare int) []int {
	t.Helper()
	const headroom = 64
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range open {
		var n int
		if _, err := fmt.Sscan(e.Name(), &n); err == nil {
			highest = max(highest, n)
		}
	}
	lowered := was
	lowered.Cur = min(was.Cur, uint64(highest+headroom))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was) })
	var held []int
	for {
		fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("filling the descriptor table: %v", err)
			}
			break
		}
		held = append(held, fd)
	}
	if len(held) < spare {
		t.Fatalf("setup: only %d descriptors could be filled, want more than %d", len(held), spare)
	}
	for _, fd := range held[len(held)-spare:] {
		syscall.Close(fd)
	}
	return held[:len(held)-spare]
}

// TestPruneDeadRemovesSlotsTogether prunes many dead slots in one call
// with a bound of four workers: each is removed once, the live ones stay,
// and removals ran beside the caller's.
func TestPruneDeadRemovesSlotsTogether(t *testing.T) {
	setRemovalWorkers(t, 4)
	ws, swarm := workspace(t)
	dead := pidLine(deadPID(t))
	live := pidLine(os.Getpid())
	var want, wantLeft []string
	for i := range 16 {
		name := fmt.Sprintf("slot-%02d", i)
		content := dead
		if i%5 == 0 {
			content = live
			wantLeft = append(wantLeft, name)
		} else {
			want = append(want, name)
		}
		slot := addSlot(t, swarm, name, content)
		buildTree(t, filepath.Join(slot, "wt"), 4, 2, 3)
	}
	before := removers.Load().lent.Load()
	got, err := PruneDead(ws)
	if !slices.Equal(got, want) || err != nil {
		t.Errorf("PruneDead(ws) = %v, %v, want %v, nil", got, err, want)
	}
	if left := entriesOf(t, swarm); !slices.Equal(left, wantLeft) {
		t.Errorf("after PruneDead the swarm holds %v, want %v", left, wantLeft)
	}
	if removers.Load().lent.Load() == before {
		t.Error("PruneDead removed 13 dead slots with no helper")
	}
}
