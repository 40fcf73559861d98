package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// barWidth is the number of cells of the progress bar.
const barWidth = 30

// Progress shows how far a run is: a bar redrawn in place on a terminal,
// plain lines (stage start, each quarter, stage end) otherwise. It is safe
// for concurrent use; a nil *Progress shows nothing.
type Progress struct {
	w   io.Writer
	tty bool

	mu    sync.Mutex // guards the fields below
	stage string
	total int
	done  int
	start time.Time
}

// NewProgress writes progress to f, as a bar when f is a terminal.
func NewProgress(f *os.File) *Progress {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return &Progress{w: f, tty: err == nil}
}

// newProgressTo writes plain progress lines to w (for tests).
func newProgressTo(w io.Writer, tty bool) *Progress { return &Progress{w: w, tty: tty} }

// Stage starts a stage of total steps (0 when unknown).
func (p *Progress) Stage(name string, total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
	p.stage, p.total, p.done, p.start = name, total, 0, time.Now()
	if p.tty {
		p.drawLocked()
	} else {
		fmt.Fprintf(p.w, "bench: %s ...\n", name)
	}
}

// Step records one finished step of the stage.
func (p *Progress) Step() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	switch {
	case p.tty:
		if p.total <= 200 || p.done%(p.total/200) == 0 || p.done == p.total {
			p.drawLocked()
		}
	case p.total >= 8 && p.done < p.total && p.done%(p.total/4) == 0:
		fmt.Fprintf(p.w, "bench: %s %d/%d\n", p.stage, p.done, p.total)
	}
}

// Logf prints a line between bar redraws.
func (p *Progress) Logf(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.stage != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "bench: "+format+"\n", args...)
	if p.tty && p.stage != "" {
		p.drawLocked()
	}
}

// Done ends the current stage.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
}

func (p *Progress) endLocked() {
	if p.stage == "" {
		return
	}
	took := time.Since(p.start).Round(time.Millisecond)
	if p.tty {
		p.drawLocked()
		fmt.Fprintf(p.w, " %v\n", took)
	} else {
		fmt.Fprintf(p.w, "bench: %s done in %v\n", p.stage, took)
	}
	p.stage = ""
}

// drawLocked redraws the bar on the terminal's current line.
func (p *Progress) drawLocked() {
	fmt.Fprint(p.w, "\r\033[K"+bar(p.done, p.total)+" "+p.stage)
}

// bar draws done of total as [=====>    ] 12/50, or [...] when total is
// unknown.
func bar(done, total int) string {
	if total <= 0 {
		return "[...]"
	}
	filled := min(done*barWidth/total, barWidth)
	head := ""
	if filled < barWidth && done > 0 {
		head = ">"
		filled = max(filled-1, 0)
	}
	rest := barWidth - filled - len(head)
	return fmt.Sprintf("[%s%s%s] %d/%d", strings.Repeat("=", filled), head, strings.Repeat(" ", rest), done, total)
}
