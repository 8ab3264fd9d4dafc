package conformance_test

import (
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/internal/apitest"
	"github.com/rekey-dev/rekey/secret"
)

// platformProbe is the side of a hosted-platform test server (apitest):
// what the target holds, how often it was written, and the server's own
// failures, hangs and log.
type platformProbe struct {
	base   *apitest.Base
	holds  func() secret.Key
	set    func(secret.Key)
	writes func() int
	logs   *syncBuffer
}

func (p *platformProbe) Writes() int                                 { return p.writes() }
func (p *platformProbe) Holds(conformance.T) secret.Key              { return p.holds() }
func (p *platformProbe) SetHolds(_ conformance.T, k secret.Key) bool { p.set(k); return true }
func (p *platformProbe) HangNext() bool                              { p.base.HangNext(); return true }
func (p *platformProbe) Logs() []byte                                { return append(p.base.Log(), p.logs.Bytes()...) }

func (p *platformProbe) FailNext(f conformance.Failure) bool {
	if f == conformance.Transient {
		p.base.FailNextWrite(503)
	} else {
		p.base.FailNextWrite(403)
	}
	return true
}

// writeOnly shows an integration as the write-only target it is when its
// platform hides the value (a Netlify secret, a Vercel sensitive
// variable): integrations.Observe then goes by its timestamp, as it does
// when Read says integrations.ErrWriteOnly.
type writeOnly struct {
	integrations.Integration
	integrations.Timestamper
}
