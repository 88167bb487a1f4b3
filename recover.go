package slotgc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The recovery convention is the swarm CLI's (from its 0.7.3 release):
// before its own close destroys a slot it copies the slot's worktree into
// <state dir>/recovery/<slot>-<unix seconds>, and `bones apply --slot S`
// restores the entry S-* with the newest modification time. Recoverable
// pruning puts worktrees there by the same rule, so the CLI finds them.
//
// Which entries slotgc made is recorded beside them, never inside them:
// one small file per entry, named as the entry, in the directory
// <recovery>/.slotgc, which no S-* lookup can match as it holds no "-".
// A record holds when the prune made the entry, which starts its
// retention, and the identity (device and inode) of the worktree
// directory, which a rename keeps: an entry whose identity differs from
// its record's is not the one slotgc made, and is never touched.

// Recovery's mechanics come from each system (recover_linux.go,
// record_linux.go, expire_linux.go and walk_linux.go on Linux, the _path.go
// files of the same concerns elsewhere):
//
//	openRecoveryDir(stateDir string, create bool) (*recoveryDir, error)
//	(*recoveryDir).close()
//	(*recoveryDir).entries() ([]entryInfo, error)
//	(*recoveryDir).identity(name string) (fileIdentity, time.Time, error)
//	(*recoveryDir).measure(name string) int64
//	(*recoveryDir).sameFileSystem(sw *swarmDir, l *entryLock, name string) error
//	(*recoveryDir).moveIn(sw *swarmDir, l *entryLock, trash, name string) error
//	(*recoveryDir).restoreInto(sw *swarmDir, name, slot string) error
//	(*recoveryDir).readRecord(name string) (record, error)
//	(*recoveryDir).recordNames() ([]string, error)
//	(*recoveryDir).writeRecord(name string, rec record) (release func(), err error)
//	(*recoveryDir).dropRecord(name string)
//	(*recoveryDir).expireEntry(name string, rec record, e *Recovery, sw *swarmDir, guard *pruneGuard) (bool, error)
//	(*recoveryDir).finishExpiring(sw *swarmDir, guard *pruneGuard) error
//	(*swarmDir).openWorktree(l *entryLock, name string) (*worktree, error)
//	(*worktree).close()
//	(*worktree).touch(rd *recoveryDir, name string, now time.Time)
//	(*swarmDir).hasWorktree(l *entryLock, name string) (bool, error)
//	(*swarmDir).walkLocked(l *entryLock, name string, w *treeWalk) error
//	(*swarmDir).diskUse(name string) (int64, error)

// Layout of the recovery directory.
const (
	// RecoveryDir holds worktrees taken from slots, relative to the
	// workspace, unless StateDirEnv relocates the state directory; see
	// RecoveryPath.
	RecoveryDir = ".bones/recovery"
	// WorktreeDir is the directory, inside a slot, that holds its
	// worktree: what recoverable removal moves into the recovery
	// directory and Restore moves back.
	WorktreeDir = "wt"
)

const (
	// recoveryName is the recovery directory's name in the state
	// directory.
	recoveryName = "recovery"
	// recordDirName is the directory, inside the recovery directory, of
	// slotgc's records of the entries it made.
	recordDirName = ".slotgc"
	// recoveryDirMode and recordDirMode are the modes slotgc makes them
	// with: worktrees may hold secrets their slot's tree kept from others
	// by its parents' modes.
	recoveryDirMode = 0o700
	recordDirMode   = 0o700
	// entryNameTries is how many names, a second apart, a recovery tries
	// when the first is taken.
	entryNameTries = 16
	// maxRecordSize bounds what is read of a record.
	maxRecordSize = 256
)

// RecoveryPath returns the recovery directory for workspaceDir: "recovery"
// in the state directory, beside the swarm directory SwarmPath names.
func RecoveryPath(workspaceDir string) string {
	return filepath.Join(filepath.Dir(SwarmPath(workspaceDir)), recoveryName)
}

// Recovery is one entry of the recovery directory: a worktree taken from a
// slot, by a prune or by the swarm CLI.
type Recovery struct {
	// Name is the entry's name: <slot>-<unix seconds> by the convention.
	Name string
	// Slot is the slot it came from, Name without its "-<digits>" end; ""
	// for an entry whose name does not follow the convention.
	Slot string
	// Path is the entry's path.
	Path string
	// Made is when the entry was made: for one slotgc made, the time its
	// record holds; for another, the time its name holds, or else its
	// modification time.
	Made time.Time
	// ModTime is the entry's own modification time, by which Restore and
	// `bones apply --slot` pick a slot's newest entry.
	ModTime time.Time
	// BySlotgc reports that a prune made the entry: later prunes with a
	// retention remove it once Made is that long ago. Entries others made
	// are never touched.
	BySlotgc bool
	// Bytes is the entry's disk use, counted as SlotOutcome.Bytes is.
	Bytes int64
}

