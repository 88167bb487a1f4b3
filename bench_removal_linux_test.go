//go:build linux

package slotgc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The removal benchmark times PruneDead on one dead slot whose worktree is
// benchTreeDirs directories of benchTreeFiles files of benchFileSize bytes,
// written and synced to disk before the clock starts, as a real worktree
// is long before its leaf dies. Its baselines, on a tree built alike, are
// the same walk with one worker (removalWorkers 1) and rm -rf. Removal
// time depends on the file system (on ext4 mounted with discard every
// freed file waits on the device), so it runs on disk and on a tmpfs.
//
// Each sub-benchmark removes one tree per iteration; to alternate them,
// run the compiled test binary in rounds with -test.count=1 and read the
// rounds together with benchstat -col /impl.

const (
	benchTreeDirs  = 100
	benchTreeFiles = 300
	benchFileSize  = 1 << 10
)

// Magic numbers of statfs(2)'s f_type.
const (
	tmpfsMagic = 0x01021994
	ext4Magic  = 0xef53
)

func BenchmarkPruneWorktree(b *testing.B) {
	for _, place := range []struct {
		fs   string
		root func(*testing.B) string
	}{{"disk", diskBenchDir}, {"tmpfs", tmpfsBenchDir}} {
		b.Run("fs="+place.fs, func(b *testing.B) {
			root := place.root(b)
			for _, impl := range []struct {
				name string
				// workers bounds PruneDead's removal workers: 0 leaves the
				// package's bound, and -1 calls rm -rf instead.
				workers int
			}{{"slotgc", 0}, {"sequential", 1}, {"rm", -1}} {
				b.Run("impl="+impl.name, func(b *testing.B) {
					remove := pruneWorktree
					switch {
					case impl.workers < 0:
						if _, err := exec.LookPath("rm"); err != nil {
							b.Skipf("no rm here: %v", err)
						}
						remove = rmWorktree
					case impl.workers > 0:
						setRemovalWorkers(b, impl.workers)
					}
					// The processor time a removal takes tells its cost on a
					// machine whose processors are busy with other work,
					// where the time to wait for one swamps the rest.
					who := syscall.RUSAGE_SELF
					if impl.workers < 0 {
						who = syscall.RUSAGE_CHILDREN
					}
					pool := removalWorkers()
					before := pool.lent.Load()
					var cpu time.Duration
					for b.Loop() {
						b.StopTimer()
						ws, slot := buildDeadWorktree(b, root)
						start := cpuTime(b, who)
						b.StartTimer()
						remove(b, ws, slot)
						b.StopTimer()
						cpu += cpuTime(b, who) - start
						b.StartTimer()
					}
					b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
					if impl.workers >= 0 {
						b.ReportMetric(float64(pool.lent.Load()-before)/float64(b.N), "helpers/op")
					}
				})
			}
		})
	}
}

func pruneWorktree(b *testing.B, ws, _ string) {
	got, err := PruneDead(ws)
	if len(got) != 1 || err != nil {
		b.Fatalf("PruneDead(ws) = %v, %v, want the one slot, nil", got, err)
	}
}

// cpuTime returns the user and system time who (RUSAGE_SELF or
// RUSAGE_CHILDREN) has used.
func cpuTime(b *testing.B, who int) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rmWorktree(b *testing.B, _, slot string) {
	if out, err := exec.Command("rm", "-rf", slot).CombinedOutput(); err != nil {
		b.Fatalf("rm -rf %s: %v: %s", slot, err, out)
	}
}

// buildDeadWorktree makes a workspace under root with one dead slot whose
// wt directory holds the benchmark's tree, and syncs it to disk. Each slot
// gets a pid freshly dead: over a long run, on a busy machine, an older
// one could be taken again.
func buildDeadWorktree(b *testing.B, root string) (ws, slot string) {
	b.Helper()
	ws, err := os.MkdirTemp(root, "ws-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(ws) })
	slot = filepath.Join(ws, SwarmDir, "dead")
	content := make([]byte, benchFileSize)
	for i := range content {
		content[i] = byte('a' + i%26)
	}
	// Built by a few goroutines, which only shortens the untimed setup.
	const builders = 4
	var wg sync.WaitGroup
	errs := make([]error, builders)
	for w := range builders {
		wg.Go(func() {
			for d := w; d < benchTreeDirs && errs[w] == nil; d += builders {
				errs[w] = writeBenchDir(filepath.Join(slot, "wt", fmt.Sprintf("dir%03d", d)), content)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(slot, PIDFile), []byte(pidLine(deadPID(b))), 0o644); err != nil {
		b.Fatal(err)
	}
	// syncfs(2) is not named by the syscall package on every architecture;
	// sync(2) flushes this file system with the rest.
	syscall.Sync()
	return ws, slot
}

// writeBenchDir makes dir with benchTreeFiles files holding content.
func writeBenchDir(dir string, content []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for f := range benchTreeFiles {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d.go", f)), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// diskBenchDir returns a directory on a disk file system: the benchmark's
// temp dir, unless that is a tmpfs, then one under /var/tmp.
func diskBenchDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if fsMagic(b, dir) == tmpfsMagic {
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "slotgc-bench-"); err != nil {
			b.Skipf("the temp dir is a tmpfs and /var/tmp is not usable: %v", err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		if fsMagic(b, dir) == tmpfsMagic {
			b.Skip("the temp dir and /var/tmp are both on a tmpfs: no disk to measure")
		}
	}
	b.Logf("disk tree under %s (statfs type %#x, ext4 is %#x)", dir, fsMagic(b, dir), ext4Magic)
	return dir
}

// tmpfsBenchDir returns a directory on a tmpfs: the benchmark's temp dir if
// it is one, else one in /dev/shm, else one mounted for the benchmark
// (root only).
func tmpfsBenchDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if fsMagic(b, dir) == tmpfsMagic {
		return dir
	}
	if fsMagic(b, "/dev/shm") == tmpfsMagic {
		shm, err := os.MkdirTemp("/dev/shm", "slotgc-bench-")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(shm) })
			return shm
		}
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		b.Skipf("no tmpfs to measure on: mount: %v", err)
	}
	b.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func fsMagic(b *testing.B, path string) int64 {
	b.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		b.Fatalf("statfs %s: %v", path, err)
	}
	return int64(st.Type)
}
