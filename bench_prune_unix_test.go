//go:build unix

package slotgc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPruneDead times PruneDead as the swarm CLI's hub start calls it:
// on a swarm where no slot is dead, the usual case, which costs a scan and
// nothing more, and on one whose every slot is dead and holds a small
// worktree. Making the dead slots is not timed.
func BenchmarkPruneDead(b *testing.B) {
	live := startChild(b, "sleep").Process.Pid
	b.Run("dead=0/live=1000", func(b *testing.B) {
		ws := benchWorkspace(b, 1000, []int{live})
		b.ReportAllocs()
		for b.Loop() {
			if removed, err := PruneDead(ws); len(removed) != 0 || err != nil {
				b.Fatalf("PruneDead(ws) = %v, %v, want nothing removed, nil", removed, err)
			}
		}
	})
	b.Run("dead=100/files=4", func(b *testing.B) {
		const slots = 100
		dead := deadPID(b)
		ws := b.TempDir()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			makeBenchDeadSlots(b, ws, slots, dead)
			b.StartTimer()
			if removed, err := PruneDead(ws); len(removed) != slots || err != nil {
				b.Fatalf("PruneDead(ws) = %d slots, %v, want %d, nil", len(removed), err, slots)
			}
		}
	})
}

// makeBenchDeadSlots makes n slots naming the dead pid, each with a pid
// file and a worktree of a directory and three small files.
func makeBenchDeadSlots(b *testing.B, ws string, n, pid int) {
	b.Helper()
	for i := range n {
		dir := filepath.Join(ws, SwarmDir, fmt.Sprintf("slot-%05d", i))
		if err := os.MkdirAll(filepath.Join(dir, "wt", "src"), 0o755); err != nil {
			b.Fatal(err)
		}
		for _, f := range []string{PIDFile, "wt/README", "wt/src/main.go", "wt/src/util.go"} {
			content := "package main\n"
			if f == PIDFile {
				content = pidLine(pid)
			}
			if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}
