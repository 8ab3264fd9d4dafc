package conformance_test

import (
	"testing"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/conformance"
	"github.com/rekey-dev/rekey/integrations/gitlab"
	"github.com/rekey-dev/rekey/internal/gitlabtest"
	"github.com/rekey-dev/rekey/secret"
)

// TestGitLab runs the suite on a masked project variable. A hidden one
// (whose value GitLab never shows) is proven by its verify probe only;
// package gitlab's tests cover it.
func TestGitLab(t *testing.T) {
	const project = "greens/campaign-site"
	conformance.Run(t, conformance.TargetFunc(func(ct conformance.T, initial secret.Key) (integrations.Integration, conformance.Probe) {
		srv := gitlabtest.New(t)
		srv.AddProject(project, 40)
		srv.SetVariable(project, gitlabtest.Variable{Key: "DEPLOY_HOST", Value: "web1.greens.example"})
		set := func(k secret.Key) {
			srv.SetVariable(project, gitlabtest.Variable{Key: "ACTION_NETWORK_API_KEY", Value: k.Reveal(), Masked: true, Protected: true})
		}
		if !initial.IsZero() {
			set(initial)
		}
		item := config.Integration{ID: "gitlab-ci", Key: "actionnetwork-main", Type: gitlab.Type, Settings: map[string]any{
			"project": project, "variable": "ACTION_NETWORK_API_KEY", "token_env": "GITLAB_TOKEN", "api_url": srv.URL,
		}}
		h, logs := host(item, envOf(map[string]string{"GITLAB_TOKEN": srv.Token}))
		in, err := gitlab.New(h, item)
		if err != nil {
			ct.Fatalf("gitlab.New: %v", err)
		}
		return in, &platformProbe{
			base:   srv.Base,
			holds:  func() secret.Key { return srv.Holds(project, "ACTION_NETWORK_API_KEY", "*") },
			set:    set,
			writes: srv.Writes,
			logs:   logs,
		}
	}))
}
