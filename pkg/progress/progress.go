// Package progress reports how far a long run (a migration, a bulk
// create) has got: a bar redrawn in place with the rate and the time left
// on a terminal, a plain line every few seconds otherwise (logs, CI).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar counts done items of a known total. It is safe for concurrent use.
type Bar struct {
	w        io.Writer
	what     string
	total    int
	terminal bool
	every    time.Duration
	now      func() time.Time

	mu       sync.Mutex
	done     int
	failed   int
	start    time.Time
	lastDraw time.Time
}

// New returns a bar for total items called what ("devices"), drawn on w;
// terminal says whether w is a terminal (redraw in place) or not (a line
// every 5 seconds and at the end).
func New(w io.Writer, what string, total int, terminal bool) *Bar {
	b := &Bar{w: w, what: what, total: total, terminal: terminal, every: 5 * time.Second, now: time.Now}
	if terminal {
		b.every = 100 * time.Millisecond
	}
	b.start = b.now()
	return b
}

// Add counts n more items done (failed among them), redrawing when due.
func (b *Bar) Add(n, failed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.failed += failed
	if t := b.now(); t.Sub(b.lastDraw) >= b.every {
		b.lastDraw = t
		b.draw(t, false)
	}
}

// Finish draws the final state.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(b.now(), true)
}

// Line is the state as text: "4200/10000 devices  830/s  7s left".
func (b *Bar) line(t time.Time) string {
	elapsed := t.Sub(b.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(b.done) / elapsed
	}
	s := fmt.Sprintf("%d/%d %s  %.0f/s", b.done, b.total, b.what, rate)
	if b.failed > 0 {
		s += fmt.Sprintf("  %d failed", b.failed)
	}
	if rate > 0 && b.done < b.total {
		left := time.Duration(float64(b.total-b.done) / rate * float64(time.Second))
		s += fmt.Sprintf("  %s left", left.Round(time.Second))
	} else if b.done >= b.total {
		s += fmt.Sprintf("  done in %s", t.Sub(b.start).Round(10*time.Millisecond))
	}
	return s
}

func (b *Bar) draw(t time.Time, final bool) {
	if !b.terminal {
		fmt.Fprintln(b.w, b.line(t))
		return
	}
	const width = 30
	filled := width
	if b.total > 0 {
		filled = min(width, b.done*width/b.total)
	}
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(b.w, "\r\x1b[K[%s] %s%s", bar, b.line(t), end)
}
