//go:build linux

package slotgc

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// A process uses a slot when its working or root directory is in the
// slot's tree, it holds a file of the tree open, or it has one mapped
// (mmap(2) keeps a file in use after its descriptor is closed). An open
// directory does not count: directories are held open only while
// something walks a tree, and every PruneDead holds the tree it works on
// so; counting them would have concurrent PruneDead calls keep each
// other's slots. Nor does the slot's pid file, which every scan opens for
// a moment.
//
// What processes use is read from /proc (see procfiles_linux.go) and
// compared with what a walk of the slot's tree finds, by inode number on
// the swarm's file system, never by path: a process in another mount
// namespace names its files by paths that mean nothing here. The file
// system is told by mount (see mounts_linux.go), not by stat(2)'s st_dev,
// which differs between the directories and the files of one overlayfs
// without xino, and between the subvolumes of one btrfs. Inode numbers
// alone may then collide (overlayfs's layers number their inodes each on
// their own, as do btrfs's subvolumes): a collision can only make a slot
// look used, which keeps it; nothing here makes a used slot look unused.
//
// The walk records, for each entry, the inode number its directory record
// gives (d_ino) and, for each directory, the one fstat(2) gives, since
// they differ on overlayfs without xino: a directory's st_ino, which a
// process's working directory shows, is the overlay's own, d_ino the
// layer's. Files agree there (and their fdinfo and maps name the same
// inode); where a file system's d_ino disagrees with st_ino for a file
// (a FUSE daemon may fill in either as it likes), the first file met
// tells, and every entry is then stat'ed as well.
//
// Cannot tell means keep:
//
//   - A directory of the tree that cannot be opened or read (another
//     user's that this one may not read, running out of descriptors, a
//     tree changing under the walk) keeps the slot, with an error that
//     names the directory and why. A directory the caller owns but may
//     not read or search is made so (u+rx) for the walk and set back
//     after: the removal would make it usable the same way, so the walk
//     must see whatever the removal could reach.
//   - A process whose files cannot be read for any reason but the three
//     below keeps every slot of the call, with an error naming it; so
//     does a /proc that shows another pid namespace's processes (see
//     probeScope.procIsOurs), or one that cannot be read at all.
//   - Another user's process, which /proc does not open without
//     privilege (https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html),
//     is passed over, as is a process hidden by /proc's hidepid option:
//     run as root to see them.
//   - A process that even a caller with CAP_SYS_PTRACE (root) may not
//     open is kept from it by a security module or a sandbox the caller
//     runs in (Landlock, SELinux, AppArmor; pid 1 of the sandbox this
//     package's tests run in is one): it is passed over like another
//     user's, as the caller cannot see past its own confinement.
//   - A process of the caller's own user that /proc does not open to it
//     is named instead; see ErrUninspected.
//
// This user's processes that /proc will not open (made not dumpable by
// PR_SET_DUMPABLE 0, as ssh-agent and gpg-agent do to guard their keys;
// running a set-user-ID, set-group-ID or file-capability program) could
// be working in a slot, and nothing tells. Keeping every slot while one
// of them runs would stop collection for good on most desktops, where an
// agent runs for the whole session; and the processes that make
// themselves so are daemons, which change to / as they start and do not
// work in a swarm's slots. So PruneDead removes dead slots all the same,
// and names those processes in its error (wrapping ErrUninspected), so
// that what went unchecked is seen; Users names them the same way. Root
// may look into them (CAP_SYS_PTRACE) and never meets them.
//
// What is bounded and what is not is said in the package doc, Systems.

// commandName returns the command name of process pid, or "?" when it
// cannot be read.
func commandName(pid int) string {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return string(bytes.TrimSuffix(comm, []byte("\n")))
}

// procSnapshot is what one pass over /proc found: what each process it
// could read uses of the swarm's file system, this user's processes it
// could not look into, and why any other could not be read.
type procSnapshot struct {
	procs       []procUses
	uninspected []Process
	unreadable  error
}

// procUses is what one process uses of the swarm's file system.
type procUses struct {
	pid   int
	files []inUse
}

