package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

var slackCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// within DURATION CODE CMD ARGS...: as exits CODE CMD ARGS..., and CMD
	//   must finish within DURATION (a wait of ten minutes must not happen).
	"within": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 3 {
			ts.Fatalf("usage: within DURATION CODE CMD ARGS...")
		}
		limit, err := time.ParseDuration(args[0])
		ts.Check(err)
		start := time.Now()
		scriptCmds["exits"](ts, false, args[1:])
		if took := time.Since(start); took > limit {
			ts.Fatalf("%s took %v, more than %v", args[2], took.Round(time.Millisecond), limit)
		}
	},
	// repeat N TEMPLATE OUT: append TEMPLATE to OUT N times, with @N@
	//   replaced by 0000, 0001, ... (a configuration with many integrations).
	"repeat": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: repeat N TEMPLATE OUT")
		}
		n, err := strconv.Atoi(args[0])
		ts.Check(err)
		tmpl, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		var b strings.Builder
		for i := range n {
			b.WriteString(strings.ReplaceAll(string(tmpl), "@N@", fmt.Sprintf("%04d", i)))
		}
		f, err := os.OpenFile(ts.MkAbs(args[2]), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		ts.Check(err)
		_, err = f.WriteString(b.String())
		ts.Check(err)
		ts.Check(f.Close())
	},
	// slack-refused N: Slack refused exactly N messages for its limits.
	"slack-refused": func(ts *testscript.TestScript, neg bool, args []string) {
		s := getWorld(ts).slack
		want, err := strconv.Atoi(args[0])
		ts.Check(err)
		s.mu.Lock()
		got := 0
		for _, n := range s.refused {
			got += n
		}
		codes := fmt.Sprint(s.refused)
		s.mu.Unlock()
		if (got == want) == neg {
			ts.Fatalf("slack refused %d messages %s, want %d", got, codes, want)
		}
	},
}
