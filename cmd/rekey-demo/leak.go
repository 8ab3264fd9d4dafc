package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"

	"github.com/rekey-dev/rekey/internal/ansim"
	"github.com/rekey-dev/rekey/internal/cli"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/vaultstore"
)

// leakDemo shows a leak response: the current key leaks while a stray copy
// of it sits in the demo folder. rekey finds it still works, alerts the
// owner, who clicks REVOKE & GENERATE on reading the alert; rekey stores and
// pushes the new key, proves the leaked one dead, finds the stray copies,
// and prints the incident timeline. Once CallHub is confirmed, the time to
// contain is known.
func leakDemo(dir string, sim *ansim.Sim, current string, rekey func(args ...string) int) error {
	step("A leak: the key was pasted into a public chat")
	stray := filepath.Join(dir, "site", ".env.bak")
	if err := os.WriteFile(stray, []byte("# backup before the migration\nACTION_NETWORK_API_KEY="+current+"\n"), 0o600); err != nil {
		return err
	}
	deploy := filepath.Join(dir, "deploy")
	if err := os.MkdirAll(deploy, 0o755); err != nil {
		return err
	}
	manifest := filepath.Join(deploy, "site-secret.yaml")
	b64 := base64.StdEncoding.EncodeToString([]byte(".env: ACTION_NETWORK_API_KEY=" + current + "\n"))
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: site-env}\ndata:\n  env: "+b64+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("The leaked key is %s. Copies nobody remembers: %s (a backup), %s (base64 in a Kubernetes Secret), and the key file of the planned rotation.\n",
		secret.New(current).Fingerprint(), rel(dir, stray), rel(dir, manifest))

	// The owner clicks REVOKE & GENERATE when the alert arrives, and
	// pastes the new key into rekey's prompt (here: its stdin).
	in, paste, err := os.Pipe()
	if err != nil {
		return err
	}
	defer in.Close()
	var newKey string
	out := &onFirst{w: os.Stdout, marker: []byte("URGENT: Key actionnetwork-main leaked"), do: func() {
		fmt.Println("(The owner reads the alert and clicks REVOKE & GENERATE NEW KEY: the leaked key dies. They paste the new key into rekey.)")
		sim.Revoke(current)
		newKey = sim.Generate()
		io.WriteString(paste, newKey+"\n")
		paste.Close()
	}}
	args := []string{"leak", "actionnetwork-main", "--yes", "--recheck-for", "10s", "--config", filepath.Join(dir, "rekey.yaml")}
	fmt.Printf("\n$ rekey %s\n", strings.Join(args[:len(args)-2], " "))
	code := cli.Main(args, cli.Streams{In: in, Out: out, Err: out})
	fmt.Printf("(exit %d: CallHub is updated by a person, so the leak is not contained until it is confirmed)\n", code)
	paste.Close()
	if newKey == "" {
		return fmt.Errorf("the leak alert never came")
	}

	step("The CallHub owner pastes the new key and confirms")
	rekey("confirm", "actionnetwork-main", "callhub", "--note", "pasted in CallHub after the leak")
	if err := printTimeToContain(); err != nil {
		return err
	}
	rekey("audit")

	step("Cleaning up the stray copies the leak response found")
	rekey("scan", dir)
	for _, p := range []string{stray, manifest, filepath.Join(dir, "new-key")} {
		if err := os.Remove(p); err != nil {
			return err
		}
		fmt.Printf("removed %s\n", rel(dir, p))
	}
	rekey("scan", dir)
	return nil
}

// printTimeToContain reads the leak rotation's record from Vault and
// prints its time to contain, now that every integration is current.
func printTimeToContain() error {
	c, err := vault.NewClient(vault.DefaultConfig()) // VAULT_ADDR and VAULT_TOKEN from run
	if err != nil {
		return err
	}
	rec, err := vaultstore.New(c, "secret", "rekey").LatestRotation(context.Background(), "actionnetwork-main")
	if err != nil {
		return err
	}
	cont, ok := rotation.ContainmentOf(rec)
	switch {
	case !ok:
		return fmt.Errorf("rotation %s is not a leak response", rec.ID)
	case cont.Contained.IsZero():
		fmt.Printf("\nThe leak is not contained yet: %s.\n", strings.Join(cont.Open, "; "))
	default:
		fmt.Printf("\nLeak contained: the leaked key was confirmed dead %s after the leak was declared, every integration was current after %s; time to contain %s (CallHub's owner took the longest).\n",
			cont.OldKeyDead.Sub(cont.Declared).Round(1e6), cont.AllCurrent.Sub(cont.Declared).Round(1e6), cont.TimeToContain.Round(1e6))
	}
	return nil
}

// onFirst writes to w, and runs do once, after the first write that
// contains marker.
type onFirst struct {
	w      io.Writer
	marker []byte
	do     func()
	once   sync.Once
}

func (o *onFirst) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if bytes.Contains(p, o.marker) {
		o.once.Do(o.do)
	}
	return n, err
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil {
		return r
	}
	return p
}
