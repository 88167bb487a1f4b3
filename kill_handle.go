//go:build linux || windows

package slotgc

import (
	"errors"
	"fmt"
)

// judged turns a handle's isLeaf answer into kill's: a recycled pid means
// the leaf is gone; any other refusal, that the process could not be shown
// to be the leaf, so it is not signalled.
func judged(pid int, err error) (gone bool, _ error) {
	if errors.Is(err, errRecycled) {
		return true, nil
	}
	return false, unidentifiedError(pid, err)
}

// unidentifiedError says why the process pid, behind a handle, could not
// be shown to be a slot's leaf.
func unidentifiedError(pid int, why error) error {
	return fmt.Errorf("%w: pid %d: %w", ErrUnidentified, pid, why)
}
