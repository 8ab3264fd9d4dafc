package liveview

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/state"
)

// clock is a fake clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPlain(t *testing.T) {
	type step struct {
		after  time.Duration
		id     string
		phase  state.State
		detail string
	}
	tests := []struct {
		name  string
		ids   []string
		steps []step
		want  string
	}{
		{
			name: "rotation",
			ids:  []string{"site-env", "ci", "callhub"},
			steps: []step{
				{0, "site-env", state.Applying, ""},
				{0, "ci", state.Applying, ""},
				{300 * time.Millisecond, "site-env", state.Verifying, ""},
				{500 * time.Millisecond, "site-env", state.Current, ""},
				{400 * time.Millisecond, "ci", state.Failing, "github: put secret\nunauthorized"},
				{0, "callhub", state.Pending, "waiting for <@U0CALL>"},
			},
			want: "site-env: applying\n" +
				"ci: applying\n" +
				"site-env: verifying\n" +
				"site-env: current (0.8s)\n" +
				"ci: failing (1.2s): github: put secret unauthorized\n" +
				"callhub: pending: waiting for <@U0CALL>\n",
		},
		{
			name: "repeats are not printed, new details are",
			ids:  []string{"a"},
			steps: []step{
				{0, "a", state.Applying, ""},
				{0, "a", state.Applying, ""},
				{time.Second, "a", state.Applying, "attempt 2"},
				{70 * time.Second, "a", state.Current, ""},
				{0, "a", state.Current, ""},
			},
			want: "a: applying\na: applying: attempt 2\na: current (1m11s)\n",
		},
		{
			name:  "unknown id is added",
			ids:   nil,
			steps: []step{{0, "late", state.Stale, "holds a superseded version"}},
			want:  "late: stale: holds a superseded version\n",
		},
		{
			name: "a second attempt keeps the first start",
			ids:  []string{"a"},
			steps: []step{
				{0, "a", state.Applying, ""},
				{time.Second, "a", state.Failing, ""},
				{time.Second, "a", state.Applying, ""},
				{time.Second, "a", state.Current, ""},
			},
			want: "a: applying\na: failing (1.0s)\na: applying\na: current (3.0s)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := newClock()
			v := newView(&buf, false, tt.ids, c.now, 0)
			for _, s := range tt.steps {
				c.add(s.after)
				v.Set(s.id, s.phase, s.detail)
			}
			v.Close()
			v.Set("a", state.Unknown, "after close")
			if got := buf.String(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if strings.Contains(buf.String(), "\x1b") {
				t.Errorf("escape sequence in plain output: %q", buf.String())
			}
		})
	}
}

// screen plays out what a terminal shows for out, knowing the sequences
// the view writes: cursor up, carriage return, clear line, newline.
func screen(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	row := 0
	seq := regexp.MustCompile(`^\x1b\[(\d*)([A-Za-z])`)
	set := func(s string) {
		for len(lines) <= row {
			lines = append(lines, "")
		}
		lines[row] += s
	}
	for len(out) > 0 {
		switch {
		case out[0] == '\x1b':
			m := seq.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("unknown escape sequence at %q", out)
			}
			n, _ := strconv.Atoi(m[1])
			switch m[2] {
			case "A":
				row -= n
				if row < 0 {
					t.Fatalf("cursor moved above the view")
				}
			case "K":
				if m[1] != "2" {
					t.Fatalf("unexpected %q", m[0])
				}
				set("")
				lines[row] = ""
			default:
				t.Fatalf("unexpected %q", m[0])
			}
			out = out[len(m[0]):]
		case out[0] == '\r':
			out = out[1:]
		case out[0] == '\n':
			row++
			out = out[1:]
		default:
			i := strings.IndexAny(out, "\x1b\r\n")
			if i < 0 {
				i = len(out)
			}
			set(out[:i])
			out = out[i:]
		}
	}
	return lines
}

