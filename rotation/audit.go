package rotation

import (
	"context"
	"time"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/state"
)

// AuditResult is one integration's state as an audit found it.
type AuditResult struct {
	Result
	Fingerprint string `json:"fingerprint,omitempty"`
	// Previous is the state the last audit found, when it differs.
	Previous state.State `json:"previous,omitempty"`
}

// KeyAudit is an audit of one key's integrations.
type KeyAudit struct {
	Key          string        `json:"key"`
	Current      string        `json:"current_fingerprint,omitempty"`
	At           time.Time     `json:"at"`
	Duration     time.Duration `json:"duration_ns"`
	Integrations []AuditResult `json:"integrations"`
	// Error says why the key could not be audited at all (Vault unreachable).
	Error string `json:"error,omitempty"`
}

// AllCurrent reports whether every integration is current.
func (a *KeyAudit) AllCurrent() bool {
	if a.Error != "" {
		return false
	}
	for _, r := range a.Integrations {
		if r.State != state.Current {
			return false
		}
	}
	return true
}

// Audit works out the state of every integration of job.Key, at most
// Concurrency at once, each within Timeout, and records the result in
// the key's state so the next audit can say what changed. It changes
// nothing else. A check that cannot reach its target says unknown.
func (e *Engine) Audit(ctx context.Context, job Job) *KeyAudit {
	e.defaults()
	start := e.now()
	ka := &KeyAudit{Key: job.Key.ID, At: start}
	want, rec, err := e.Expect(ctx, job.Key)
	if err != nil {
		ka.Error = e.redact(err.Error())
		for _, t := range job.Targets {
			ka.Integrations = append(ka.Integrations, AuditResult{Result: Result{
				ID: t.Config.ID, Type: t.Config.Type, Owner: t.Config.Owner,
				State: state.Unknown, Reason: "could not read the key's versions from Vault: " + ka.Error, Proof: state.NoProof,
			}})
		}
		return ka
	}
	ka.Current = want.Current
	ka.Integrations = make([]AuditResult, len(job.Targets))
	for i, st := range e.observeAll(ctx, want, rec, job.Targets) {
		t := job.Targets[i]
		if rec != nil {
			if r := rec.Integrations[t.Config.ID]; st.State == state.Unknown && r != nil && r.State == state.Failing {
				st.Reason += "; the last rotation recorded: " + r.Reason
			}
		}
		st.Reason = e.redact(st.Reason)
		ka.Integrations[i] = AuditResult{
			Result:      Result{ID: t.Config.ID, Type: t.Config.Type, State: st.State, Reason: st.Reason, Owner: t.Config.Owner, Proof: st.Proof},
			Fingerprint: st.Fingerprint,
		}
	}
	ka.Duration = e.now().Sub(start)
	if ctx.Err() != nil {
		// An audit cut short says unknown for what it did not reach;
		// that is no finding to remember.
		return ka
	}

	// Remember this audit, and say what changed since the last one.
	audit := &records.Audit{At: start, Duration: ka.Duration, Integrations: map[string]state.Status{}}
	for _, r := range ka.Integrations {
		audit.Integrations[r.ID] = state.Status{State: r.State, Reason: r.Reason, Fingerprint: r.Fingerprint, Proof: r.Proof}
	}
	err = e.Store.UpdateKeyState(context.WithoutCancel(ctx), job.Key.ID, func(st *records.KeyState) {
		if prev := st.LastAudit; prev != nil {
			for i, r := range ka.Integrations {
				if p, ok := prev.Integrations[r.ID]; ok && p.State != r.State {
					ka.Integrations[i].Previous = p.State
				}
			}
		}
		st.LastAudit = audit
	})
	if err != nil {
		e.logger().Warn("could not record the audit", "key", job.Key.ID, "err", err)
	}
	return ka
}
