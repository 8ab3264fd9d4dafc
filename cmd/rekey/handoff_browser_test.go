package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rekey-dev/rekey/internal/testtool"
	"github.com/rekey-dev/rekey/internal/vaulttest"
)

// TestHandoffPageInChromium runs the stories of testdata/browser, which
// open the hand-off page in a real headless Chromium (Debian's chromium):
// missing, it skips, saying which package to install, except under CI.
func TestHandoffPageInChromium(t *testing.T) {
	chromium := testtool.Find(t, "chromium", "chromium")
	srv := vaulttest.Shared(t)
	cmds := allCmds()
	cmds["browser-handoff"] = browserHandoff
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/browser",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("CHROMIUM", chromium)
			return setup(e, srv)
		},
		Cmds:      cmds,
		Condition: scriptCondition,
	})
}

// browserHandoff is the script command
//
//	browser-handoff ADDR CODE KEY
//
// which opens http://ADDR/handoff#<codes/CODE> in headless Chromium
// ($CHROMIUM, a fresh profile, no background networking), waits for the
// page to say which integration the code is for, presses Reveal, reads
// the key from the page and requires it to be keys/KEY, presses Copy and
// "I have pasted it", and waits for the page to say the integration is
// current. Every request the page made must go to ADDR, none may carry the
// code, the address bar must no longer hold it, and the browser must have
// reported no Content-Security-Policy violation.
func browserHandoff(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: browser-handoff ADDR CODE KEY")
	}
	addr := args[0]
	codeB, err := os.ReadFile(filepath.Join(ts.Getenv("WORK"), "codes", args[1]))
	ts.Check(err)
	code := strings.TrimSpace(string(codeB))
	want := readKey(ts, args[2])
	profile, err := os.MkdirTemp(ts.Getenv("WORK"), "chromium-profile-")
	ts.Check(err)

	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ts.Getenv("CHROMIUM")),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
	)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var requests, problems []string
	ts.Check(chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.Method+" "+e.Request.URL+"#"+e.Request.URLFragment)
		case *cdplog.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") || strings.Contains(e.Entry.Text, "Content-Security-Policy") {
				problems = append(problems, e.Entry.Text)
			}
		}
	}))

	origin := "http://" + addr + "/"
	err = chromedp.Do(ctx,
		chromedp.Navigate(origin+"handoff#"+code),
		chromedp.WaitVisible(chromedp.ID("revealbox")),
	)
	ts.Check(err)
	integration, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("integration")))
	ts.Check(err)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	ts.Check(err)
	ts.Logf("the page is for %q; the address bar shows %s", integration, loc)
	if strings.Contains(loc, code) || strings.Contains(loc, "#") {
		ts.Fatalf("the address bar still holds the code")
	}
	ts.Check(chromedp.Do(ctx, chromedp.Click(chromedp.ID("reveal")), chromedp.WaitVisible(chromedp.ID("keybox"))))
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("key")))
	ts.Check(err)
	if got != want {
		ts.Fatalf("the page shows a key that is not keys/%s (%d bytes)", args[2], len(got))
	}
	instructions, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("instructions")))
	ts.Check(err)
	ts.Logf("instructions on the page: %s", instructions)
	ts.Check(chromedp.Do(ctx, chromedp.Click(chromedp.ID("copy")), chromedp.Click(chromedp.ID("pasted")),
		chromedp.WaitVisible(chromedp.CSS("#result.good"))))
	result, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("result")))
	ts.Check(err)
	ts.Logf("the page says: %s", result)
	if !strings.Contains(result, integration+" is recorded as current") {
		ts.Fatalf("after I have pasted it, the page says %q", result)
	}
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("key")))
	ts.Check(err)
	if shown == want {
		ts.Fatalf("the key is still shown once pasted")
	}

	mu.Lock()
	defer mu.Unlock()
	var paths []string
	for _, r := range requests {
		method, u, _ := strings.Cut(r, " ")
		rawURL, fragment, _ := strings.Cut(u, "#")
		if !strings.HasPrefix(rawURL, origin) {
			ts.Fatalf("the page made a request to another origin: %s %s", method, rawURL)
		}
		if strings.Contains(rawURL, code) {
			ts.Fatalf("a request's URL carries the code: %s", method)
		}
		if fragment != "" && method != http.MethodGet {
			ts.Fatalf("a %s request had a fragment", method)
		}
		paths = append(paths, method+" /"+strings.TrimPrefix(rawURL, origin))
	}
	ts.Logf("the page's requests: %s", strings.Join(paths, ", "))
	for _, p := range []string{"GET /handoff", "GET /handoff/app.js", "GET /handoff/app.css", "POST /handoff/lookup", "POST /handoff/reveal", "POST /handoff/confirm"} {
		if !slices.Contains(paths, p) {
			ts.Fatalf("the page made no request %s", p)
		}
	}
	if len(problems) > 0 {
		ts.Fatalf("the browser reported Content-Security-Policy violations: %v", problems)
	}
}
