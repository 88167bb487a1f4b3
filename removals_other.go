//go:build !linux

package slotgc

// removalGroup removes the detached trees of one PruneDead call. Elsewhere
// than on Linux a tree is removed by its path, and one at a time, when it
// is detached.
type removalGroup struct{}

func (*removalGroup) run(remove func()) { remove() }

func (*removalGroup) wait() {}
