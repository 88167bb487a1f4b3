//go:build linux || windows

package slotgc

import "fmt"

// unidentifiedError says why the process pid, behind a handle, could not
// be shown to be a slot's leaf.
func unidentifiedError(pid int, why error) error {
	return fmt.Errorf("%w: pid %d: %w", ErrUnidentified, pid, why)
}
