//go:build !linux

package slotgc

// mayUseEntry is usesEntry: these systems give no view of the files a
// process uses, so there is nothing that could not be told.
func (sw *swarmDir) mayUseEntry(entry string, pid int) bool { return sw.usesEntry(entry, pid) }

// recheck finds nothing new: these systems give no view of the files a
// process uses, and check's mount test is the walk's own refusal.
func (*pruneGuard) recheck(_ *swarmDir, detached []detachedSlot) []error {
	return make([]error, len(detached))
}

// forget has nothing to drop: these systems read no process.
func (*pruneGuard) forget() {}

// uninspectedError is nil: these systems look into no process.
func (*pruneGuard) uninspectedError() error { return nil }
