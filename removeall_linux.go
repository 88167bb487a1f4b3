//go:build linux

package slotgc

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A tree is walked and removed through descriptors only: every directory is
// opened relative to its parent's descriptor with openat2(2), never by a
// path from the top, so no rename or symlink swapped in while the walk runs
// can steer it out of the tree
// (https://man7.org/linux/man-pages/man2/openat2.2.html).

// dirFlags open a directory of a tree for reading its entries, never
// through a symlink.
const dirFlags = syscall.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// noOpenat2 is set once openat2 is found missing (Linux before 5.6, a
// seccomp filter that refuses it, user-mode emulation); from then on
// directories are opened with openat(2), and a mount point is told by its
// device and, for a bind mount from the same file system, its mount id.
var noOpenat2 atomic.Bool

// errMountPoint says a directory met on a walk is a mount point; callers
// wrap it in ErrMountInside.
var errMountPoint = errors.New("a mount point")

// openSubdir opens the directory name inside the directory dirfd (whose
// device is dev) without following a symlink or crossing into another
// mount: crossing yields errMountPoint.
func openSubdir(dirfd int, name string, dev uint64) (int, error) {
	var buf [nameBuf]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return -1, err
	}
	if !noOpenat2.Load() {
		how := openHow{flags: dirFlags, resolve: resolveNoXdev | resolveNoSymlinks | resolveNoMagiclinks | resolveBeneath}
		fd, err := openat2(dirfd, path, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, syscall.EXDEV):
			return -1, errMountPoint
		case errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.EPERM):
			noOpenat2.Store(true)
		default:
			return -1, err
		}
	}
	fd, err := openat(dirfd, path, dirFlags, 0)
	if err != nil {
		return -1, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if uint64(st.Dev) != dev {
		syscall.Close(fd)
		return -1, errMountPoint
	}
	// A bind mount from the same file system keeps the device: only the
	// mount ids tell.
	parentMount, err := mountID(dirfd)
	if err == nil {
		var childMount string
		if childMount, err = mountID(fd); err == nil && childMount != parentMount {
			err = errMountPoint
		}
	}
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		// No descriptor to read fdinfo with: the walk waits for one, as
		// for any other open, rather than take the directory for a mount.
		syscall.Close(fd)
		return -1, err
	case err != nil:
		syscall.Close(fd)
		return -1, fmt.Errorf("%w (or cannot tell: %v)", errMountPoint, err)
	}
	return fd, nil
}

// mountID returns the id of the mount the open file fd is on, from the
// mnt_id line of /proc/self/fdinfo/<fd> (Linux 3.15 and later;
// https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html).
func mountID(fd int) (string, error) {
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(info)) {
		if id, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strings.TrimSpace(id), nil
		}
	}
	return "", errors.New("no mnt_id in /proc/self/fdinfo")
}

