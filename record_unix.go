//go:build unix

package slotgc

import (
	"errors"
	"fmt"
	"os"
)

// trustedRecordDir checks the owner and mode of the records directory:
// only this user, or root, may have made it, and only they may write in
// it.
func trustedRecordDir(uid int, mode uint32) error {
	if euid := os.Geteuid(); uid != euid && uid != 0 {
		return fmt.Errorf("%w: it belongs to uid %d", errUntrustedRecords, uid)
	}
	if mode&0o022 != 0 {
		return fmt.Errorf("%w: others may write in it (mode %#o)", errUntrustedRecords, mode&0o7777)
	}
	return nil
}

// errUntrustedRecords says the records directory is not this user's
// alone: anyone else who may write in it could vouch for any entry there,
// the swarm CLI's own included, and have a prune expire it.
var errUntrustedRecords = errors.New("the records directory is not this user's alone, so no record in it is trusted")