// pruneGuard holds what one PruneDead or Users call reads at most once,
// and only when something is to be removed or asked about: the mount
// table and the files every process uses.
type pruneGuard struct {
	mountsRead bool
	mounts     []string
	elsewhere  []namespaceMounts
	procsRead  bool
	snapshot   procSnapshot
	// inUse is the inodes the snapshot's processes use, which a survey
	// looks for.
	inUse inodeSet
	// blind counts the slots let go while this user had processes the
	// pass could not look into; asked says Users asked.
	blind int
	asked bool
}

// check refuses to let the locked tree go while a mount point is inside
// it, a process uses it, or whether one does cannot be told.
func (g *pruneGuard) check(sw *swarmDir, l *entryLock, name string) error {
	return g.checkTree(sw, l.fd, filepath.Join(sw.path, name), true)
}

// checkTree is check for the tree under the open directory fd, at path,
// on the swarm's file system: a slot (slot), or a recovery entry to
// expire.
func (g *pruneGuard) checkTree(sw *swarmDir, fd int, path string, slot bool) error {
	if points := g.mountsUnder(fd); len(points) > 0 {
		return mountInsideError(points)
	}
	users, err := g.usersOf(sw, fd, path, slot)
	switch {
	case len(users) > 0:
		return inUseError(users)
	case err != nil:
		return err
	}
	if len(g.snapshot.uninspected) > 0 {
		g.blind++
	}
	return nil
}

// errCannotTell starts the error of a slot kept because whether a process
// uses it could not be told.
var errCannotTell = errors.New("cannot tell whether a process uses it")

// recheck looks again at slots detached since their check, with the
// mount table and /proc read anew: a process that began using a slot
// after the call's first pass (a new leaf that has not written its pid
// file yet) would otherwise go unseen for as long as the call takes. It
// is the look that lets the trees go, so it surveys them in full between
// two passes (see survey_linux.go), and leaves what each survey read of
// its tree with the lock, for the removal (see dirListing). It returns an
// error for each slot to be put back, nil for each to let go.
func (g *pruneGuard) recheck(sw *swarmDir, detached []detachedSlot) []error {
	trees := make([]detachedTree, len(detached))
	for i, d := range detached {
		trees[i] = detachedTree{fd: d.lock.fd, path: sw.entryPath(d.trash), slot: true}
	}
	listings, errs := g.recheckTrees(sw, trees)
	for i, d := range detached {
		d.lock.listing = listings[i]
	}
	return errs
}

// detachedTree is a tree detached from where processes find it by name,
// open as fd, at path, on the swarm's file system: a slot's (slot), or a
// recovery entry's.
type detachedTree struct {
	fd   int
	path string
	slot bool
}

// recheckTrees is recheck for the trees, returning for each what its
// survey read of it, and why it must not go. The trees are walked in
// turn, with a pass over /proc, and a reading of the mount tables, before
// the first and after each: every tree is judged by the passes on either
// side of its own walk, so a process has no more time to move unseen
// than one walk, and a batch of n trees costs n+1 passes.
func (g *pruneGuard) recheckTrees(sw *swarmDir, trees []detachedTree) ([]*dirListing, []error) {
	errs := make([]error, len(trees))
	listings := make([]*dirListing, len(trees))
	g.forget()
	before := readProcesses(sw)
	for i, tree := range trees {
		if points := g.mountsUnder(tree.fd); len(points) > 0 {
			errs[i] = mountInsideError(points)
			continue
		}
		if testHookLooking != nil {
			testHookLooking(tree.path, false)
		}
		survey, err := surveyTree(tree.fd, tree.path, nil, true, tree.slot)
		if err != nil {
			errs[i] = surveyError(err)
			continue
		}
		if testHookLooking != nil {
			testHookLooking(tree.path, true)
		}
		g.forget()
		after := readProcesses(sw)
		listings[i], errs[i] = mayGo(&survey, before, after)
		before = after
	}
	g.procsRead, g.snapshot, g.inUse = true, before, inodesOf(before.procs)
	return listings, errs
}

// mayGo tells whether the tree a full survey read may go, by the passes
// over /proc made before and after it, and returns its listing if so.
func mayGo(survey *treeSurvey, before, after procSnapshot) (*dirListing, error) {
	survey.match(inodesOf(before.procs, after.procs))
	users := processes(survey.usersIn(after.procs, survey.usersIn(before.procs, nil)))
	switch unreadable := cmp.Or(before.unreadable, after.unreadable); {
	case len(users) > 0:
		return nil, inUseError(users)
	case unreadable != nil:
		return nil, fmt.Errorf("%w: %w; left in place", errCannotTell, unreadable)
	}
	return survey.listing, nil
}

