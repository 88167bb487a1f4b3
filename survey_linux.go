//go:build linux

package slotgc

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// A survey is the read-only walk of a tree that tells whether processes
// use it. It comes after the pass over /proc and looks each inode it meets
// up in the set of those the pass found in use, keeping only those: a
// walk of a big tree costs its directory reads and little more. The order
// matters: a process the pass found holding something in the tree (a
// working directory, an open or mapped file) is found by the walk unless
// it moved that out of the tree meanwhile, while a walk made first would
// miss a file made in the tree after it and held open from outside.
// Subtrees are walked side by side within the removal workers' bound: on
// a tmpfs, where the reads are all processor time, that divides the walk
// among the processors.

// surveyDir and surveyFile mark, in a survey, what an inode number was
// found as.
const (
	surveyDir uint8 = 1 << iota
	surveyFile
)

// inodeSet is the inode numbers of the files processes use.
type inodeSet map[uint64]struct{}

// inodesOf returns the inode numbers of the files the processes use.
func inodesOf(procs []procUses) inodeSet {
	set := inodeSet{}
	for _, p := range procs {
		for _, f := range p.files {
			set[f.ino] = struct{}{}
		}
	}
	return set
}

// treeSurvey is what a survey found: the device of the tree's top
// directory and the inode numbers, of those it was asked about, that are
// in the tree, the top directory included, each marked with what it was
// found as; and, if it was asked to keep it, what it read of the tree.
type treeSurvey struct {
	dev     uint64
	found   map[uint64]uint8
	listing *dirListing
}

// dirListing is the files a survey read in one directory, but the slot's
// pid file at the top, and the listings of its subdirectories by name:
// the removal that follows the last survey unlinks them without reading
// the directories again, and reads each only for what is left (see
// removeTreeContents). A directory met once maxListedFiles files are
// listed gets no listing.
type dirListing struct {
	files   []dirEntry
	subdirs map[string]*dirListing
}

// maxListedFiles bounds the files a survey lists, and so the memory the
// listing takes (about 50 bytes a file): the removal reads the
// directories beyond it itself.
const maxListedFiles = 1 << 18

// subdir returns the listing of the subdirectory name, nil if there is
// none (l may be nil).
func (l *dirListing) subdir(name string) *dirListing {
	if l == nil {
		return nil
	}
	return l.subdirs[name]
}

// uses reports whether any of files is in the surveyed tree: a
// working or root directory that is anything in it, an open or mapped
// file that is a file in it.
func (s treeSurvey) uses(files []inUse) bool {
	for _, f := range files {
		kind := s.found[f.ino]
		if kind&surveyFile != 0 || f.dir && kind != 0 {
			return true
		}
	}
	return false
}

// surveyTree walks the tree under the open directory fd and records which
// of the inodes in wanted are in it. It returns an error naming a
// directory it cannot open or read, and a mount point inside as an error
// naming it (path is the tree's path, for messages); where several
// directories fail, the error names the first by path. It changes nothing
// but, for the walk, the mode of a directory the caller owns and may not
// read or search, which it sets back.
//
// With list, the survey keeps what it read for the removal (see
// dirListing).
func surveyTree(fd int, path string, wanted inodeSet, list bool) (treeSurvey, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return treeSurvey{}, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	w := &surveyWalk{pool: removalWorkers(), dev: uint64(st.Dev), wanted: wanted, found: map[uint64]uint8{}}
	w.see(st.Ino, surveyDir)
	var top *dirListing
	if list {
		w.unlisted.Store(maxListedFiles)
		top = &dirListing{}
	}
	restore := readableForSurvey(fd, &st)
	defer restore()
	w.walk(fd, path, true, make([]byte, surveyBuf), top)
	w.helpers.Wait()
	if err := w.err(); err != nil {
		return treeSurvey{}, err
	}
	return treeSurvey{dev: w.dev, found: w.found, listing: top}, nil
}

