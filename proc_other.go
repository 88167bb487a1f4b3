//go:build unix && !linux

package slotgc

import "time"

// probeScope is empty: these systems give nothing a scan could share.
type probeScope struct{}

// inspectExisting cannot look further than kill(2) did: the standard
// library reaches a process's state and start time on these systems only
// through sysctl structures it does not export, so a zombie counts as alive
// and reuse goes undetected.
func inspectExisting(int, *probeScope) (gone bool, start time.Time, why error) {
	return false, time.Time{}, nil
}

// kill has no process handle to signal through here, and no start time to
// give isLeaf; see killByPID.
func kill(pid int, _ func(candidate) error) (bool, error) { return killByPID(pid), nil }