// recheckTree is recheck for one detached tree, under the open directory
// fd, at path: a recovery entry being expired.
func (g *pruneGuard) recheckTree(sw *swarmDir, fd int, path string) (*dirListing, error) {
	listings, errs := g.recheckTrees(sw, []detachedTree{{fd: fd, path: path}})
	return listings[0], errs[0]
}

// forget drops the mount table and the pass over /proc read so far, so
// that the next look reads them anew: the removals of a call take long
// enough for processes to have come to the trees looked at after them.
func (g *pruneGuard) forget() {
	g.mountsRead, g.procsRead = false, false
}

// usersOf returns the processes that use the tree under the open
// directory fd, at path, in the swarm directory sw, a slot's if slot, by
// the call's pass over /proc and a survey after it. A mount point met on the way is an
// error wrapping ErrMountInside; a directory that cannot be read, or a
// process whose files cannot be, an error wrapping errCannotTell,
// returned with the users that were found.
func (g *pruneGuard) usersOf(sw *swarmDir, fd int, path string, slot bool) ([]Process, error) {
	if !g.procsRead {
		g.procsRead = true
		g.snapshot = readProcesses(sw)
		g.inUse = inodesOf(g.snapshot.procs)
	}
	if testHookLooking != nil {
		testHookLooking(path, false)
	}
	survey, err := surveyTree(fd, path, g.inUse, false, slot)
	if err != nil {
		return nil, surveyError(err)
	}
	users := processes(survey.usersIn(g.snapshot.procs, nil))
	if g.snapshot.unreadable != nil {
		return users, fmt.Errorf("%w: %w; left in place", errCannotTell, g.snapshot.unreadable)
	}
	return users, nil
}

// surveyError is the error of a look whose survey failed with err.
func surveyError(err error) error {
	switch {
	case errors.Is(err, errMountPoint):
		return fmt.Errorf("%w: %w", ErrMountInside, err)
	case errors.Is(err, fs.ErrNotExist):
		return err // its owner removed it meanwhile
	}
	return fmt.Errorf("%w: %w; left in place", errCannotTell, err)
}

// processes names the processes of pids, in order, each once.
func processes(pids []int) []Process {
	slices.Sort(pids)
	var users []Process
	for _, pid := range slices.Compact(pids) {
		users = append(users, Process{PID: pid, Command: commandName(pid)})
	}
	return users
}

