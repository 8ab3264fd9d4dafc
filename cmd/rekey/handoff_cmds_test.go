package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// The hand-off stories' part of the world. The world's Slack speaks
// auth.test (with the bot token's scopes in X-OAuth-Scopes) and
// conversations.open (users=U…, which needs im:write), and logs what is
// posted to a direct-message channel in dm/<user>.log, not in the shared
// channel's dumps/slack.log. The leak check searches everything for every
// code a direct message held (dm-code), except those messages; and
// `rekey reveal`'s own output (.capture-reveal) for every key but the ones
// a script saw it reveal (reveal-ok).

var handoffCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// dm-code USER NAME: the last hand-off code in USER's direct messages
	// goes to codes/NAME (for `stdin codes/NAME`), and is searched for in
	// everything else rekey printed, posted and recorded.
	"dm-code": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: dm-code USER NAME")
		}
		b, err := os.ReadFile(filepath.Join(ts.Getenv("WORK"), "dm", args[0]+".log"))
		ts.Check(err)
		codes := codeRE.FindAllString(string(b), -1)
		if len(codes) == 0 {
			ts.Fatalf("no hand-off code in %s's direct messages", args[0])
		}
		code := codes[len(codes)-1]
		w := getWorld(ts)
		w.mu.Lock()
		w.codes = append(w.codes, code)
		w.mu.Unlock()
		ts.Check(os.WriteFile(filepath.Join(ts.Getenv("WORK"), "codes", args[1]), []byte(code+"\n"), 0o600))
	},
	// reveal-ok NAME: keys/NAME may appear in `rekey reveal`'s output.
	"reveal-ok": func(ts *testscript.TestScript, neg bool, args []string) {
		w := getWorld(ts)
		k := readKey(ts, args[0])
		w.mu.Lock()
		w.revealed = append(w.revealed, k)
		w.mu.Unlock()
	},
	// stdout-key NAME: the last command's stdout holds keys/NAME, on a
	// line of its own.
	"stdout-key": func(ts *testscript.TestScript, neg bool, args []string) {
		out := ts.ReadFile("stdout")
		k := readKey(ts, args[0])
		if slices.Contains(strings.Split(out, "\n"), k) == neg {
			ts.Fatalf("stdout holds keys/%s on a line of its own: %v", args[0], !neg)
		}
	},
	// an-group add GROUP [TAG...]: an Action Network group with these
	//   tags (none: a group with no tags), each with a new identifier.
	// an-group mint GROUP NAME: a new valid key of GROUP into keys/NAME.
	"an-group": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: an-group add GROUP [TAG...] | an-group mint GROUP NAME")
		}
		w := getWorld(ts)
		switch args[0] {
		case "add":
			w.sim.AddGroup(args[1], args[2:]...)
		case "mint":
			if len(args) != 3 {
				ts.Fatalf("usage: an-group mint GROUP NAME")
			}
			writeKey(ts, args[2], w.sim.GenerateFor(args[1]))
		default:
			ts.Fatalf("an-group: unknown subcommand %s", args[0])
		}
	},
	// elapse DURATION: let time pass (a code's ttl run out).
	"elapse": func(ts *testscript.TestScript, neg bool, args []string) {
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		time.Sleep(d)
	},
	// slack-scopes LIST: the bot token's scopes, as auth.test says them
	// ("-": the answer has no X-OAuth-Scopes header).
	"slack-scopes": func(ts *testscript.TestScript, neg bool, args []string) {
		s := getWorld(ts).slack
		s.mu.Lock()
		s.scopes = args[0]
		s.mu.Unlock()
	},
}

// codeRE matches a Vault service token (hvs.…), as hand-off codes are.
var codeRE = regexp.MustCompile(`hvs\.[A-Za-z0-9_-]{20,}`)

// directMessages answers auth.test and conversations.open.
func (s *worldSlack) directMessages(w http.ResponseWriter, method string, form url.Values, answer func(map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	scopes := s.scopes
	if scopes == "" {
		scopes = "chat:write,im:write"
	}
	if method == "auth.test" {
		if scopes != "-" {
			w.Header().Set("X-OAuth-Scopes", scopes)
		}
		s.calls[method]++
		answer(map[string]any{"ok": true, "url": "https://greens.slack.com/", "team": "Greens", "user": "rekey",
			"team_id": "T0GREENS", "user_id": "U0REKEYBOT", "bot_id": "B0REKEY"})
		return
	}
	users := form.Get("users")
	switch {
	case !strings.Contains(","+scopes+",", ",im:write,"):
		answer(map[string]any{"ok": false, "error": "missing_scope", "needed": "im:write", "provided": scopes})
	case users == "":
		answer(map[string]any{"ok": false, "error": "users_list_not_supplied"})
	case strings.Contains(users, ","):
		answer(map[string]any{"ok": false, "error": "not_enough_users"})
	case !regexp.MustCompile(`^[UW][A-Z0-9]+$`).MatchString(users):
		answer(map[string]any{"ok": false, "error": "user_not_found"})
	default:
		if s.dms == nil {
			s.dms = map[string]string{}
		}
		id := "D" + users
		s.dms[id] = users
		s.calls[method]++
		answer(map[string]any{"ok": true, "channel": map[string]any{"id": id}})
	}
}

// logFor is where a message to channel is logged, and whether it is a
// direct message conversations.open opened. s.mu is held.
func (s *worldSlack) logFor(channel string) (string, bool) {
	if user, ok := s.dms[channel]; ok && s.dmDir != "" {
		return filepath.Join(s.dmDir, user+".log"), true
	}
	return s.log, false
}

// handoffBlobs are the owners' direct messages and `rekey reveal`'s
// output, for the leak check.
func (w *world) handoffBlobs() []struct {
	what string
	data []byte
} {
	var out []struct {
		what string
		data []byte
	}
	for dir, what := range map[string]string{"dm": "dm/", ".capture-reveal": "reveal output "} {
		files, _ := os.ReadDir(filepath.Join(w.work, dir))
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(w.work, dir, f.Name()))
			out = append(out, struct {
				what string
				data []byte
			}{what + f.Name(), b})
		}
	}
	return out
}

// unrevealable is keys but those a script saw `rekey reveal` print.
func (w *world) unrevealable(keys []string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, k := range keys {
		if !slices.Contains(w.revealed, k) {
			out = append(out, k)
		}
	}
	return out
}
