package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// extraCmds are the script commands of the stories about Slack's limits,
// hostile file names and keys typed in the wrong place.
var extraCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// subst-named TEMPLATE DIR "NAME" KEYNAME: as subst, into DIR/NAME,
	//   where NAME is a Go string literal (a file name holding a line
	//   break or an escape sequence).
	"subst-named": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 4 {
			ts.Fatalf("usage: subst-named TEMPLATE DIR \"NAME\" KEYNAME")
		}
		name, err := strconv.Unquote(args[2])
		ts.Check(err)
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		s := strings.ReplaceAll(string(b), "@KEY@", readKey(ts, args[3]))
		ts.Check(os.WriteFile(filepath.Join(ts.MkAbs(args[1]), name), []byte(s), 0o600))
	},
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
	// keyarg CODE NAME CMD ARGS...: as exits CODE CMD ARGS..., with @KEY@
	//   in the arguments replaced by keys/NAME (a key typed in the wrong
	//   place; the leak check then searches everything rekey printed).
	"keyarg": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 3 {
			ts.Fatalf("usage: keyarg CODE NAME CMD ARGS...")
		}
		k := readKey(ts, args[1])
		run := []string{args[0]}
		for _, a := range args[2:] {
			run = append(run, strings.ReplaceAll(a, "@KEY@", k))
		}
		scriptCmds["exits"](ts, false, run)
	},
	// key-dashed NAME: a random key of four dashed groups (Xq7w-Lm2P-9zRt-Kb4v),
	//   which has no generic key shape, into keys/NAME.
	"key-dashed": func(ts *testscript.TestScript, neg bool, args []string) {
		const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		b := make([]byte, 16)
		rand.Read(b)
		var parts []string
		for i := 0; i < 16; i += 4 {
			var p []byte
			for _, c := range b[i : i+4] {
				p = append(p, alnum[int(c)%len(alnum)])
			}
			parts = append(parts, string(p))
		}
		writeKey(ts, args[0], strings.Join(parts, "-"))
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
