//go:build linux

package slotgc

import (
	"os"
	"testing"
)

// passChildren is how many sleeping children BenchmarkProcessPass500 adds
// to the machine's processes.
const passChildren = 500

// BenchmarkProcessPass500 is BenchmarkProcessPass with 500 more
// processes, each a sleeping copy of the test binary: what the pass costs
// on a busy machine.
func BenchmarkProcessPass500(b *testing.B) {
	for range passChildren {
		startChild(b, "sleep")
	}
	dir, err := os.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	sw := &swarmDir{path: dir.Name(), f: dir, fd: dir.Fd()}
	for b.Loop() {
		readProcesses(sw)
	}
	b.ReportMetric(float64(countProcesses(b)), "processes")
}

// countProcesses returns how many processes /proc lists.
func countProcesses(b *testing.B) int {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
			n++
		}
	}
	return n
}