// Recoveries returns the entries of the recovery directory of
// workspaceDir (see RecoveryPath), sorted by name, each measured: only
// real directories are entries, and none is followed through a symlink or
// measured across a mount. A missing recovery directory yields nil, nil.
func Recoveries(workspaceDir string) ([]Recovery, error) {
	rd, err := openRecoveryDir(filepath.Dir(SwarmPath(workspaceDir)), false)
	if rd == nil {
		return nil, err
	}
	defer rd.close()
	return rd.list(true)
}

// Restore moves the newest recovery entry of slot, by modification time as
// `bones apply --slot` picks it, back into the swarm directory as
// <slot>/WorktreeDir, by one rename, and returns the entry restored. The
// slot it makes is half built: it has no pid file, so no prune takes it
// until a leaf joins it again. Restore refuses, changing nothing, when the
// swarm directory already holds an entry named slot, when slot has no
// recovery entry (the error wraps fs.ErrNotExist), or when the recovery
// directory is on another file system; its errors are *SlotErrors whose
// Op is "restore".
func Restore(workspaceDir, slot string) (Recovery, error) {
	swarm := SwarmPath(workspaceDir)
	fail := func(err error) (Recovery, error) {
		return Recovery{}, &SlotError{Op: opRestore, Slot: slot, Path: filepath.Join(swarm, slot), Err: err}
	}
	if err := checkSlotName(slot); err != nil {
		return fail(err)
	}
	rd, err := openRecoveryDir(filepath.Dir(swarm), false)
	if rd == nil {
		if err == nil {
			err = &fs.PathError{Op: "open", Path: filepath.Join(filepath.Dir(swarm), recoveryName), Err: fs.ErrNotExist}
		}
		return fail(err)
	}
	defer rd.close()
	entries, err := rd.list(false)
	if err != nil {
		return fail(err)
	}
	newest := -1
	for i, e := range entries {
		if e.Slot == slot && (newest < 0 || !e.ModTime.Before(entries[newest].ModTime)) {
			newest = i
		}
	}
	if newest < 0 {
		return fail(fmt.Errorf("no recovery entry %s-<unix seconds> in %s: %w", slot, rd.path, fs.ErrNotExist))
	}
	if err := os.Mkdir(swarm, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fail(err)
	}
	sw, err := openSwarmDir(swarm)
	if sw == nil {
		if err == nil {
			err = &fs.PathError{Op: "open", Path: swarm, Err: fs.ErrNotExist}
		}
		return fail(err)
	}
	defer sw.close()
	unlock, err := sw.lockForPrune()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if err := rd.restoreInto(sw, entries[newest].Name, slot); err != nil {
		return fail(err)
	}
	return entries[newest], nil
}

const opRestore = "restore"

// opExpire is the operation of a *SlotError for a recovery entry a prune
// could not remove once its retention passed.
const opExpire = "expire"

