package slotgc

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// fileIdentity is a directory's identity: its device and inode numbers,
// zero where the system gives none (Windows), and on Linux its birth time
// where the file system keeps one, which tells apart a directory made
// under a freed inode number that the file system gave out again.
type fileIdentity struct {
	dev, ino uint64
	birth    int64 // unix nanoseconds; 0 where unknown
}

// record is slotgc's note that it made a recovery entry: when, and the
// identity of the worktree directory it moved there.
type record struct {
	made time.Time
	id   fileIdentity
}

const recordMagic = "slotgc recovery entry"

func (r record) encode() []byte {
	return fmt.Appendf(nil, "%s\nmade %d\ndev %d\nino %d\nbirth %d\n", recordMagic, r.made.UnixNano(), r.id.dev, r.id.ino, r.id.birth)
}

var errBadRecord = errors.New("not a recovery record")

func parseRecord(b []byte) (record, error) {
	var made int64
	var r record
	_, err := fmt.Fscanf(bytes.NewReader(b), recordMagic+"\nmade %d\ndev %d\nino %d\nbirth %d\n", &made, &r.id.dev, &r.id.ino, &r.id.birth)
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	r.made = time.Unix(0, made)
	// Fscanf takes a number cut short for a whole one: only a record that
	// reads back as written is one.
	if !bytes.Equal(r.encode(), b) {
		return record{}, errBadRecord
	}
	return r, nil
}

// matches reports whether the entry whose identity is id, modified at
// mtime, is the one the record was made for. A birth time tells a
// directory from one made later under its freed inode number; where the
// file system keeps none, or the system gives no identity at all
// (Windows), a directory made anew under the entry's name would pass, so
// the entry's own modification time must also be the one the prune gave
// it, made, as the file system keeps it (at most coarsestTimes coarser).
// An entry whose top directory changed since is then not slotgc's any
// more: never expired, which loses nothing.
func (r record) matches(id fileIdentity, mtime time.Time) bool {
	if r.id != (fileIdentity{}) && r.id != id {
		return false
	}
	return r.id.birth != 0 || !mtime.After(r.made) && r.made.Sub(mtime) < coarsestTimes
}

// coarsestTimes is the coarsest step in which a file system keeps
// modification times: FAT's two seconds.
const coarsestTimes = 2 * time.Second
