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

// matches reports whether the entry whose identity is id is the one the
// record was made for. Where the system gives no identity, the name alone
// tells.
func (r record) matches(id fileIdentity) bool {
	return r.id == (fileIdentity{}) || r.id == id
}