// dirIdentity returns the device and inode of an open directory.
func dirIdentity(fd int) (dev, ino uint64, err error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// nameBuf holds a file name and its NUL: Linux names are at most 255
// bytes (NAME_MAX), and a longer one outgrows the buffer onto the heap.
const nameBuf = 256

// fdWaitLimit is how long a walk waits for a descriptor to come free while
// the process or the system is out of them (EMFILE, ENFILE), before the
// directory it could not open fails the removal. A directory is never
// skipped for want of one. Tests shorten it.
var fdWaitLimit = 2 * time.Second

// removeTreeContents removes everything inside the open directory fd, whose
// device is dev, depth first, through descriptors. It never crosses into
// another mount and never follows a symlink (a symlink is removed as
// itself). Where the caller lacks permission on a directory it owns, the
// directory is made usable (u+rwx) and the step tried again, as
// `go clean -modcache` does for Go's read-only module cache; a directory of
// another user's stays as it is and its error stands. A failure on one
// entry does not stop the others; the error joins them all.
//
// Subdirectories, and shares of the files of a directory that holds many,
// are handed to other goroutines while the removal workers' bound allows
// (see removalPool): on a disk that makes each freed file wait on the
// device, as ext4 mounted with discard does, walkers that wait side by
// side finish sooner than one alone. Each walker opens its directories as
// a lone one would.
//
// At the top of a slot's tree (top) the pid file goes last, and only once
// everything else has gone, every helper's share included: a pruner that
// crashes or fails midway leaves a tree whose pid file still tells that it
// is garbage (see finishLeftover).
//
// A listing, if not nil, is what the guard's survey read of the tree just
// before: the files it names are unlinked as they come, those that are
// gone or are no longer files passed over, and each directory is then read
// for what is left, which is removed as it would be without a listing. So
// a listing saves reading the directories in full a second time, and a
// tree changed since it was read is removed all the same.
func removeTreeContents(fd int, path string, dev uint64, top bool, listing *dirListing) error {
	r := treeRemoval{pool: removalWorkers(), dev: dev}
	r.removeContents(fd, path, top, listing)
	return r.err()
}

// minHelpedEntries is how many entries a tree must have shown before its
// walkers take helpers: a tree smaller than that is gone in about the time
// it takes to start one, and is removed by its caller alone.
const minHelpedEntries = 64

// filesPerHelper is how many of a directory's files a helper takes at
// once: enough that starting it costs little beside their removal, few
// enough that a directory of a few hundred files is shared.
const filesPerHelper = 64

// treeRemoval is the removal of one tree, shared by its walkers.
type treeRemoval struct {
	pool *removalPool
	dev  uint64
	// seen counts the entries read so far, which tells how big the tree
	// is before it is walked through.
	seen atomic.Int64
	mu   sync.Mutex
	errs []error
}

// mayHelp reports whether the tree is big enough for helpers.
func (r *treeRemoval) mayHelp() bool { return r.seen.Load() >= minHelpedEntries }

// fail records an error of the removal.
func (r *treeRemoval) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// err joins the removal's errors, ordered by their text: walkers record
// them in whatever order they meet them, and a caller should read the
// same error for the same tree.
func (r *treeRemoval) err() error {
	type keyed struct {
		text string
		err  error
	}
	sorted := make([]keyed, len(r.errs))
	for i, err := range r.errs {
		sorted[i] = keyed{err.Error(), err}
	}
	slices.SortFunc(sorted, func(a, b keyed) int { return strings.Compare(a.text, b.text) })
	errs := make([]error, len(sorted))
	for i, k := range sorted {
		errs[i] = k.err
	}
	return errors.Join(errs...)
}

// removeContents removes what the open directory fd, at path, holds, the
// files listing names first, and reports whether all of it went.
func (r *treeRemoval) removeContents(fd int, path string, top bool, listing *dirListing) bool {
	if listing != nil && len(listing.files) > 0 {
		r.unlinkListed(fd, listing)
	}
	entries, err := readTreeEntries(fd)
	if errors.Is(err, syscall.EACCES) && makeUsable(fd) {
		entries, err = readTreeEntries(fd)
	}
	if err != nil {
		r.fail(&fs.PathError{Op: "readdirent", Path: path, Err: err})
		return false
	}
	r.seen.Add(int64(len(entries)))
	removalOrder(entries, top)
	var last *dirEntry
	if n := len(entries); top && n > 0 && entries[n-1].name == PIDFile {
		last, entries = &entries[n-1], entries[:n-1]
	}
	var helpers sync.WaitGroup
	var failed atomic.Bool
	unlinkFiles := func(share []dirEntry) {
		for _, f := range share {
			if !r.unlink(fd, path, f.name, 0) {
				failed.Store(true)
			}
		}
	}
	for i := 0; i < len(entries); i++ {
		if !entries[i].isDir {
			entries = lendShares(r, entries, i, &helpers, unlinkFiles)
		}
		e := entries[i]
		// A subdirectory is handed off only while this walker has more of
		// its own to do: else it would just wait for the helper.
		if !r.removeEntry(fd, path, e, i < len(entries)-1, &helpers, &failed, listing.subdir(e.name)) {
			failed.Store(true)
		}
	}
	helpers.Wait()
	if failed.Load() {
		return false
	}
	return last == nil || r.removeEntry(fd, path, *last, false, nil, nil, nil)
}

// unlinkListed unlinks the files of the open directory fd that its
// listing names, as removeContents does its files, passing over those
// that fail: the directory is read after, and what is left removed then.
func (r *treeRemoval) unlinkListed(fd int, listing *dirListing) {
	files := listing.files
	r.seen.Add(int64(len(files)))
	slices.SortFunc(files, func(a, b listedFile) int { return cmp.Compare(a.ino, b.ino) })
	var helpers sync.WaitGroup
	unlinkFiles := func(share []listedFile) {
		for _, f := range share {
			unlinkPath(fd, listing.path(f), 0)
		}
	}
	for i := 0; i < len(files); i++ {
		files = lendShares(r, files, i, &helpers, unlinkFiles)
		unlinkFiles(files[i : i+1])
	}
	helpers.Wait()
}

// lendShares hands files of a directory's, from the i-th on, to helpers
// that call each on them, while those left are many and the pool lends:
// filesPerHelper each, taken from the end, while the caller goes on from
// the start. It returns the files left to the caller.
func lendShares[F any](r *treeRemoval, files []F, i int, helpers *sync.WaitGroup, each func([]F)) []F {
	for len(files)-i >= 2*filesPerHelper && r.mayHelp() && r.pool.lend() {
		share := files[len(files)-filesPerHelper:]
		files = files[:len(files)-filesPerHelper]
		helpers.Go(func() {
			defer r.pool.giveBack()
			each(share)
		})
	}
	return files
}

// removalOrder sorts the entries of a directory for removal: directories
// first, so that helpers take them while this walker unlinks the files;
// then the files by inode number, the order of their inodes on disk; and at
// the top of a slot's tree, its pid file last.
func removalOrder(entries []dirEntry, top bool) {
	rank := func(e dirEntry) int {
		switch {
		case top && e.name == PIDFile:
			return 2
		case e.isDir:
			return 0
		}
		return 1
	}
	slices.SortFunc(entries, func(a, b dirEntry) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.ino, b.ino))
	})
}

