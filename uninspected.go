package slotgc

import "errors"

// ErrUninspected is the cause PruneDead and Users give when processes of
// the caller's own user could not be looked into: Linux's /proc does not
// open a process that is not dumpable (PR_SET_DUMPABLE 0, as ssh-agent
// and gpg-agent set for themselves) or that runs a set-user-ID,
// set-group-ID or file-capability program, to anyone but root. Such a
// process could be working in a slot unseen. PruneDead removes dead slots
// all the same, and when it did while one ran, its error wraps
// ErrUninspected and names them (pid and command); it is not a
// *SlotError, as no slot failed. Another user's processes are passed over
// without a word: they are never open to a user without privilege.
var ErrUninspected = errors.New("could not look into these processes of this user, so whether they use a slot is unknown")
