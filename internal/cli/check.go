package cli

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/notifiers"
	"github.com/rekey-dev/rekey/rotation"
)

// CheckOptions are `rekey check`'s arguments.
type CheckOptions struct {
	Key string
}

// NewCmdCheck builds `rekey check [KEY]`.
func NewCmdCheck(g *GlobalOptions, s Streams) *cobra.Command {
	o := &CheckOptions{}
	return &cobra.Command{
		Use:   "check [KEY]",
		Short: "Validate the configuration and check, changing nothing, that everything a rotation needs is reachable",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Key = args[0]
			}
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return checkRun(cmd.Context(), a, o)
		},
	}
}

func checkRun(ctx context.Context, a *app, o *CheckOptions) error {
	keys, err := a.selectKeys(o.Key)
	if err != nil {
		return err
	}
	ready := true
	doc := map[string]any{"config": a.cfg.File}
	w := a.human()
	fmt.Fprintf(w, "ok   config    %s: %d keys, %d integrations\n", a.cfg.File, len(a.cfg.Keys), len(a.cfg.Integrations))
	warnings := a.cleartextURLs()
	for _, warn := range warnings {
		fmt.Fprintf(w, "WARN config    %s\n", warn)
	}
	doc["warnings"] = warnings

	// Slack: auth.test with the bot token (a webhook cannot be checked
	// without posting).
	if n, err := a.notifier(); err != nil {
		ready = false
		doc["notify"] = err.Error()
		fmt.Fprintf(w, "FAIL notify    %v\n", err)
	} else if n == nil {
		doc["notify"] = "none configured"
		fmt.Fprintf(w, "ok   notify    none configured: outcomes are printed only\n")
	} else if p, ok := n.(notifiers.Pinger); ok && a.cfg.Notify.Slack != nil && a.cfg.Notify.Slack.TokenEnv != "" {
		if err := p.Ping(ctx); err != nil {
			ready = false
			doc["notify"] = err.Error()
			fmt.Fprintf(w, "FAIL notify    slack: %v\n", err)
		} else {
			doc["notify"] = "ok"
			fmt.Fprintf(w, "ok   notify    slack reachable and the bot token accepted (auth.test)\n")
		}
	} else if a.cfg.Notify.Slack != nil {
		doc["notify"] = "webhook not checked"
		fmt.Fprintf(w, "ok   notify    slack incoming webhook set (it cannot be checked without posting)\n")
	} else {
		doc["notify"] = "console"
		fmt.Fprintf(w, "ok   notify    console only\n")
	}

	// Vault.
	if err := a.connectVault(ctx); err != nil {
		if a.json() {
			doc["vault"] = err.Error()
			doc["ready"] = false
			writeJSON(a.s.Out, doc)
		}
		return err
	}
	// What this token may do on every path a rotation writes is in each
	// key's preflight.
	vaultProblems := []string{}
	var pfs []*preflight
	for _, k := range keys {
		targets, err := a.targets(k.ID)
		if err != nil {
			return err
		}
		pf := a.preflight(ctx, &k, targets, rotation.NewID(time.Now()))
		pfs = append(pfs, pf)
		if err := pf.WriteProblem(); err != nil {
			vaultProblems = append(vaultProblems, err.Error())
		}
		if !pf.Ready() {
			ready = false
		}
		if !a.json() {
			fmt.Fprintln(w)
			printPreflight(w, pf)
		}
	}
	doc["vault"] = vaultProblems
	doc["keys"] = pfs
	doc["ready"] = ready
	if a.json() {
		writeJSON(a.s.Out, doc)
	} else if ready {
		fmt.Fprintln(w, "\nReady.")
	} else {
		fmt.Fprintln(w, "\nNot ready: fix the FAIL lines above.")
	}
	if !ready {
		return silent(ExitStopped)
	}
	return nil
}

// cleartextURLs lists the places where rekey would send a key or a token
// over plain http to a host that is not this machine.
func (a *app) cleartextURLs() []string {
	var out []string
	check := func(what, raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" {
			return
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
			return
		}
		out = append(out, fmt.Sprintf("%s %s is plain http: what rekey sends there crosses the network unencrypted", what, raw))
	}
	vaultAddr := a.cfg.Vault.Address
	if vaultAddr == "" {
		vaultAddr = a.getenv("VAULT_ADDR")
	}
	check("vault address", vaultAddr)
	if sc := a.cfg.Notify.Slack; sc != nil {
		check("notify.slack.api_url", sc.APIURL)
	}
	check("serve.public_url", a.cfg.Serve.PublicURL) // the hand-off page answers the key there
	for _, k := range a.cfg.Keys {
		check("keys "+k.ID+" provider_url", k.ProviderURL)
		check("keys "+k.ID+" verify_url", k.VerifyURL)
	}
	for _, in := range a.cfg.Integrations {
		if u, ok := in.Settings["api_url"].(string); ok {
			check("integration "+in.ID+" api_url", u) // the platform token, and the key, go there
		}
	}
	return out
}
