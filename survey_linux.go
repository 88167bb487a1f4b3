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
	"unsafe"
)

// A survey is the read-only walk of a tree that tells whether processes
// use it, by the inode numbers of what they hold. Processes and tree are
// read one after the other, never at one instant, and each order misses a
// process that moves meanwhile in its own way. A walk after a pass finds
// what the pass saw held in the tree, unless it left the tree meanwhile:
// a shell in wt/build that runs `cd .. && rm -rf build` between the two
// is missed. A pass after a walk finds what the walk saw in the tree,
// but not a file made after the walk and held from outside. So the look
// that lets a detached tree go makes a pass, a walk that records every
// inode (a full survey), and a pass again, and matches both passes with
// the walk; a process must then move twice, with a step in each gap, to
// go unseen. The look before the detach, which only spares a tree in use
// a pointless detach, uses the call's one pass and a walk that keeps only
// the inodes that pass found in use, which costs the directory reads and
// little more.
//
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

// inodesOf returns the inode numbers of the files the processes of the
// passes use.
func inodesOf(passes ...[]procUses) inodeSet {
	set := inodeSet{}
	for _, procs := range passes {
		for _, p := range procs {
			for _, f := range p.files {
				set[f.ino] = struct{}{}
			}
		}
	}
	return set
}

// treeSurvey is what a survey found: the device of the tree's top
// directory and, of the inodes in the tree (the top directory included),
// those that were wanted, each marked with what it was found as. A full
// survey finds them once told which are wanted (see match): it keeps
// every inode, the files' in the listing of what it read of the tree,
// unless the listing could not take them, and the rest in files and dirs.
type treeSurvey struct {
	dev         uint64
	found       map[uint64]uint8
	files, dirs []uint64
	listing     *dirListing
}

// match finds, for a full survey, which of the inodes in wanted are in
// the tree. The passes over /proc that tell them come after the walk, and
// use a few inodes where a tree has thousands: each of the tree's is
// looked up among them once, rather than all kept sorted to be searched.
func (s *treeSurvey) match(wanted inodeSet) {
	s.found = map[uint64]uint8{}
	see := func(ino uint64, kind uint8) {
		if _, ok := wanted[ino]; ok {
			s.found[ino] |= kind
		}
	}
	for _, ino := range s.files {
		see(ino, surveyFile)
	}
	for _, ino := range s.dirs {
		see(ino, surveyDir)
	}
	var listed func(l *dirListing)
	listed = func(l *dirListing) {
		for _, f := range l.files {
			see(f.ino, surveyFile)
		}
		for _, sub := range l.subdirs {
			listed(sub)
		}
	}
	if s.listing != nil {
		listed(s.listing)
	}
}

// uses reports whether any of files is in the surveyed tree: a
// working or root directory that is anything in it, an open or mapped
// file that is a file in it.
func (s treeSurvey) uses(files []inUse) bool {
	if s.found == nil {
		// A full survey not yet matched would find nothing in use: a
		// caller that forgot match must not let a tree go for that.
		panic("slotgc: a full survey asked what it holds before match")
	}
	for _, f := range files {
		kind := s.found[f.ino]
		if kind&surveyFile != 0 || f.dir && kind != 0 {
			return true
		}
	}
	return false
}

// dirListing is the files a full survey read in one directory, but the
// slot's pid file at the top, and the listings of its subdirectories by
// name: the removal that follows unlinks them without reading the
// directories again, and reads each only for what is left (see
// removeTreeContents).
type dirListing struct {
	// names holds the files' names, each ended by a NUL as unlinkat(2)
	// takes it, and files the inode number of each and where its name
	// starts: a directory's files cost the listing two growing slices,
	// not an allocation each.
	names   []byte
	files   []listedFile
	subdirs map[string]*dirListing
}

// listedFile is a file of a dirListing.
type listedFile struct {
	ino uint64
	at  uint32
}

// add lists the file name, whose inode number is ino.
func (l *dirListing) add(name []byte, ino uint64) {
	l.files = append(l.files, listedFile{ino: ino, at: uint32(len(l.names))})
	l.names = append(append(l.names, name...), 0)
}

