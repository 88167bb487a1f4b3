package slotgc

import "errors"

// Users returns the processes that use each of the named slot directories
// (their working or root directory is in the slot, or they hold a file of
// it open), the way PruneDead finds them before it removes a slot; a slot
// no process uses has no key. On a system that gives no view of the files
// a process uses, Users finds none (see the package doc, Systems). A slot
// that cannot be opened or looked through, or holds a mount point, makes a
// *SlotError naming it; the others are still answered. Processes of the
// caller's own user that could not be looked into are named in an error
// wrapping ErrUninspected.
func Users(workspaceDir string, slots ...string) (map[string][]Process, error) {
	sw, err := openSwarmDir(SwarmPath(workspaceDir))
	if sw == nil {
		return nil, err
	}
	defer sw.close()
	var guard pruneGuard
	users := make(map[string][]Process)
	var errs []error
	for _, slot := range slots {
		found, err := guard.users(sw, slot)
		if err != nil {
			errs = append(errs, sw.slotError(opUsers, slot, err))
		}
		if len(found) > 0 {
			users[slot] = found
		}
	}
	errs = append(errs, guard.uninspectedError())
	return users, errors.Join(errs...)
}