// removeEntry removes the entry e of the open directory dirfd, at dirPath,
// and reports whether it went; listing is the listing of a subdirectory.
// A subdirectory may be handed to a helper goroutine, when others tells
// that this walker has more to do and the pool lends one; the helper is
// counted in helpers, and its failure set in failed.
func (r *treeRemoval) removeEntry(dirfd int, dirPath string, e dirEntry, others bool, helpers *sync.WaitGroup, failed *atomic.Bool, listing *dirListing) bool {
	if !e.isDir {
		return r.unlink(dirfd, dirPath, e.name, 0)
	}
	path := filepath.Join(dirPath, e.name)
	sub, err := r.openDir(dirfd, e.name)
	if err != nil {
		r.fail(&fs.PathError{Op: "open", Path: path, Err: err})
		return false
	}
	if others && r.mayHelp() && r.pool.lend() {
		helpers.Go(func() {
			defer r.pool.giveBack()
			if !r.removeDir(dirfd, dirPath, e.name, sub, path, listing) {
				failed.Store(true)
			}
		})
		return true
	}
	return r.removeDir(dirfd, dirPath, e.name, sub, path, listing)
}

// removeDir empties the open directory sub, the entry name of dirfd, whose
// listing is listing, closes it and removes it, and reports whether it
// went. The walker of dirfd keeps it open until its helpers are done.
func (r *treeRemoval) removeDir(dirfd int, dirPath, name string, sub int, path string, listing *dirListing) bool {
	emptied := r.removeContents(sub, path, false, listing)
	r.closeDir(sub)
	return emptied && r.unlink(dirfd, dirPath, name, atRemoveDir)
}

// unlink removes the entry name of the open directory dirfd, at dirPath
// (flags atRemoveDir for a directory), making dirfd usable first if the
// caller owns it and may not write it; an entry already gone counts as
// removed.
func (r *treeRemoval) unlink(dirfd int, dirPath, name string, flags int) bool {
	if err := unlinkEntry(dirfd, name, flags); err != nil {
		r.fail(&fs.PathError{Op: "unlinkat", Path: filepath.Join(dirPath, name), Err: err})
		return false
	}
	return true
}

// unlinkEntry is unlink without the error's path, and without recording
// it.
func unlinkEntry(dirfd int, name string, flags int) error {
	var buf [nameBuf]byte
	path, err := makePath(buf[:], name)
	if err != nil {
		return err
	}
	return unlinkPath(dirfd, path, flags)
}

// unlinkPath is unlinkEntry for a name made a path already.
func unlinkPath(dirfd int, path sysPath, flags int) error {
	err := unlinkat(dirfd, path, flags)
	if errors.Is(err, syscall.EACCES) && makeUsable(dirfd) {
		err = unlinkat(dirfd, path, flags)
	}
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// openDir opens the subdirectory name of dirfd for the walk (see
// openSubdir), making it usable first if the caller owns it and may not
// read it, and counts the descriptor in the pool's. Out of descriptors it
// waits, up to fdWaitLimit, for one to come free.
func (r *treeRemoval) openDir(dirfd int, name string) (int, error) {
	var fd int
	var err error
	pollUntil(func() bool {
		fd, err = openSubdir(dirfd, name, r.dev)
		if errors.Is(err, syscall.EACCES) && makeUsableAt(dirfd, name) {
			fd, err = openSubdir(dirfd, name, r.dev)
		}
		return !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE)
	}, fdWaitLimit)
	if err == nil {
		r.pool.fds.Add(1)
	}
	return fd, err
}

// closeDir closes a descriptor openDir opened.
func (r *treeRemoval) closeDir(fd int) {
	syscall.Close(fd)
	r.pool.fds.Add(-1)
}

// holdsNoFiles reports whether the tree under the open directory fd, whose
// device is dev, holds nothing but directories. A directory that cannot be
// read, or a mount met on the way, is an error: it cannot tell.
func holdsNoFiles(fd int, dev uint64) (bool, error) {
	entries, err := readTreeEntries(fd)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !e.isDir {
			return false, nil
		}
		sub, err := openSubdir(fd, e.name, dev)
		if err != nil {
			return false, err
		}
		empty, err := holdsNoFiles(sub, dev)
		syscall.Close(sub)
		if !empty || err != nil {
			return false, err
		}
	}
	return true, nil
}

// makeUsable gives the owner of the open directory fd read, write and
// search permission on it, if the caller is that owner, and reports whether
// it did.
func makeUsable(fd int) bool {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o700 == 0o700 {
		return false
	}
	return syscall.Fchmod(fd, st.Mode&0o7777|0o700) == nil
}

// makeUsableAt is makeUsable for the directory name inside dirfd, which
// may not even be readable: it is reached by an O_PATH descriptor, which
// needs no permission on the directory itself, and its mode is changed
// through that descriptor's /proc/self/fd link, which names exactly the
// inode opened, so a symlink swapped in meanwhile is never followed.
func makeUsableAt(dirfd int, name string) bool {
	path, err := makePath(nil, name)
	if err != nil {
		return false
	}
	fd, err := openat(dirfd, path, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o700 == 0o700 {
		return false
	}
	return syscall.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), st.Mode&0o7777|0o700) == nil
}