// reserve makes room in l for files files whose names take bytes, NULs
// included: a directory of hundreds of files is listed without growing
// its slices again and again.
func (l *dirListing) reserve(files, bytes int) {
	l.files = slices.Grow(l.files, files)
	l.names = slices.Grow(l.names, bytes)
}

// filesAmong counts the files among directory records (all but
// directories, those of unknown type included), the bytes their names
// take with their NULs, and what they count against a listing.
func filesAmong(records []byte) (files, bytes, cost int) {
	for len(records) > 0 {
		name, _, typ, rest, err := nextDirent(records)
		if err != nil {
			break
		}
		if name != nil && typ != dtDir {
			files++
			bytes += len(name) + 1
			cost += listedFileCost(name)
		}
		records = rest
	}
	return files, bytes, cost
}

// path returns the name of the listed file f as unlinkat(2) takes it.
func (l *dirListing) path(f listedFile) sysPath { return l.names[f.at:] }

// The memory a tree's listing may take, and what a file and a directory
// are counted to take besides their names: a tree bigger than that is
// listed in part, and the removal reads the rest itself. A prune holds a
// listing for each tree it is removing, a few at most (removalPool).
//
// A file is counted twice what it is stored in (its record, its name and
// the name's NUL), as the slices that hold them may have grown to twice
// what they hold. A directory is counted its dirListing and its entry in
// its parent's map of subdirectories, which may likewise have grown to
// twice what it holds; the first subdirectory listed in a directory
// counts that map's least size as well. (Measured on Go 1.26, amd64: a
// listing of 12,000 nested directories keeps 320 bytes a directory alive,
// one of 12,600 directories side by side 107.)
const (
	maxListingBytes = 2 << 20
	listedFileBytes = 2 * (int(unsafe.Sizeof(listedFile{})) + 1)
	listedDirBytes  = 128
	listedMapBytes  = 256
)

// listedFileCost is what a file of the name counts against a listing.
func listedFileCost(name []byte) int { return listedFileBytes + 2*len(name) }

// listedDirCost is what a subdirectory of the name counts against a
// listing, listed in parent.
func listedDirCost(parent *dirListing, name string) int {
	if parent.subdirs == nil {
		return listedMapBytes + listedDirBytes + len(name)
	}
	return listedDirBytes + len(name)
}

// subdir returns the listing of the subdirectory name, nil if there is
// none (l may be nil).
func (l *dirListing) subdir(name string) *dirListing {
	if l == nil {
		return nil
	}
	return l.subdirs[name]
}

// Magic numbers of statfs(2)'s f_type for the file systems whose
// directory entries may give another inode number than stat does for the
// same file: overlayfs gives a copied-up file's upper inode in one and
// its lower origin's in the other, FUSE whatever its server says.
const (
	overlayfsMagic = 0x794c7630
	fuseMagic      = 0x65735546
)

// surveyTree walks the tree under the open directory fd and records which
// of the inodes in wanted are in it, or, if full, all of them, and lists
// its files for the removal (see dirListing); a slot's tree (slot) is
// read without its pid file (see walker.walk). It
// returns an error naming a directory it cannot open or read, and a
// mount point inside as an error naming it (path is the tree's path, for
// messages); where several fail, the error names the first by path. It
// changes nothing but, for the walk, the mode of a directory the caller
// owns and may not read or search, which it sets back.
func surveyTree(fd int, path string, wanted inodeSet, full, slot bool) (treeSurvey, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return treeSurvey{}, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	var sfs syscall.Statfs_t
	if err := ignoringEINTR(func() error { return syscall.Fstatfs(fd, &sfs) }); err != nil {
		return treeSurvey{}, &fs.PathError{Op: "fstatfs", Path: path, Err: err}
	}
	w := &surveyWalk{pool: removalWorkers(), dev: uint64(st.Dev), wanted: wanted, full: full}
	if !full {
		w.found = map[uint64]uint8{}
	}
	if sfs.Type == overlayfsMagic || sfs.Type == fuseMagic {
		w.probe.Store(inoStatAll)
	}
	var top *dirListing
	if full {
		w.listable.Store(maxListingBytes)
		top = &dirListing{}
	}
	first := newWalker(w)
	first.see(st.Ino, surveyDir)
	restore := readableForSurvey(fd, &st)
	defer restore()
	first.walk(fd, path, &st, slot, top)
	first.done()
	w.helpers.Wait()
	if err := w.err(); err != nil {
		return treeSurvey{}, err
	}
	return treeSurvey{dev: w.dev, found: w.found, files: w.files, dirs: w.dirs, listing: top}, nil
}

