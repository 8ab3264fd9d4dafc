package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/rotation"
)

// StatusOptions are `rekey status`'s arguments.
type StatusOptions struct {
	Key string
}

// NewCmdStatus builds `rekey status [KEY]`.
func NewCmdStatus(g *GlobalOptions, s Streams) *cobra.Command {
	o := &StatusOptions{}
	return &cobra.Command{
		Use:   "status [KEY]",
		Short: "Each key's version, fingerprint, age, next due date and last rotation, from Vault alone",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Key = args[0]
			}
			a, err := load(g, s)
			if err != nil {
				return err
			}
			return statusRun(cmd.Context(), a, o)
		},
	}
}

// KeyStatus is one key in `rekey status`.
type KeyStatus struct {
	Key         string     `json:"key"`
	VaultPath   string     `json:"vault_path"`
	Version     int        `json:"version,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	StoredAt    *time.Time `json:"stored_at,omitempty"`
	AgeDays     float64    `json:"age_days,omitempty"`
	RotateEvery string     `json:"rotate_every,omitempty"`
	NextDue     *time.Time `json:"next_due,omitempty"`
	Overdue     bool       `json:"overdue,omitempty"`
	Compromised []int      `json:"compromised_versions,omitempty"`
	// NotDead lists the compromised versions the provider was never found
	// to refuse (`rekey serve` asks each round).
	NotDead []int `json:"leaked_not_confirmed_dead,omitempty"`
	// Versions is every version rekey knows of, oldest first, and whether
	// Vault still holds it.
	Versions []VersionStatus `json:"versions,omitempty"`
	// NoHistory says rekey keeps no history of this key yet (it is seeded
	// at its next rotation or audit): only what Vault holds is known.
	NoHistory    bool            `json:"no_history,omitempty"`
	LastRotation *RotationStatus `json:"last_rotation,omitempty"`
	LastAudit    *records.Audit  `json:"last_audit,omitempty"`
	Error        string          `json:"error,omitempty"`
}

// VersionStatus is one version of a key as `status` shows it.
type VersionStatus struct {
	Version     int              `json:"version"`
	Fingerprint string           `json:"fingerprint"`
	Standing    records.Standing `json:"standing"`
	Since       *time.Time       `json:"since,omitempty"`
	// InVault says whether Vault still holds it (not pruned by
	// max_versions, deleted or destroyed).
	InVault bool `json:"in_vault"`
}

// RotationStatus is a rotation as `status` shows it.
type RotationStatus struct {
	ID           string                          `json:"id"`
	Reason       string                          `json:"reason"`
	Phase        records.Phase                   `json:"phase"`
	Operator     string                          `json:"operator"`
	Started      time.Time                       `json:"started"`
	Finished     time.Time                       `json:"finished,omitzero"`
	Integrations map[string]*records.Integration `json:"integrations"`
	Timeline     []records.Mark                  `json:"timeline,omitempty"`
	Containment  *rotation.Containment           `json:"containment,omitempty"`
	// Handoffs is where each manual integration's hand-off code stands.
	Handoffs []rotation.HandoffStatus `json:"handoffs,omitempty"`
}

func statusRun(ctx context.Context, a *app, o *StatusOptions) error {
	keys, err := a.selectKeys(o.Key)
	if err != nil {
		return err
	}
	if err := a.connectVault(ctx); err != nil {
		return err
	}
	now := time.Now().UTC()
	var out []KeyStatus
	for _, k := range keys {
		out = append(out, a.keyStatus(ctx, k, now))
	}
	if a.json() {
		writeJSON(a.s.Out, map[string]any{"keys": out})
		return nil
	}
	for _, ks := range out {
		printKeyStatus(a, ks)
	}
	return nil
}

func (a *app) keyStatus(ctx context.Context, k config.Key, now time.Time) KeyStatus {
	ks := KeyStatus{Key: k.ID, VaultPath: a.cfg.Vault.Mount + "/" + k.VaultPath}
	cur, err := a.store.ReadKey(ctx, k.VaultPath)
	if errors.Is(err, failure.ErrNotFound) {
		ks.Error = "no version in Vault yet"
		return ks
	}
	if err != nil {
		ks.Error = err.Error()
		return ks
	}
	stored := cur.Created.UTC()
	ks.Version, ks.Fingerprint, ks.StoredAt = cur.Version, cur.Fingerprint(), &stored
	ks.AgeDays = float64(int(now.Sub(stored).Hours()/24*10)) / 10
	if k.RotateEvery > 0 {
		due := stored.Add(k.RotateEvery.D())
		ks.RotateEvery, ks.NextDue, ks.Overdue = k.RotateEvery.String(), &due, now.After(due)
	}
	st, _, err := a.store.KeyState(ctx, k.ID)
	if err == nil {
		for v := range st.Compromised {
			ks.Compromised = append(ks.Compromised, v)
		}
		ks.NotDead = a.engine(nil).UnconfirmedLeaks(ctx, k.ID, st)
	} else {
		st = &records.KeyState{}
	}
	if la, _, err := a.store.LastAudit(ctx, k.ID); err == nil {
		ks.LastAudit = la
	}
	ks.Versions, ks.NoHistory = a.versionStatus(ctx, k, cur.Version, st)
	for _, v := range ks.Versions {
		if v.Standing == records.StandingCompromised && !slices.Contains(ks.Compromised, v.Version) {
			ks.Compromised = append(ks.Compromised, v.Version)
		}
	}
	slices.Sort(ks.Compromised)
	if r, err := a.store.LatestRotation(ctx, k.ID); err == nil {
		ks.LastRotation = &RotationStatus{ID: r.ID, Reason: r.Reason, Phase: r.Phase, Operator: r.Operator, Started: r.Started, Finished: r.Finished, Integrations: r.Integrations, Timeline: r.Timeline}
		if c, ok := rotation.ContainmentOf(r); ok {
			ks.LastRotation.Containment = &c
		}
		ks.LastRotation.Handoffs = a.handoffStatuses(ctx, k)
	}
	return ks
}

// versionStatus lists every version of k rekey knows of, from its history
// and what Vault holds. noHistory is set when there is no history yet.
func (a *app) versionStatus(ctx context.Context, k config.Key, current int, st *records.KeyState) (out []VersionStatus, noHistory bool) {
	held := map[string]bool{} // fingerprints of the versions Vault holds
	versions, _, err := a.store.Versions(ctx, k.VaultPath)
	if err != nil {
		a.log.Warn("could not read the key's versions", "key", k.ID, "err", err)
	}
	for _, v := range versions {
		held[v.Fingerprint()] = true
	}
	h, _, err := a.store.History(ctx, k.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		a.log.Warn("could not read the key's history", "key", k.ID, "err", err)
	}
	known := map[string]bool{}
	if h != nil {
		for _, v := range h.Versions {
			since := v.Since
			out = append(out, VersionStatus{Version: v.Version, Fingerprint: v.Fingerprint, Standing: v.Standing, Since: &since, InVault: held[v.Fingerprint]})
			known[v.Fingerprint] = true
		}
	}
	// What Vault holds that the history does not (yet).
	for _, v := range versions {
		fp := v.Fingerprint()
		if known[fp] {
			continue
		}
		vs := VersionStatus{Version: v.Version, Fingerprint: fp, Standing: records.StandingSuperseded, InVault: true}
		if c, ok := st.Compromised[v.Version]; ok && c.Fingerprint == fp {
			vs.Standing = records.StandingCompromised
		} else if v.Version == current {
			vs.Standing = records.StandingCurrent
		}
		out = append(out, vs)
	}
	slices.SortStableFunc(out, func(a, b VersionStatus) int { return a.Version - b.Version })
	return out, h == nil
}

func printKeyStatus(a *app, ks KeyStatus) {
	w := a.s.Out
	fmt.Fprintf(w, "%s (%s)\n", ks.Key, ks.VaultPath)
	if ks.Error != "" {
		fmt.Fprintf(w, "  %s\n", ks.Error)
		return
	}
	fmt.Fprintf(w, "  version %d  %s  stored %s (%.1f days ago)\n", ks.Version, ks.Fingerprint, ks.StoredAt.Format(time.RFC3339), ks.AgeDays)
	if ks.NextDue != nil {
		due := "due " + ks.NextDue.Format("2006-01-02")
		if ks.Overdue {
			due = "OVERDUE since " + ks.NextDue.Format("2006-01-02")
		}
		fmt.Fprintf(w, "  rotate every %s: %s\n", ks.RotateEvery, due)
	}
	if len(ks.Compromised) > 0 {
		fmt.Fprintf(w, "  compromised versions: %v\n", ks.Compromised)
	}
	if len(ks.NotDead) > 0 {
		fmt.Fprintf(w, "  LEAKED AND NOT CONFIRMED DEAD: versions %v: the provider never refused them; revoke them (`rekey serve` asks each round)\n", ks.NotDead)
	}
	printVersions(w, ks)
	r := ks.LastRotation
	if r == nil {
		fmt.Fprintln(w, "  no rotation on record")
		return
	}
	fmt.Fprintf(w, "  last rotation %s (%s) by %s, %s, started %s\n", r.ID, r.Reason, r.Operator, r.Phase, r.Started.Format(time.RFC3339))
	for _, in := range a.cfg.IntegrationsOf(ks.Key) {
		rec, ok := r.Integrations[in.ID]
		if !ok {
			fmt.Fprintf(w, "    %-10s %-11s %-16s not part of this rotation\n", "-", "-", in.ID)
			continue
		}
		fmt.Fprintf(w, "    %-10s %-11s %-16s %s\n", proofWord(rec.Proof), rec.State, in.ID, rec.Reason)
		printHandoff(w, "      ", r.Handoffs, in.ID)
	}
	if c := r.Containment; c != nil {
		if c.Contained.IsZero() {
			fmt.Fprintf(w, "  leak declared %s; not contained yet: %s\n", c.Declared.Format(time.RFC3339), strings.Join(c.Open, "; "))
		} else {
			fmt.Fprintf(w, "  leak contained in %s (declared %s, contained %s)\n", c.TimeToContain.Round(time.Second), c.Declared.Format(time.RFC3339), c.Contained.Format(time.RFC3339))
		}
	}
}

// printVersions says how many versions rekey knows of and which of them
// Vault no longer holds.
func printVersions(w io.Writer, ks KeyStatus) {
	var gone []string
	for _, v := range ks.Versions {
		if !v.InVault {
			gone = append(gone, fmt.Sprintf("%d (%s, %s)", v.Version, v.Fingerprint, v.Standing))
		}
	}
	known := plural(len(ks.Versions), "version", "versions")
	switch {
	case ks.NoHistory:
		fmt.Fprintf(w, "  versions: %s in Vault; rekey keeps no history of this key yet (its next rotation or audit starts it)\n", known)
	case len(gone) == 0:
		fmt.Fprintf(w, "  versions: %s on record, all still in Vault\n", known)
	default:
		fmt.Fprintf(w, "  versions: %s on record; Vault no longer holds %s\n", known, strings.Join(gone, ", "))
	}
}