// surveyBuf is the size of the buffer each of a survey's walkers reads
// directories through: a directory of a thousand entries in a call or two.
const surveyBuf = 32 << 10

// Whether a file's d_ino is its st_ino, found out on the first file met:
// on overlayfs without xino it is not, and every file is stat'ed.
const (
	inoUnprobed int32 = iota
	inoTrusted
	inoStatAll
)

// surveyWalk is one survey, shared by its walkers.
type surveyWalk struct {
	pool    *removalPool
	dev     uint64
	wanted  inodeSet
	probe   atomic.Int32
	helpers sync.WaitGroup
	mu      sync.Mutex
	found   map[uint64]uint8
	errs    []*fs.PathError
	// unlisted counts down the files the walk may still list.
	unlisted atomic.Int64
}

// see records the inode ino, found as kind, if it is wanted.
func (w *surveyWalk) see(ino uint64, kind uint8) {
	if _, ok := w.wanted[ino]; !ok || kind == 0 {
		return
	}
	w.mu.Lock()
	w.found[ino] |= kind
	w.mu.Unlock()
}

// fail records an error of the walk, which goes on with the rest of the
// tree.
func (w *surveyWalk) fail(err *fs.PathError) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// err returns the error of the first failed directory by path: with every
// failure of the tree recorded, a caller reads the same error for the same
// tree whichever walker met which first.
func (w *surveyWalk) err() error {
	if len(w.errs) == 0 {
		return nil
	}
	return slices.MinFunc(w.errs, func(a, b *fs.PathError) int { return cmp.Compare(a.Path, b.Path) })
}

// walk records the tree under the open directory fd, at path, reading
// its directories through buf, which it keeps using for the
// subdirectories it walks itself, and lists it in list if that is not
// nil. The slot's own pid file is left out at the top: every scan opens
// it for a moment, and one that happens to be reading it does not use
// the slot.
func (w *surveyWalk) walk(fd int, path string, top bool, buf []byte, list *dirListing) {
	subdirs, err := w.readDir(fd, path, top, buf, list)
	if err != nil {
		w.fail(err)
		return
	}
	if list != nil && list.files != nil && w.unlisted.Add(-int64(len(list.files))) < 0 {
		list.files = nil
	}
	for i, name := range subdirs {
		subPath := filepath.Join(path, name)
		sub, restore, err := w.open(fd, name, subPath)
		if err != nil {
			w.fail(err)
			continue
		}
		var subList *dirListing
		if list != nil && w.unlisted.Load() > 0 {
			subList = &dirListing{}
			if list.subdirs == nil {
				list.subdirs = make(map[string]*dirListing, len(subdirs))
			}
			list.subdirs[name] = subList
		}
		// A subdirectory is handed off only while this walker has more of
		// its own to walk: else it would just wait for the helper.
		if i < len(subdirs)-1 && w.pool.lend() {
			w.helpers.Go(func() {
				defer w.pool.giveBack()
				w.walkOpened(sub, subPath, restore, make([]byte, surveyBuf), subList)
			})
			continue
		}
		w.walkOpened(sub, subPath, restore, buf, subList)
	}
}

// readDir reads the directory fd, at path, through buf, records its
// wanted entries, lists its files in list if that is not nil, and returns
// the names of its subdirectories.
func (w *surveyWalk) readDir(fd int, path string, top bool, buf []byte, list *dirListing) ([]string, *fs.PathError) {
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		return nil, &fs.PathError{Op: "seek", Path: path, Err: err}
	}
	var subdirs []string
	for {
		n, err := getdents(fd, buf)
		switch {
		case err != nil:
			return nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		case n <= 0:
			return subdirs, nil
		}
		for records := buf[:n]; len(records) > 0; {
			name, ino, typ, rest, err := nextDirent(records)
			if err != nil {
				return nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
			}
			records = rest
			switch {
			case name == nil:
			case typ == dtDir || typ == dtUnknown && isDirAt(fd, string(name)):
				w.see(ino, surveyDir)
				subdirs = append(subdirs, string(name))
			case top && string(name) == PIDFile:
			default:
				if list != nil {
					list.files = append(list.files, dirEntry{name: string(name), ino: ino})
				}
				w.see(ino, surveyFile)
				if err := w.statFile(fd, name, ino, path); err != nil {
					return nil, err
				}
			}
		}
	}
}