// surveyBuf is the size of the buffer each of a survey's walkers reads
// directories through: a directory of a thousand entries in a call or two.
const surveyBuf = 32 << 10

// surveyBufs keeps the walkers' buffers for the next: a survey of a big
// tree starts a walker for most of its directories.
var surveyBufs = sync.Pool{New: func() any { return new([surveyBuf]byte) }}

// newWalker returns a walker of the survey w, with a buffer from
// surveyBufs that done gives back.
func newWalker(w *surveyWalk) *walker {
	return &walker{surveyWalk: w, buf: surveyBufs.Get().(*[surveyBuf]byte)[:]}
}

// Whether a file's d_ino is its st_ino: so it is taken to be, unless the
// file system is one where it may not be, or the first file stat'ed
// shows it is not, or is on another device than its tree (overlayfs
// without xino); else every file is stat'ed.
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
	full    bool
	probe   atomic.Int32
	helpers sync.WaitGroup
	mu      sync.Mutex
	found   map[uint64]uint8
	// files and dirs gather the walkers' inodes in a full survey, but
	// those of the files the listing holds.
	files, dirs []uint64
	errs        []*fs.PathError
	// listable counts down the bytes the listing may still take.
	listable atomic.Int64
}

// walker is one goroutine's part of a survey: the buffer it reads
// directories through, and, in a full survey, the inodes it met that
// the listing does not hold, until it is done.
type walker struct {
	*surveyWalk
	buf         []byte
	files, dirs []uint64
}

// see records the inode ino, found as kind, if it is wanted.
func (w *walker) see(ino uint64, kind uint8) {
	switch {
	case kind == 0:
	case w.full && kind == surveyFile:
		w.files = append(w.files, ino)
	case w.full:
		w.dirs = append(w.dirs, ino)
	default:
		if _, ok := w.wanted[ino]; ok {
			w.mu.Lock()
			w.found[ino] |= kind
			w.mu.Unlock()
		}
	}
}

// done hands the inodes the walker met to the survey, and its buffer
// back.
func (w *walker) done() {
	w.mu.Lock()
	w.surveyWalk.files = append(w.surveyWalk.files, w.files...)
	w.surveyWalk.dirs = append(w.surveyWalk.dirs, w.dirs...)
	w.mu.Unlock()
	surveyBufs.Put((*[surveyBuf]byte)(w.buf))
	w.buf = nil
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

// list takes n bytes of what the listing may take, and reports whether
// there were.
func (w *surveyWalk) list(n int) bool {
	if w.listable.Add(-int64(n)) >= 0 {
		return true
	}
	w.listable.Add(int64(n))
	return false
}

// walk records the tree under the open directory fd, at path, and lists
// it in list if that is not nil. At the top of a slot's tree (slotTop)
// the slot's own pid file is left out: every scan opens it for a moment,
// and one that happens to be reading it does not use the slot. Any other
// tree's file of that name is a file like the rest.
//
// A full survey fails for a directory changed while it was read (before
// is its status, taken before the read): a subdirectory renamed within it
// meanwhile may have been read under neither name (ext4 returns entries
// in hash order), and the files under it would go unrecorded. Its
// modification time tells, as every entry made, removed or renamed sets
// it anew: to the nanosecond on Linux 6.13 and later once a stat has
// read it (multigrain timestamps;
// https://docs.kernel.org/filesystems/multigrain-ts.html), and to the
// clock tick before, so that there a change in the same tick as the one
// before it can go unseen.
func (w *walker) walk(fd int, path string, before *syscall.Stat_t, slotTop bool, list *dirListing) {
	subdirs, err := w.readDir(fd, path, slotTop, list)
	if err == nil && w.full {
		err = unchanged(fd, path, before)
	}
	if err != nil {
		w.fail(err)
		return
	}
	for i, name := range subdirs {
		subPath := filepath.Join(path, name)
		sub, restore, err := w.open(fd, name, subPath)
		if err != nil {
			w.fail(err)
			continue
		}
		// A name read twice (a directory renamed during the read, or a
		// FUSE server that says so) is listed once: a second listing
		// would replace the first, the only record of its files' inodes,
		// so the second directory's files are recorded unlisted instead.
		var subList *dirListing
		if list != nil && list.subdir(name) == nil && w.list(listedDirCost(list, name)) {
			subList = &dirListing{}
			if list.subdirs == nil {
				list.subdirs = make(map[string]*dirListing)
			}
			list.subdirs[name] = subList
		}
		// A subdirectory is handed off only while this walker has more of
		// its own to walk: else it would just wait for the helper.
		if i < len(subdirs)-1 && w.pool.lend() {
			w.helpers.Go(func() {
				defer w.pool.giveBack()
				helper := newWalker(w.surveyWalk)
				helper.walkOpened(sub, subPath, restore, subList)
				helper.done()
			})
			continue
		}
		w.walkOpened(sub, subPath, restore, subList)
	}
}

// errChangedWhileRead is the error of a directory changed while a full
// survey read it.
var errChangedWhileRead = errors.New("changed while it was read")

// unchanged returns an error naming the open directory fd, at path, if it
// is not the one whose status before gives, as it was.
func unchanged(fd int, path string, before *syscall.Stat_t) *fs.PathError {
	var after syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &after) }); err != nil {
		return &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if after.Ino != before.Ino || after.Mtim != before.Mtim {
		return &fs.PathError{Op: "readdirent", Path: path, Err: errChangedWhileRead}
	}
	return nil
}

