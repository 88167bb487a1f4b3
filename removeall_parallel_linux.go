//go:build linux

package slotgc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// Removal is bounded per process, not per call: PruneDead calls that run
// at once in one process share one removalPool, so together they start no
// more helpers, and hold no more descriptors, than one call would; each
// caller's own goroutine walks besides.

// Bounds of the removal workers: the goroutines that walk trees at once,
// the caller's own included. A walker on a disk spends most of its time
// blocked in the kernel (ext4 mounted with discard waits on the device for
// every freed file), so the bound follows the device's waits more than the
// processors: on a 2-processor machine, removing 100 x 300 synced files,
// 8 walkers took less than half the time 4 did (medians of 6 rounds), and
// 12 or 16 no less than 8.
const (
	// minRemovalWorkers is the fewest, whatever GOMAXPROCS says.
	minRemovalWorkers = 8
	// maxRemovalWorkers caps them: beyond it more walkers queue on the
	// device and the file system's journal rather than overlap.
	maxRemovalWorkers = 16
	// removalWorkersPerCPU scales the bound with GOMAXPROCS between the
	// two, so that on a machine of more than 4 processors the removals
	// of a file system bound by the processors rather than a device (a
	// tmpfs) can use them.
	removalWorkersPerCPU = 2
)

// Bounds of the directory descriptors the walks hold open together.
const (
	// maxRemovalFDs caps them whatever the limit: each walker holds one
	// per directory level it is down, so this lets every worker go dozens
	// of levels deep (node_modules, Go's module cache) and still start.
	maxRemovalFDs = 512
	// removalFDShare is the part of the process's descriptor limit
	// (RLIMIT_NOFILE) the walks may take for themselves; the rest is the
	// caller's.
	removalFDShare = 4
)

// removalPool bounds the walkers removals start beside their callers and
// the descriptors they hold. A walker takes a helper only when one is free
// and never waits for one: a directory no helper takes is walked by the
// walker that met it, so a small tree costs no goroutine, and a big one
// gets helpers as it turns them up.
type removalPool struct {
	// helpers holds a token for each helper goroutine at work; its
	// capacity is the workers' bound less the caller's own goroutine.
	helpers chan struct{}
	// fds counts the directory descriptors the walks hold open, and
	// fdBudget is how many they may hold before no more helpers start.
	// Walkers already at work still open what they must, as a lone walk
	// would: a budget met stops the spreading, not the removal.
	fds      atomic.Int64
	fdBudget int64
	// lent counts the helpers ever lent, for tests and benchmarks.
	lent atomic.Uint64
}

// newRemovalPool returns a pool of workers walkers, the caller's included
// (1 walks every tree alone), that start no helper while the walks hold
// fdBudget descriptors or more.
func newRemovalPool(workers, fdBudget int) *removalPool {
	return &removalPool{helpers: make(chan struct{}, max(workers-1, 0)), fdBudget: int64(fdBudget)}
}

// removers is this process's pool, made at the first removal; tests swap
// it for another bound.
var removers atomic.Pointer[removalPool]

// removalWorkers returns this process's pool.
func removalWorkers() *removalPool {
	if p := removers.Load(); p != nil {
		return p
	}
	workers := min(maxRemovalWorkers, max(minRemovalWorkers, removalWorkersPerCPU*runtime.GOMAXPROCS(0)))
	removers.CompareAndSwap(nil, newRemovalPool(workers, defaultRemovalFDBudget()))
	return removers.Load()
}

// defaultRemovalFDBudget is the walks' share of the descriptor limit,
// capped by maxRemovalFDs.
func defaultRemovalFDBudget() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > maxRemovalFDs*removalFDShare {
		return maxRemovalFDs
	}
	return int(lim.Cur / removalFDShare)
}

// lend takes a helper, if one is free and the descriptor budget is not
// spent, and reports whether it did; giveBack returns it.
func (p *removalPool) lend() bool {
	if p.fds.Load() >= p.fdBudget {
		return false
	}
	select {
	case p.helpers <- struct{}{}:
		p.lent.Add(1)
		return true
	default:
		return false
	}
}

func (p *removalPool) giveBack() { <-p.helpers }

// removalGroup removes the detached trees of one PruneDead call, several
// at once within the pool's bound. Each tree is held back until the next
// one comes (or the call waits), and only then handed to a helper, if one
// is free: the last tree is always walked by the caller, who would
// otherwise only wait for it.
type removalGroup struct {
	helpers sync.WaitGroup
	pending func()
}

// run removes a tree, now or later but before wait returns.
func (g *removalGroup) run(remove func()) {
	if prev := g.pending; prev != nil {
		if pool := removalWorkers(); pool.lend() {
			g.helpers.Go(func() {
				defer pool.giveBack()
				prev()
			})
		} else {
			prev()
		}
	}
	g.pending = remove
}

// wait returns once every tree run was given is removed.
func (g *removalGroup) wait() {
	if g.pending != nil {
		g.pending()
		g.pending = nil
	}
	g.helpers.Wait()
}
