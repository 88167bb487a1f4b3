package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/bones-swarm/slotgc"
)

// isTerminal reports whether w is a terminal (a character device), where
// a line rewritten in place shows as progress.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

const (
	// progressAfter is how long a prune runs before it shows progress: a
	// quick one never draws a line only to erase it.
	progressAfter = time.Second
	// progressEvery is how often the progress line is redrawn.
	progressEvery = 250 * time.Millisecond
)

// progress shows, on a terminal, how far a prune has got, on one line
// rewritten in place, once the prune has run for a while. It is drawn as
// slots are settled and, between them, on a ticker, as one slot's tree may
// take long to remove.
type progress struct {
	w      io.Writer
	dryRun bool
	start  time.Time
	after  time.Duration

	mu          sync.Mutex
	done, total int
	bytes       int64
	drawn       time.Time // when the line was last drawn; zero if never

	quit     chan struct{}
	finished chan struct{}
}

// startProgress starts showing progress on w, a terminal, once the prune
// has run for after.
func startProgress(w io.Writer, after time.Duration, dryRun bool) *progress {
	p := &progress{w: w, dryRun: dryRun, start: time.Now(), after: after, quit: make(chan struct{}), finished: make(chan struct{})}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.finished)
	select {
	case <-time.After(p.after):
	case <-p.quit:
		return
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		p.mu.Lock()
		p.draw()
		p.mu.Unlock()
		select {
		case <-tick.C:
		case <-p.quit:
			return
		}
	}
}

// update is the prune's Progress callback.
func (p *progress) update(done, total int, last slotgc.SlotOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if last.Action == slotgc.Removed || last.Action == slotgc.Recovered {
		p.bytes += last.Bytes
	}
	if time.Since(p.start) >= p.after && time.Since(p.drawn) >= progressEvery {
		p.draw()
	}
}

// draw draws the line; p.mu is held.
func (p *progress) draw() {
	verb := "pruning"
	if p.dryRun {
		verb = "judging"
	}
	// \r returns to the line's start; \x1b[K erases what a longer line
	// left.
	elapsed := time.Since(p.start).Round(time.Second)
	if p.total == 0 {
		fmt.Fprintf(p.w, "\rslotgc: %s: reading the slots, %s\x1b[K", verb, elapsed)
	} else {
		fmt.Fprintf(p.w, "\rslotgc: %s: %d of %d dead slots settled, %s taken, %s\x1b[K",
			verb, p.done, p.total, bytesText(p.bytes), elapsed)
	}
	p.drawn = time.Now()
}

// stop ends the progress, erasing its line if it drew one. It may be
// called on a nil progress, which shows nothing.
func (p *progress) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	<-p.finished
	if !p.drawn.IsZero() {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
