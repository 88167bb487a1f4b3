package slotgc

import (
	"errors"
	"time"
)

// treeWalk is one look through a tree: for the grace period, the first
// entry modified after cutoff, which ends it; for the disk use, the bytes
// of everything it passed. A strict walk ends with an error at anything it
// cannot look at, which then cannot be told; another passes it over.
type treeWalk struct {
	cutoff time.Time
	strict bool

	bytes    int64
	recent   string
	recentAt time.Time
	// linked holds the files with several links counted so far, so that
	// each counts once, as du counts them.
	linked map[fileIdentity]bool
}

// note records an entry modified at mtime that uses bytes, and whose
// identity is linked if it has several links; it reports whether the
// entry is recent, which ends the walk.
func (w *treeWalk) note(mtime time.Time, bytes int64, linked *fileIdentity) bool {
	if !w.cutoff.IsZero() && mtime.After(w.cutoff) {
		w.recentAt = mtime
		return true
	}
	if linked != nil {
		if w.linked[*linked] {
			return false
		}
		if w.linked == nil {
			w.linked = make(map[fileIdentity]bool)
		}
		w.linked[*linked] = true
	}
	w.bytes += bytes
	return false
}

// fail is err where the walk is strict, and nil where it passes over what
// it cannot look at.
func (w *treeWalk) fail(err error) error {
	if w.strict {
		return err
	}
	return nil
}

// DiskUse returns the disk use of each of the named slot directories of
// workspaceDir, counted as SlotOutcome.Bytes is, without following a
// symlink or crossing a mount; what cannot be read is passed over. A slot
// that cannot be opened makes a *SlotError naming it; the others are still
// answered.
func DiskUse(workspaceDir string, slots ...string) (map[string]int64, error) {
	sw, err := openSwarmDir(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	use := make(map[string]int64, len(slots))
	var errs []error
	for _, slot := range slots {
		n, err := sw.diskUse(slot)
		if err != nil {
			errs = append(errs, sw.slotError(opDiskUse, slot, err))
			continue
		}
		use[slot] = n
	}
	return use, errors.Join(errs...)
}

const opDiskUse = "measure"