// checkSlotName refuses a name that cannot be a slot's.
func checkSlotName(slot string) error {
	switch {
	case slot == "" || slot == "." || slot == "..":
		return errors.New("not a slot name")
	case strings.ContainsAny(slot, `/\`+"\x00"):
		return errors.New("a slot name holds no path separator or NUL")
	case strings.HasPrefix(slot, TrashPrefix):
		return fmt.Errorf("names starting %s are never slots", TrashPrefix)
	}
	return nil
}

// isTrashName reports whether name is one slotgc gives what it is
// removing.
func isTrashName(name string) bool { return strings.HasPrefix(name, TrashPrefix) }

// recoveryEntryName is the convention's name for an entry of slot made at
// the unix second unix.
func recoveryEntryName(slot string, unix int64) string {
	return slot + "-" + strconv.FormatInt(unix, 10)
}

// parseRecoveryName splits an entry's name into its slot and the unix
// second it holds.
func parseRecoveryName(name string) (slot string, unix int64, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	digits := name[i+1:]
	if strings.Trim(digits, "0123456789") != "" {
		return "", 0, false
	}
	unix, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return name[:i], unix, true
}

// entryInfo is what the listing of the recovery directory reads of an
// entry.
type entryInfo struct {
	name    string
	modTime time.Time
	id      fileIdentity
}

// list returns the recovery directory's entries, sorted by name, measured
// if asked.
func (rd *recoveryDir) list(measure bool) ([]Recovery, error) {
	infos, err := rd.entries()
	if err != nil {
		return nil, err
	}
	list := make([]Recovery, 0, len(infos))
	for _, e := range infos {
		r := Recovery{Name: e.name, Path: filepath.Join(rd.path, e.name), ModTime: e.modTime, Made: e.modTime}
		slot, unix, ok := parseRecoveryName(e.name)
		if ok {
			r.Slot, r.Made = slot, time.Unix(unix, 0)
		}
		if rec, err := rd.readRecord(e.name); err == nil && rec.matches(e.id, e.modTime) {
			r.BySlotgc, r.Made = true, rec.made
		}
		if measure {
			r.Bytes = rd.measure(e.name)
		}
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b Recovery) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// recoverWorktree moves the worktree of the locked tree, detached as
// trash, into the recovery directory as an entry of slot, recording first
// that slotgc made it, and returns the entry's path; "" when the tree has
// no worktree (any more). The entry's modification time is set to now, so
// that it is the newest of its slot, as a copy made now would be. Its
// errors wrap ErrNotRecoverable.
func (r *pruneRun) recoverWorktree(sw *swarmDir, l *entryLock, slot, trash string) (string, error) {
	// Slots are taken side by side (see removalGroup); the recovery
	// directory's lazily opened parts are not, and renames are quick.
	r.mu.Lock()
	defer r.mu.Unlock()
	rd, err := r.recoveryDir()
	if rd == nil {
		return "", notRecoverable(r.recoveryPath(), err)
	}
	wt, err := sw.openWorktree(l, trash)
	if wt == nil {
		if err != nil {
			return "", notRecoverable(rd.path, err)
		}
		return "", nil
	}
	defer wt.close()
	if err := rd.sameFileSystem(sw, l, trash); err != nil {
		return "", notRecoverable(rd.path, err)
	}
	now := time.Now()
	for i := range int64(entryNameTries) {
		name := recoveryEntryName(slot, now.Unix()+i)
		release, err := rd.writeRecord(name, record{made: now, id: wt.id})
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", notRecoverable(rd.path, err)
		}
		err = rd.moveIn(sw, l, trash, name)
		if err != nil {
			// Let go first: Windows removes no file a handle that does not
			// share delete holds, even its own.
			release()
			rd.dropRecord(name)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return "", notRecoverable(rd.path, err)
		}
		// A rename keeps the directory's own time, which may be old: bones
		// apply would then pick an older entry of the slot over this one.
		// The record stays held until then, as until then the entry's time
		// does not match it (see record.matches).
		wt.touch(rd, name, now)
		release()
		return filepath.Join(rd.path, name), nil
	}
	return "", notRecoverable(rd.path, fmt.Errorf("%s-<unix seconds> is taken for %d seconds from now", slot, entryNameTries))
}

// expire removes the recovery entries an earlier prune made more than Keep
// ago, by the guard's rules for the swarm directory sw's slots, and the
// records of entries that are gone, and returns the entries removed (with
// DryRun, that would be).
func (r *pruneRun) expire(sw *swarmDir, guard *pruneGuard) ([]Recovery, error) {
	rd := r.recovery
	if rd == nil {
		var err error
		if rd, err = openRecoveryDir(r.stateDir, false); rd == nil {
			if err != nil {
				return nil, &SlotError{Op: opExpire, Path: r.recoveryPath(), Err: err}
			}
			return nil, nil
		}
		defer rd.close()
	}
	var errs []error
	if !r.opts.DryRun {
		if err := rd.finishExpiring(sw, guard); err != nil {
			errs = append(errs, &SlotError{Op: opExpire, Path: filepath.Join(rd.path, recordDirName), Err: err})
		}
	}
	names, err := rd.recordNames()
	if err != nil {
		return nil, errors.Join(append(errs, &SlotError{Op: opExpire, Path: filepath.Join(rd.path, recordDirName), Err: err})...)
	}
	var expired []Recovery
	now := time.Now()
	for _, name := range names {
		rec, err := rd.readRecord(name)
		if err != nil || !rec.made.Before(r.start) {
			// A record that cannot be read may be one a running prune is
			// writing: left for a later call to judge. What this call made
			// only a later one removes, however short the retention.
			continue
		}
		if now.Sub(rec.made) < r.opts.Keep {
			if !r.opts.DryRun {
				rd.dropIfStale(name, rec)
			}
			continue
		}
		slot, _, _ := parseRecoveryName(name)
		e := Recovery{Name: name, Slot: slot, Path: filepath.Join(rd.path, name), Made: rec.made, BySlotgc: true}
		if r.opts.DryRun {
			if id, modTime, err := rd.identity(name); err == nil && rec.matches(id, modTime) {
				e.ModTime, e.Bytes = modTime, rd.measure(name)
				expired = append(expired, e)
			}
			continue
		}
		removed, err := rd.expireEntry(name, rec, &e, sw, guard)
		if err != nil {
			errs = append(errs, &SlotError{Op: opExpire, Slot: name, Path: e.Path, Err: err})
		}
		if removed {
			expired = append(expired, e)
		}
	}
	return expired, errors.Join(errs...)
}

// dropIfStale drops the record rec of the entry name, young as it is, if
// the entry is gone or is another directory now: kept for its retention,
// it would vouch for whatever came to hold the entry's name, and on a file
// system without birth times its inode number, meanwhile.
func (rd *recoveryDir) dropIfStale(name string, rec record) {
	id, mtime, err := rd.identity(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRealDir) || err == nil && !rec.matches(id, mtime) {
		rd.dropStaleRecord(name)
	}
}
