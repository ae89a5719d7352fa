package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long step has got: a bar on a terminal, and
// elsewhere (a log, a CI job, a pipe) a plain line at every tenth and at
// the end, never a carriage return or an escape sequence.
type progress struct {
	bar *progressbar.ProgressBar // nil when not on a terminal

	mu          sync.Mutex
	w           io.Writer
	what        string
	total, done int
	tenths      int
	start       time.Time
	finished    bool
}

// isTerminal says whether w is a terminal that shows a bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

// newProgress starts showing progress through total steps on w.
func newProgress(w io.Writer, total int, what string) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now()}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
	}
	return p
}

// Add counts n more steps done.
func (p *progress) Add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(p.done + n)
}

// Set says that done steps are done.
func (p *progress) Set(done int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(done)
}

func (p *progress) set(done int) {
	p.done = min(max(done, 0), p.total)
	if p.bar != nil {
		p.bar.Set(p.done)
		return
	}
	if p.total <= 0 {
		return
	}
	if t := 10 * p.done / p.total; t > p.tenths && p.done < p.total {
		p.tenths = t
		fmt.Fprintf(p.w, "%s: %d of %d (%d%%), %s\n", p.what, p.done, p.total, 100*p.done/p.total, time.Since(p.start).Round(time.Second))
	}
}

// Finish ends the display: the bar's line, or a last plain line.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "%s: %d of %d, done in %s\n", p.what, p.done, p.total, time.Since(p.start).Round(100*time.Millisecond))
}