// usersIn appends to pids those of procs that use the surveyed tree.
func (s treeSurvey) usersIn(procs []procUses, pids []int) []int {
	for _, p := range procs {
		if s.uses(p.files) {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// testHookLooking, when set by a test, is called with a tree's path
// between the pass over /proc and the survey of the tree, and, in a look
// that passes over /proc again, after the surveys (afterWalk).
var testHookLooking func(path string, afterWalk bool)

// users returns the processes that use the entry name of the swarm
// directory.
func (g *pruneGuard) users(sw *swarmDir, name string) ([]Process, error) {
	g.asked = true
	dev, err := sw.device()
	if err != nil {
		return nil, err
	}
	fd, err := openSubdir(int(sw.fd), name, dev)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(sw.path, name), Err: err}
	}
	defer syscall.Close(fd)
	return g.usersOf(sw, fd, filepath.Join(sw.path, name), true)
}

// uninspectedError names this user's processes that the call's pass over
// /proc could not look into, wrapping ErrUninspected, if PruneDead let a
// slot go while they ran or Users was asked; nil otherwise.
func (g *pruneGuard) uninspectedError() error {
	if len(g.snapshot.uninspected) == 0 || g.blind == 0 && !g.asked {
		return nil
	}
	names := make([]string, len(g.snapshot.uninspected))
	for i, p := range g.snapshot.uninspected {
		names[i] = p.String()
	}
	return fmt.Errorf("slotgc: %w: %s", ErrUninspected, strings.Join(names, ", "))
}

// readProcesses makes the pass over /proc for a call on the swarm
// directory sw: what every process this one may look into uses of the
// swarm's file system.
func readProcesses(sw *swarmDir) procSnapshot {
	if !procSelfIs(os.Getpid()) {
		return procSnapshot{unreadable: errForeignProc}
	}
	mounts, target, err := swarmTarget(sw)
	if err != nil {
		return procSnapshot{unreadable: err}
	}
	r, err := newProcReader(mounts, target)
	if err != nil {
		return procSnapshot{unreadable: err}
	}
	snap, err := within(&r.at, func() procSnapshot {
		defer r.close()
		return r.all()
	})
	if err != nil {
		return procSnapshot{unreadable: err}
	}
	return snap
}

// all reads every process in /proc.
func (r *procReader) all() procSnapshot {
	var snap procSnapshot
	var pids []int
	err := readDirNames(r.proc, r.dirents, func(name []byte) {
		if pid, ok := parseDecimal(name); ok && pid > 0 && pid <= 1<<31-1 {
			pids = append(pids, int(pid))
		}
	})
	if err != nil {
		snap.unreadable = &fs.PathError{Op: "getdents64", Path: "/proc", Err: err}
		return snap
	}
	var files []inUse
	var unreadable []error
	for _, pid := range pids {
		var status procStatus
		files, status, err = r.process(pid, files[:0])
		switch status {
		case procRead:
			if len(files) > 0 {
				snap.procs = append(snap.procs, procUses{pid, append([]inUse(nil), files...)})
			}
		case procSealed:
			snap.uninspected = append(snap.uninspected, Process{PID: pid, Command: commandName(pid)})
		case procUnreadable:
			unreadable = append(unreadable, fmt.Errorf("pid %d (%s): %w", pid, commandName(pid), err))
		}
	}
	switch {
	case len(unreadable) == 1:
		snap.unreadable = unreadable[0]
	case len(unreadable) > 1:
		snap.unreadable = fmt.Errorf("%w, and %d more processes", unreadable[0], len(unreadable)-1)
	}
	return snap
}

// entryUse tells whether process pid uses the slot directory entry, and
// whether that could be told at all. Another user's process, and this
// user's that /proc does not open, are told not to: the time rule stands
// alone for them (see the package doc, Verdicts). Only a process that
// uses some file of the swarm's file system costs a walk of the tree.
func (sw *swarmDir) entryUse(entry string, pid int) (uses, told bool) {
	if !procSelfIs(os.Getpid()) {
		return false, false
	}
	mounts, target, err := swarmTarget(sw)
	if err != nil {
		return false, false
	}
	r, err := newProcReader(mounts, target)
	if err != nil {
		return false, false
	}
	type result struct {
		files  []inUse
		status procStatus
	}
	res, err := within(&r.at, func() result {
		defer r.close()
		files, status, _ := r.process(pid, nil)
		return result{files, status}
	})
	switch {
	case err != nil, res.status == procUnreadable:
		return false, false
	case res.status != procRead || len(res.files) == 0:
		return false, true
	}
	dev, err := sw.device()
	if err != nil {
		return false, false
	}
	fd, err := openSubdir(int(sw.fd), entry, dev)
	if err != nil {
		return false, false
	}
	defer syscall.Close(fd)
	survey, err := surveyTree(fd, filepath.Join(sw.path, entry), inodesOf([]procUses{{pid: pid, files: res.files}}), false, true)
	if err != nil {
		return false, false
	}
	return survey.uses(res.files), true
}

// usesEntry reports whether process pid is seen to use the slot directory
// entry: its working or root directory is in the slot's tree, or it holds
// a file of the tree open or mapped. Where that cannot be told, it does
// not: KillSlot signals only on evidence.
func (sw *swarmDir) usesEntry(entry string, pid int) bool {
	uses, _ := sw.entryUse(entry, pid)
	return uses
}

// mayUseEntry is usesEntry that also reports true where whether pid uses
// the slot cannot be told: Scan calls no slot Reused without knowing.
func (sw *swarmDir) mayUseEntry(entry string, pid int) bool {
	uses, told := sw.entryUse(entry, pid)
	return uses || !told
}

// inUseError names the processes that use a slot.
func inUseError(users []Process) error {
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.String()
	}
	return fmt.Errorf("%w by %s; left in place", ErrInUse, strings.Join(names, ", "))
}