// statFile records the st_ino of the file name in dirfd, whose d_ino is
// ino, where d_ino cannot be trusted to be it, and finds that out on the
// first file met.
func (w *surveyWalk) statFile(dirfd int, name []byte, ino uint64, path string) *fs.PathError {
	if w.probe.Load() == inoTrusted {
		return nil
	}
	stIno, err := statxIno(dirfd, name, atSymlinkNofollow)
	if err != nil {
		return &fs.PathError{Op: "statx", Path: filepath.Join(path, string(name)), Err: err}
	}
	if stIno != ino {
		w.probe.Store(inoStatAll)
	} else {
		w.probe.CompareAndSwap(inoUnprobed, inoTrusted)
	}
	w.see(stIno, surveyFile)
	return nil
}

// open opens the subdirectory name of dirfd, at path, for the walk,
// giving the caller read and search permission on it first if it owns it
// and lacks them; restore sets its mode back.
func (w *surveyWalk) open(dirfd int, name, path string) (fd int, restore func(), err *fs.PathError) {
	fd, openErr := openSubdir(dirfd, name, w.dev)
	restore = func() {}
	if errors.Is(openErr, syscall.EACCES) {
		fd, restore, openErr = openOwnDir(dirfd, name, w.dev)
	}
	if openErr != nil {
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: openErr}
	}
	w.pool.fds.Add(1)
	return fd, restore, nil
}

// walkOpened records the directory open as fd, at path, and the tree
// under it, listing it in list if that is not nil, then closes it and
// calls restore.
func (w *surveyWalk) walkOpened(fd int, path string, restore func(), buf []byte, list *dirListing) {
	defer restore()
	defer w.pool.fds.Add(-1)
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		w.fail(&fs.PathError{Op: "fstat", Path: path, Err: err})
		return
	}
	w.see(st.Ino, surveyDir)
	defer readableForSurvey(fd, &st)()
	w.walk(fd, path, false, buf, list)
}

// readableForSurvey gives the caller read and search permission on the
// open directory fd, whose status is st, if it owns it and lacks them,
// and returns what sets its mode back.
func readableForSurvey(fd int, st *syscall.Stat_t) (restore func()) {
	mode := st.Mode & 0o7777
	if int(st.Uid) != os.Geteuid() || mode&0o500 == 0o500 {
		return func() {}
	}
	if syscall.Fchmod(fd, mode|0o500) != nil {
		return func() {}
	}
	return func() { syscall.Fchmod(fd, mode) }
}

// openOwnDir opens the directory name in dirfd, which the caller may not
// read, if the caller owns it, by giving itself read and search
// permission first through an O_PATH descriptor and its /proc/self/fd
// link, as makeUsableAt does; restore sets the mode back.
func openOwnDir(dirfd int, name string, dev uint64) (fd int, restore func(), err error) {
	path, err := makePath(nil, name)
	if err != nil {
		return -1, nil, err
	}
	ref, err := openat(dirfd, path, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(ref, &st); err != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o500 == 0o500 {
		syscall.Close(ref)
		return -1, nil, syscall.EACCES
	}
	link := "/proc/self/fd/" + strconv.Itoa(ref)
	mode := st.Mode & 0o7777
	if err := syscall.Chmod(link, mode|0o500); err != nil {
		syscall.Close(ref)
		return -1, nil, syscall.EACCES
	}
	restore = func() {
		syscall.Chmod(link, mode)
		syscall.Close(ref)
	}
	fd, err = openSubdir(dirfd, name, dev)
	if err != nil {
		restore()
		return -1, nil, err
	}
	return fd, restore, nil
}
