// Package liveview shows the integrations of a rotation as they change.
//
// On a terminal it keeps one line per integration and redraws them in
// place (cursor up, clear line) at most ten times a second, with the time
// since each integration started applying. Anywhere else (a pipe, a log
// file, CI) it prints one plain line per change, without escape sequences:
//
//	site-env: applying
//	site-env: current (0.8s)
//	ci: failed (1.2s): github: put secret ACTION_NETWORK_API_KEY in greens/site: unauthorized
package liveview

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rekey-dev/rekey/state"
	"golang.org/x/term"
)

// Interval is the shortest time between two frames on a terminal.
const Interval = 100 * time.Millisecond

const (
	cursorUp  = "\x1b[%dA"  // move the cursor up n lines
	clearLine = "\r\x1b[2K" // go to column 0 and clear the line
)

// View is a live view of integrations. Its methods are safe for concurrent
// use.
type View struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	width int // columns on the terminal; lines are cut to fit

	mu     sync.Mutex
	rows   []*row
	byID   map[string]*row
	drawn  int  // lines of the last frame, to move back over
	dirty  bool // a row changed since the last frame
	closed bool

	stop chan struct{}
	done chan struct{}
}

type row struct {
	id, detail string
	phase      state.State
	start, end time.Time // first applying or verifying; reaching a final phase
}

// New starts a view of the integrations ids, all waiting. isTTY says
// whether w is a terminal (the caller knows: term.IsTerminal on its fd).
// Call Close when the rotation is over.
func New(w io.Writer, isTTY bool, ids []string) *View {
	return newView(w, isTTY, ids, time.Now, Interval)
}

// newView is New with a clock and a frame interval; an interval of zero
// starts no redraw loop, and the test draws frames with tick.
func newView(w io.Writer, isTTY bool, ids []string, now func() time.Time, interval time.Duration) *View {
	v := &View{w: w, tty: isTTY, now: now, byID: map[string]*row{}}
	for _, id := range ids {
		v.add(id)
	}
	if !isTTY {
		return v
	}
	v.width = termWidth(w)
	v.mu.Lock()
	v.draw()
	v.mu.Unlock()
	if interval > 0 {
		v.stop, v.done = make(chan struct{}), make(chan struct{})
		go v.loop(interval)
	}
	return v
}

// Set records that integration id is now in phase, with an optional detail
// (an error, "attempt 2", …). An id not given to New is added at the end.
func (v *View) Set(id string, phase state.State, detail string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	r := v.byID[id]
	if r == nil {
		r = v.add(id)
	}
	if r.phase == phase && r.detail == detail {
		return
	}
	now := v.now()
	switch {
	case active(phase):
		if r.start.IsZero() {
			r.start = now
		}
		r.end = time.Time{}
	case phase != state.Waiting && !r.start.IsZero():
		r.end = now // the clock stops when a final phase is reached
	}
	r.phase, r.detail = phase, detail
	v.dirty = true
	if !v.tty {
		v.write([]byte(v.plainLine(r) + "\n"))
	}
}

// Close draws the last frame and stops redrawing. Later calls to Set are
// ignored.
func (v *View) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.mu.Unlock()
	if v.stop != nil {
		close(v.stop)
		<-v.done
	}
	if v.tty {
		v.mu.Lock()
		v.draw()
		v.mu.Unlock()
	}
}

func (v *View) add(id string) *row {
	r := &row{id: id, phase: state.Waiting}
	v.rows = append(v.rows, r)
	v.byID[id] = r
	return r
}

func (v *View) loop(interval time.Duration) {
	defer close(v.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
			v.tick()
		}
	}
}

// tick draws a frame when something changed or a clock is running.
func (v *View) tick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	if v.dirty || v.running() {
		v.draw()
	}
}

func (v *View) running() bool {
	for _, r := range v.rows {
		if active(r.phase) {
			return true
		}
	}
	return false
}

// draw writes a frame: back up over the last one, then each line cleared
// and rewritten. v.mu is held.
func (v *View) draw() {
	var b bytes.Buffer
	if v.drawn > 0 {
		fmt.Fprintf(&b, cursorUp, v.drawn)
	}
	wID := 0
	for _, r := range v.rows {
		wID = max(wID, utf8.RuneCountInString(r.id))
	}
	now := v.now()
	for _, r := range v.rows {
		line := fmt.Sprintf("%-*s  %-9s %6s", wID, r.id, r.phase, elapsed(r, now))
		if r.detail != "" {
			line += "  " + oneLine(r.detail)
		}
		b.WriteString(clearLine)
		b.WriteString(cut(strings.TrimRight(line, " "), v.width-1))
		b.WriteByte('\n')
	}
	v.drawn = len(v.rows)
	v.dirty = false
	v.write(b.Bytes())
}

// plainLine is a change as one line: "site-env: current (0.8s)".
func (v *View) plainLine(r *row) string {
	s := r.id + ": " + string(r.phase)
	if !active(r.phase) && !r.end.IsZero() {
		s += " (" + formatDuration(r.end.Sub(r.start)) + ")"
	}
	if r.detail != "" {
		s += ": " + oneLine(r.detail)
	}
	return s
}

// write sends b to the terminal. A view is a courtesy: a write error
// (a closed pipe) does not stop the rotation, so it is dropped.
func (v *View) write(b []byte) {
	_, _ = v.w.Write(b)
}

// elapsed is the time since r started applying: running while it is
// active, frozen once it reached a final phase.
func elapsed(r *row, now time.Time) string {
	switch {
	case r.start.IsZero():
		return ""
	case active(r.phase):
		return formatDuration(now.Sub(r.start))
	case !r.end.IsZero():
		return formatDuration(r.end.Sub(r.start))
	}
	return ""
}

func active(phase state.State) bool { return phase == state.Applying || phase == state.Verifying }

// formatDuration gives tenths of a second under a minute ("0.8s"), whole
// seconds above ("1m5s").
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cut shortens s to n runes, so that a line never wraps (a wrapped line
// would throw off the count of lines to move back over).
func cut(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// termWidth is the width of the terminal w writes to, or 80.
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}
