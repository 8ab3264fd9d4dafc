package github_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/internal/ghtest"
	"github.com/rekey-dev/rekey/secret"
)

var (
	repo = map[string]any{"repo": "greens/site"}
	env  = map[string]any{"repo": "greens/site", "environment": "production"}
	org  = map[string]any{"org": "greens"}
)

// Preflight proves, writing nothing, that the target exists, its public
// key (which the write needs) can be read, the token is accepted and, as
// far as GitHub tells a token's permissions, that it may write: each
// case a token and target Apply would write (nil), or one it would fail
// on, and what the failure says.
func TestPreflight(t *testing.T) {
	cases := []struct {
		name     string
		opts     ghtest.Options
		public   bool
		settings map[string]any
		unset    bool  // $GITHUB_TOKEN not set
		class    error // nil: ready
		says     []string
	}{
		{name: "repository", settings: repo},
		{name: "environment", settings: env},
		{name: "organisation", settings: org},
		{name: "classic token with repo", opts: ghtest.Options{Scopes: []string{"repo", "gist"}}, settings: repo},
		{name: "classic token with repo, environment", opts: ghtest.Options{Scopes: []string{"repo"}}, settings: env},
		{name: "classic token with admin:org", opts: ghtest.Options{Scopes: []string{"admin:org"}}, settings: org},
		{name: "classic public_repo, public repository", opts: ghtest.Options{Scopes: []string{"public_repo"}}, public: true, settings: repo},
		{name: "fine-grained token with secrets write", opts: ghtest.Options{Permissions: map[string]string{"secrets": "write", "metadata": "read"}}, settings: repo},

		{name: "classic token without repo, public repository", opts: ghtest.Options{Scopes: []string{"gist", "read:org"}}, public: true, settings: repo,
			class: failure.ErrUnauthorized, says: []string{"$GITHUB_TOKEN", "classic", "gist, read:org", "repo"}},
		{name: "classic public_repo, private repository", opts: ghtest.Options{Scopes: []string{"public_repo"}}, settings: repo,
			class: failure.ErrNotFound, says: []string{"repository greens/site does not exist or is not visible", "public_repo", "needs repo"}},
		{name: "classic token without admin:org", opts: ghtest.Options{Scopes: []string{"repo", "write:org"}}, settings: org,
			class: failure.ErrUnauthorized, says: []string{"repo, write:org", "needs admin:org"}},
		{name: "fine-grained token without secrets", opts: ghtest.Options{Permissions: map[string]string{"metadata": "read"}}, settings: repo,
			class: failure.ErrUnauthorized, says: []string{"status 403", "secrets=read"}},
		{name: "fine-grained token without organisation secrets", opts: ghtest.Options{Permissions: map[string]string{"secrets": "write"}}, settings: org,
			class: failure.ErrUnauthorized, says: []string{"status 403", "organization_secrets=read"}},
		{name: "SAML single sign-on", opts: ghtest.Options{SSO: []string{"greens"}}, settings: env,
			class: failure.ErrUnauthorized, says: []string{"status 403", "SAML single sign-on"}},
		{name: "repository missing", settings: map[string]any{"repo": "greens/gone"},
			class: failure.ErrNotFound, says: []string{"repository greens/gone does not exist or is not visible"}},
		{name: "environment missing", settings: map[string]any{"repo": "greens/site", "environment": "staging"},
			class: failure.ErrNotFound, says: []string{"environment staging does not exist in greens/site"}},
		{name: "environment of a missing repository", settings: map[string]any{"repo": "greens/gone", "environment": "production"},
			class: failure.ErrNotFound, says: []string{"repository greens/gone does not exist or is not visible"}},
		{name: "organisation missing", settings: map[string]any{"org": "reds"},
			class: failure.ErrNotFound, says: []string{"organisation reds does not exist or is not visible"}},
		{name: "token refused", opts: ghtest.Options{Token: "ghp_other"}, settings: repo,
			class: failure.ErrUnauthorized, says: []string{"status 401", "refused"}},
		{name: "token not set", settings: repo, unset: true,
			class: failure.ErrUnauthorized, says: []string{"$GITHUB_TOKEN is empty or not set"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.opts)
			f.srv.SetPublic("greens/site", c.public)
			switch {
			case c.unset:
				delete(f.env, "GITHUB_TOKEN")
			case c.opts.Token != "":
				f.env["GITHUB_TOKEN"] = "ghp_refused0123456789"
			}
			in := f.build(t, c.settings)
			pf, ok := in.(integrations.Preflighter)
			if !ok {
				t.Fatalf("%T is not an integrations.Preflighter", in)
			}
			err := pf.Preflight(context.Background())
			if f.srv.Puts() != 0 || strings.Contains(string(f.srv.Log()), "PUT ") {
				t.Fatalf("the preflight wrote:\n%s", f.srv.Log())
			}
			f.noLeaks(t, err)
			if c.class == nil {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				if _, err := apply(in, key1); err != nil {
					t.Fatalf("Apply after a passing preflight: %v", err)
				}
				return
			}
			if !errors.Is(err, c.class) || !strings.HasPrefix(err.Error(), "github: ") {
				t.Fatalf("Preflight: %v; want %v", err, c.class)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if _, aerr := apply(in, key1); aerr == nil {
				t.Errorf("Apply succeeded where the preflight failed (%v)", err)
			}
		})
	}
}

// A fine-grained token (or a GitHub App's) says nothing of its
// permissions until a request needs one: one that may read secrets but
// not write them passes the preflight, and the write then names the
// permission GitHub asks for.
func TestFineGrainedReadOnlyIsNamedAtTheWrite(t *testing.T) {
	f := newFixture(t, ghtest.Options{Permissions: map[string]string{"secrets": "read"}})
	in := f.build(t, repo)
	if err := in.(integrations.Preflighter).Preflight(context.Background()); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	_, err := apply(in, key1)
	if !errors.Is(err, failure.ErrUnauthorized) || !strings.Contains(err.Error(), "secrets=write") {
		t.Fatalf("Apply: %v; want unauthorized naming secrets=write", err)
	}
	f.noLeaks(t, err)
}

func apply(in integrations.Integration, k string) (integrations.ApplyResult, error) {
	return in.Apply(context.Background(), integrations.ApplyRequest{Key: secret.New(k), RotationID: "r1"})
}