// readDir reads the directory fd, at path, records its entries, lists
// its files in list if that is not nil and the listing may take them,
// and returns the names of its subdirectories.
func (w *walker) readDir(fd int, path string, slotTop bool, list *dirListing) ([]string, *fs.PathError) {
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		return nil, &fs.PathError{Op: "seek", Path: path, Err: err}
	}
	var subdirs []string
	for {
		n, err := getdents(fd, w.buf)
		switch {
		case err != nil:
			return nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		case n <= 0:
			return subdirs, nil
		}
		// The listing takes the records' files at once, if it has room
		// for them all, else one by one while it has.
		var listAll bool
		if list != nil {
			files, bytes, cost := filesAmong(w.buf[:n])
			if listAll = w.list(cost); listAll {
				list.reserve(files, bytes)
			}
		}
		for records := w.buf[:n]; len(records) > 0; {
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
			case slotTop && string(name) == PIDFile:
			default:
				listed := listAll || list != nil && w.list(listedFileCost(name))
				if listed {
					list.add(name, ino)
				}
				if err := w.statFile(fd, name, ino, path, listed); err != nil {
					return nil, err
				}
			}
		}
	}
}

// statFile records the file name in dirfd, whose d_ino is ino, and by
// its st_ino where d_ino cannot be trusted to be it; listed tells that
// the listing holds d_ino already.
func (w *walker) statFile(dirfd int, name []byte, ino uint64, path string, listed bool) *fs.PathError {
	if w.probe.Load() == inoTrusted {
		if !listed {
			w.see(ino, surveyFile)
		}
		return nil
	}
	stx, err := statxOf(dirfd, name, atSymlinkNofollow|atStatxDontSync, statxInoMask)
	if err != nil {
		return &fs.PathError{Op: "statx", Path: filepath.Join(path, string(name)), Err: err}
	}
	if stx.ino != ino || stx.dev() != w.dev {
		w.probe.Store(inoStatAll)
	} else {
		w.probe.CompareAndSwap(inoUnprobed, inoTrusted)
	}
	if !listed {
		w.see(ino, surveyFile)
	}
	if stx.ino != ino {
		w.see(stx.ino, surveyFile)
	}
	return nil
}

// open opens the subdirectory name of dirfd, at path, for the walk,
// giving the caller read and search permission on it first if it owns it
// and lacks them; restore sets its mode back.
func (w *walker) open(dirfd int, name, path string) (fd int, restore func(), err *fs.PathError) {
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
func (w *walker) walkOpened(fd int, path string, restore func(), list *dirListing) {
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
	w.walk(fd, path, &st, false, list)
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