func TestTTY(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	v := newView(&buf, true, []string{"site-env", "ci"}, c.now, 0)
	v.width = 80

	// The first frame, drawn at once.
	want := "\r\x1b[2Ksite-env  waiting\n\r\x1b[2Kci        waiting\n"
	if got := buf.String(); got != want {
		t.Fatalf("first frame %q, want %q", got, want)
	}

	// Set draws nothing by itself: frames come from the ticker only, so
	// there are at most ten a second however often Set is called.
	buf.Reset()
	v.Set("site-env", state.Applying, "")
	v.Set("ci", state.Applying, "")
	v.Set("ci", state.Applying, "attempt 2")
	if buf.Len() != 0 {
		t.Fatalf("Set wrote %q", buf.String())
	}

	c.add(1500 * time.Millisecond)
	v.tick()
	want = "\x1b[2A" +
		"\r\x1b[2Ksite-env  applying    1.5s\n" +
		"\r\x1b[2Kci        applying    1.5s  attempt 2\n"
	if got := buf.String(); got != want {
		t.Fatalf("frame %q, want %q", got, want)
	}

	// While an integration applies, its clock runs on.
	c.add(200 * time.Millisecond)
	v.Set("site-env", state.Current, "")
	c.add(300 * time.Millisecond)
	v.tick()
	got := screen(t, "\r\x1b[2Ka\n\r\x1b[2Kb\n"+buf.String()) // buf starts after the first frame
	if want := []string{"site-env  current     1.7s", "ci        applying    2.0s  attempt 2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("screen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Once nothing runs and nothing changed, no frame is drawn.
	c.add(time.Second)
	v.Set("ci", state.Failing, "github: unauthorized")
	v.tick()
	buf.Reset()
	c.add(time.Second)
	v.tick()
	if buf.Len() != 0 {
		t.Errorf("idle tick wrote %q", buf.String())
	}

	// A late id gets a new line; Close draws the last frame.
	v.Set("callhub", state.Pending, "waiting for <@U0CALL>")
	v.Close()
	v.Close()
	v.Set("ci", state.Current, "")
	v.tick()
	if !strings.HasPrefix(buf.String(), "\x1b[2A") {
		t.Errorf("last frame does not move back over the two lines: %q", buf.String())
	}
	got = screen(t, "\r\x1b[2Ka\n\r\x1b[2Kb\n"+buf.String())
	want2 := []string{
		"site-env  current     1.7s",
		"ci        failing     3.0s  github: unauthorized",
		"callhub   pending           waiting for <@U0CALL>",
	}
	if fmt.Sprint(got) != fmt.Sprint(want2) {
		t.Errorf("final screen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want2, "\n"))
	}
	if strings.Count(buf.String(), "\x1b[2A") != 1 {
		t.Errorf("something was drawn after Close: %q", buf.String())
	}
}

func TestTTYLinesAreCutToWidth(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	v := newView(&buf, true, []string{"a"}, c.now, 0)
	v.width = 30
	v.Set("a", state.Failing, strings.Repeat("x", 100))
	v.Close()
	for _, l := range screen(t, buf.String()) {
		if n := len([]rune(l)); n > 29 {
			t.Errorf("line of %d characters on a 30-column terminal: %q", n, l)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0s"},
		{-time.Second, "0.0s"},
		{840 * time.Millisecond, "0.8s"},
		{59*time.Second + 940*time.Millisecond, "59.9s"},
		{65 * time.Second, "1m5s"},
		{2*time.Hour + 400*time.Millisecond, "2h0m0s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestConcurrentSet runs the real redraw loop with many writers; run with
// -race. It checks only the final frame, which Close draws.
func TestConcurrentSet(t *testing.T) {
	var buf bytes.Buffer
	var ids []string
	for i := range 16 {
		ids = append(ids, fmt.Sprintf("integration-%02d", i))
	}
	v := New(&buf, true, ids)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for range 50 {
				v.Set(id, state.Applying, "")
				v.Set(id, state.Verifying, "")
			}
			v.Set(id, state.Current, "")
		})
	}
	wg.Wait()
	v.Close()
	lines := screen(t, buf.String())
	if len(lines) != len(ids) {
		t.Fatalf("%d lines on screen, want %d", len(lines), len(ids))
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, ids[i]+"  current") {
			t.Errorf("line %d = %q", i, l)
		}
	}

	var plain bytes.Buffer
	pv := New(&plain, false, ids)
	for _, id := range ids {
		wg.Go(func() { pv.Set(id, state.Applying, ""); pv.Set(id, state.Current, "") })
	}
	wg.Wait()
	pv.Close()
	if n := strings.Count(plain.String(), "\n"); n != 2*len(ids) {
		t.Errorf("%d plain lines, want %d", n, 2*len(ids))
	}
}
