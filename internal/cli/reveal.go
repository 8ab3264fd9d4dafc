package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/vaultstore"
)

// RevealOptions are `rekey reveal`'s flags.
type RevealOptions struct {
	CodeFile string
}

// NewCmdReveal builds `rekey reveal [--code-file PATH]`.
func NewCmdReveal(g *GlobalOptions, s Streams) *cobra.Command {
	o := &RevealOptions{}
	cmd := &cobra.Command{
		Use:   "reveal [--code-file PATH]",
		Short: "Open a hand-off code once: print the key it holds and what to do with it",
		Long: `reveal opens a one-time hand-off code, which rekey gave the owner of a manual
integration (by Slack direct message, or through the operator), and prints the
new key and the integration's instructions. The code is read from a hidden
prompt, from stdin when it is not a terminal, or from --code-file; never from
the command line. It needs no Vault token: only the Vault address ($VAULT_ADDR,
or vault.address of the configuration when there is one).

A code opens once. A code already opened, or expired, exits 1 and says which;
a second opening may mean someone else holds the key, so rekey alerts the team
(when it has the configuration and a Vault token to look the code up with).

Exit codes: 0 shown, 1 expired, already opened or not valid, 2 usage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				// Never repeated: it may be the code itself.
				g.redact.Add(args...)
				return exit(ExitUsage, errors.New("reveal takes no arguments: a code on the command line would stay in the shell's history and show in the process list"),
					"paste it at the prompt, pipe it on stdin, or pass --code-file PATH")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return revealRun(cmd.Context(), g, s, o)
		},
	}
	cmd.Flags().StringVar(&o.CodeFile, "code-file", "", "read the hand-off code from this file (else stdin when piped, else a hidden prompt)")
	return cmd
}

func revealRun(ctx context.Context, g *GlobalOptions, s Streams, o *RevealOptions) error {
	if g.Output != "text" && g.Output != "json" {
		return exit(ExitUsage, fmt.Errorf("--output must be text or json, not %q", g.Output), "")
	}
	// The configuration is optional: the code's holder may have none.
	var a *app
	if path := config.Resolve(g.ConfigPath); g.ConfigPath != "" || fileExists(path) {
		var err error
		if a, err = load(g, s); err != nil {
			return err
		}
	}
	code, err := readCode(o.CodeFile, s)
	g.redact.Add(code.Reveal())
	if err != nil {
		return exit(ExitUsage, err, "paste the code at the prompt, pipe it on stdin, or pass --code-file PATH")
	}

	eng, note, err := revealEngine(ctx, a, g, s)
	if err != nil {
		return err
	}
	opened, err := eng.Reveal(ctx, code, "reveal")
	var ce *rotation.CodeError
	switch {
	case errors.As(err, &ce):
		hint := ""
		if ce.Why == rotation.CodeUsed {
			hint = "if you did not open it yourself, tell the team: someone else may hold the key"
		}
		return exit(ExitStopped, ce, hint)
	case err != nil:
		return exit(ExitStopped, err, "check VAULT_ADDR: the code is opened at the Vault that made it")
	}
	// The key goes to this terminal as it is: this is the one place it is
	// shown, to the one person holding the code.
	out := rawWriter(s.Out)
	if g.Output == "json" {
		writeJSON(out, map[string]any{
			"key": opened.Key.Reveal(), "key_id": opened.KeyID, "integration": opened.Integration,
			"fingerprint": opened.Fingerprint, "instructions": opened.Instructions, "rotation_id": opened.RotationID,
		})
	} else {
		fmt.Fprintf(out, "Hand-off for %s (key %s, %s):\n\n%s\n\n", opened.Integration, opened.KeyID, opened.Fingerprint, opened.Key.Reveal())
		if opened.Instructions != "" {
			fmt.Fprintf(out, "What to do: %s\n", opened.Instructions)
		}
		fmt.Fprintf(out, "Then confirm it (or tell whoever sent you the code): rekey confirm %s %s\n", opened.KeyID, opened.Integration)
		fmt.Fprintf(out, "The code is used now: it opens nothing more. Keep the key out of chat and e-mail.\n")
	}
	if note != "" {
		fmt.Fprintf(s.Err, "rekey: note: %s\n", note)
	}
	return nil
}

// revealEngine is an engine that opens codes: with rekey's Vault token
// and records when the configuration and a token are at hand (the opening
// is then recorded, and a second one alerted), else with the code alone.
// note says what could not be done.
func revealEngine(ctx context.Context, a *app, g *GlobalOptions, s Streams) (*rotation.Engine, string, error) {
	if a != nil {
		if err := a.connectVault(ctx); err == nil {
			n, err := a.notifier()
			if err != nil {
				a.log.Warn("no notifier: a second opening is not alerted", "err", err)
				n = nil
			}
			return a.engine(n), "", nil
		}
	}
	// No token: the code alone opens it.
	var vc config.Vault
	var log *slog.Logger
	if a != nil {
		vc, log = a.cfg.Vault, a.log
	} else {
		log = slog.New(g.redact.Handler(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	c, err := anonymousVault(vc, os.Getenv)
	if err != nil {
		return nil, "", exit(ExitUsage, err, "set VAULT_ADDR to the Vault that made the code")
	}
	eng := &rotation.Engine{
		Logger: log, Redact: g.redact.Redact,
		Handoffs: &rotation.Handoffs{Vault: vaultstore.NewOpener(c), Learn: func(v string) { g.redact.Add(v) }},
	}
	return eng, "without rekey's configuration and Vault token, this opening is not recorded: tell the operator you opened it", nil
}

// anonymousVault is a Vault client with no token: the address from the
// configuration, else $VAULT_ADDR; the namespace likewise.
func anonymousVault(vc config.Vault, getenv func(string) string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault: %w", cfg.Error)
	}
	addr := vc.Address
	if addr == "" {
		addr = getenv("VAULT_ADDR")
	}
	if addr == "" {
		return nil, errors.New("no Vault address: set VAULT_ADDR (or vault.address in the configuration)")
	}
	cfg.Address, cfg.MaxRetries, cfg.Timeout = addr, 0, 30*time.Second
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", addr, err)
	}
	c.ClearToken()
	ns := vc.Namespace
	if ns == "" {
		ns = getenv("VAULT_NAMESPACE")
	}
	if ns != "" {
		c.SetNamespace(ns)
	}
	return c, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// maxCode bounds what is read as a code.
const maxCode = 4096

// readCode reads a hand-off code from file, else stdin when it is not a
// terminal, else a hidden prompt on the terminal. Errors never hold what
// was read.
func readCode(file string, s Streams) (rotation.Code, error) {
	var r io.Reader
	switch {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // not the path: a code passed as the path would be printed
			}
			return rotation.Code{}, fmt.Errorf("code file: cannot open it: %w", err)
		}
		defer f.Close()
		r = f
	case s.In != nil && term.IsTerminal(int(s.In.Fd())):
		fmt.Fprint(s.Err, "Paste the hand-off code (input hidden): ")
		b, err := term.ReadPassword(int(s.In.Fd()))
		fmt.Fprintln(s.Err)
		if err != nil {
			return rotation.Code{}, fmt.Errorf("read the code from the terminal: %w", err)
		}
		return parseCode(string(b))
	case s.In != nil:
		r = s.In
	default:
		r = os.Stdin
	}
	line, err := bufio.NewReader(io.LimitReader(r, maxCode+1)).ReadString('\n')
	if err != nil && err != io.EOF {
		return rotation.Code{}, fmt.Errorf("read the code: %w", err)
	}
	if len(line) > maxCode {
		return rotation.Code{}, fmt.Errorf("read the code: longer than %d bytes: not a hand-off code", maxCode)
	}
	return parseCode(line)
}

func parseCode(s string) (rotation.Code, error) {
	s = strings.TrimSpace(s)
	// A code pasted with the page's link around it: keep the fragment.
	if i := strings.LastIndex(s, "/handoff#"); i >= 0 {
		s = s[i+len("/handoff#"):]
	}
	if s == "" {
		return rotation.Code{}, errors.New("no hand-off code given")
	}
	if strings.ContainsAny(s, " \t\r\n\x00") {
		return rotation.NewCode(s), errors.New("that is not a hand-off code: it spans several words or lines")
	}
	return rotation.NewCode(s), nil
}
