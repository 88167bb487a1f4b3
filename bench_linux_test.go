//go:build linux

package slotgc

import (
	"os"
	"testing"
)

// BenchmarkProcessPass measures the one pass over /proc a PruneDead call
// makes, only when it has something to remove, to find the processes that
// use a slot: every process's cwd, root and open files, as many as this
// process may read.
func BenchmarkProcessPass(b *testing.B) {
	dir, err := os.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	processes := 0
	for _, e := range entries {
		if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
			processes++
		}
	}
	for b.Loop() {
		readProcesses(&swarmDir{path: dir.Name(), f: dir, fd: dir.Fd()})
	}
	b.ReportMetric(float64(processes), "processes")
}
