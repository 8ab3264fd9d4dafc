package rotation_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/all"
	"github.com/rekey-dev/rekey/internal/gitlabtest"
	"github.com/rekey-dev/rekey/internal/herokutest"
	"github.com/rekey-dev/rekey/internal/k8stest"
	"github.com/rekey-dev/rekey/internal/leakcheck"
	"github.com/rekey-dev/rekey/internal/netlifytest"
	"github.com/rekey-dev/rekey/internal/rendertest"
	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/internal/verceltest"
	"github.com/rekey-dev/rekey/rotation"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/vaultstore"
)

const (
	renderSvc   = "srv-cq1example0000000000"
	netlifySite = "5d1b3c9e-0000-4000-8000-000000000001"
	gitlabProj  = "greens/campaign-site"
	anVar       = "ACTION_NETWORK_API_KEY"
)

// platforms is one test server of each hosted platform, each holding the
// old key among other variables that must stay as they are.
type platforms struct {
	k8s    *k8stest.Server
	heroku *herokutest.Server
	render *rendertest.Server
	nf     *netlifytest.Server
	vercel *verceltest.Server
	gitlab *gitlabtest.Server
	vars   map[string]string // token_env and build hook variables
	dir    string
}

func newPlatforms(t *testing.T, old secret.Key) *platforms {
	p := &platforms{dir: t.TempDir()}
	p.k8s = k8stest.New(t)
	p.k8s.AddSecret("campaign", "web-env", map[string]string{anVar: old.Reveal(), "DATABASE_URL": "postgres://web@db/web"})
	p.k8s.AddWorkload("deployments", "campaign", "web")

	p.heroku = herokutest.New(t)
	p.heroku.AddApp("greens-spoke", map[string]string{anVar: old.Reveal(), "DATABASE_URL": "postgres://spoke@db/spoke", "NODE_ENV": "production"})

	p.render = rendertest.New(t)
	p.render.AddService(renderSvc, "spoke", "DATABASE_URL", "postgres://spoke@db/spoke", anVar, old.Reveal())

	p.nf = netlifytest.New(t)
	p.nf.AddSite(netlifySite)
	p.nf.SetVar(netlifySite, netlifytest.Var{Key: anVar, Values: []netlifytest.Value{{Context: "production", Value: old.Reveal()}, {Context: "deploy-preview", Value: "preview-key-00000000"}}, UpdatedAt: time.Now().Add(-48 * time.Hour)})
	p.nf.SetVar(netlifySite, netlifytest.Var{Key: "SITE_TITLE", Values: []netlifytest.Value{{Context: "all", Value: "Greens"}}})

	// A team that enforces sensitive variables: the key can never be read
	// back from Vercel, only its updatedAt.
	p.vercel = verceltest.New(t)
	p.vercel.AddProject("campaign-site", true)
	p.vercel.EnforceSensitive()
	p.vercel.SetEnv("campaign-site", verceltest.Env{Key: anVar, Value: old.Reveal(), Type: "sensitive", Target: []string{"production"}, UpdatedAt: time.Now().Add(-48 * time.Hour)})
	p.vercel.SetEnv("campaign-site", verceltest.Env{Key: "NEXT_PUBLIC_SITE", Value: "https://greens.example", Type: "plain", Target: []string{"production", "preview"}})

	p.gitlab = gitlabtest.New(t)
	p.gitlab.AddProject(gitlabProj, 40)
	p.gitlab.SetVariable(gitlabProj, gitlabtest.Variable{Key: anVar, Value: old.Reveal(), Masked: true, Protected: true})
	p.gitlab.SetVariable(gitlabProj, gitlabtest.Variable{Key: "DEPLOY_HOST", Value: "web1.greens.example"})

	p.vars = map[string]string{
		"HEROKU_API_KEY": p.heroku.Token, "RENDER_API_KEY": p.render.Token, "NETLIFY_AUTH_TOKEN": p.nf.Token,
		"NETLIFY_BUILD_HOOK": p.nf.AddBuildHook(), "VERCEL_TOKEN": p.vercel.Token, "GITLAB_TOKEN": p.gitlab.Token,
	}
	p.kubeconfig(t, p.k8s.Token)
	return p
}

// kubeconfig writes the kubeconfig rekey reads, with token.
func (p *platforms) kubeconfig(t *testing.T, token string) {
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster: {server: %q, certificate-authority-data: %s}
contexts:
- name: prod
  context: {cluster: prod, user: rekey}
users:
- name: rekey
  user: {token: %s}
`, p.k8s.URL, base64.StdEncoding.EncodeToString(p.k8s.CA), token)
	if err := os.WriteFile(filepath.Join(p.dir, "kubeconfig"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// items are the six integrations; broken names the one pointed at a
// missing object ("k8s-web:missing").
func (p *platforms) items(broken string) string {
	name := func(id, good, missing string) string {
		if broken == id+":missing" {
			return missing
		}
		return good
	}
	return fmt.Sprintf(`
  - {id: k8s-web, key: actionnetwork-main, type: kubernetes, namespace: campaign, secret: %s, field: %s,
     restart: [deployment/web], kubeconfig: %s}
  - {id: spoke-heroku, key: actionnetwork-main, type: heroku, app: %s, variable: %s, token_env: HEROKU_API_KEY, api_url: %q}
  - {id: spoke-render, key: actionnetwork-main, type: render, service: %s, variable: %s, token_env: RENDER_API_KEY, deploy: true, api_url: %q}
  - {id: site-netlify, key: actionnetwork-main, type: netlify, account: greens, site: %s, variable: %s,
     token_env: NETLIFY_AUTH_TOKEN, build_hook_env: NETLIFY_BUILD_HOOK, api_url: %q}
  - {id: site-vercel, key: actionnetwork-main, type: vercel, project: %s, team: greens, variable: %s,
     token_env: VERCEL_TOKEN, redeploy: true, api_url: %q}
  - {id: ci-gitlab, key: actionnetwork-main, type: gitlab, project: %s, variable: %s, token_env: GITLAB_TOKEN, api_url: %q}
`,
		name("k8s-web", "web-env", "gone-env"), anVar, filepath.Join(p.dir, "kubeconfig"),
		name("spoke-heroku", "greens-spoke", "greens-gone"), anVar, p.heroku.URL,
		name("spoke-render", renderSvc, "srv-gone000000000000"), anVar, p.render.URL,
		name("site-netlify", netlifySite, "site-gone"), anVar, p.nf.URL,
		name("site-vercel", "campaign-site", "gone-site"), anVar, p.vercel.URL,
		name("ci-gitlab", gitlabProj, "greens/gone"), anVar, p.gitlab.URL)
}

// others is every variable of every platform except the key's, as text.
func (p *platforms) others() string {
	var b strings.Builder
	d := p.k8s.Data("campaign", "web-env")
	delete(d, anVar)
	fmt.Fprintf(&b, "k8s %v\n", d)
	h := p.heroku.Vars("greens-spoke")
	delete(h, anVar)
	fmt.Fprintf(&b, "heroku %v\n", h)
	fmt.Fprintf(&b, "render %v\n", slices.DeleteFunc(p.render.Vars(renderSvc), func(s string) bool { return strings.HasPrefix(s, anVar+"=") }))
	for _, k := range p.nf.Keys(netlifySite) {
		v, _ := p.nf.Get(netlifySite, k)
		for _, val := range v.Values {
			if k != anVar || val.Context != "production" {
				fmt.Fprintf(&b, "netlify %s %s=%s\n", k, val.Context, val.Value)
			}
		}
		if k != anVar {
			fmt.Fprintf(&b, "netlify %s updated %s\n", k, v.UpdatedAt)
		}
	}
	for _, e := range p.vercel.Envs("campaign-site") {
		if e.Key != anVar {
			fmt.Fprintf(&b, "vercel %s %v %s %s %s\n", e.Key, e.Target, e.Type, e.Value, e.UpdatedAt)
		}
	}
	for _, v := range p.gitlab.Variables(gitlabProj) {
		if v.Key != anVar {
			fmt.Fprintf(&b, "gitlab %+v\n", v)
		} else {
			fmt.Fprintf(&b, "gitlab %s masked=%v protected=%v hidden=%v raw=%v\n", v.Key, v.Masked, v.Protected, v.Hidden, v.Raw)
		}
	}
	return b.String()
}

// writes counts every write to every platform, and every restart, deploy
// and build they were asked for.
func (p *platforms) writes() map[string]int {
	return map[string]int{
		"k8s patches": p.k8s.Patches(), "k8s restarts": p.k8s.Restarts("deployments", "campaign", "web"),
		"heroku patches": p.heroku.Patches(), "heroku releases": p.heroku.Releases("greens-spoke"),
		"render writes": p.render.Writes(), "render bulk replaces": p.render.BulkReplaces(), "render deploys": p.render.Deploys(renderSvc),
		"netlify writes": p.nf.Writes(), "netlify builds": p.nf.Builds(),
		"vercel writes": p.vercel.Writes(), "vercel redeploys": p.vercel.Redeploys("campaign-site"),
		"gitlab writes": p.gitlab.Writes(),
	}
}

func (p *platforms) logs() map[string][]byte {
	return map[string][]byte{
		"kubernetes requests": p.k8s.Log(), "heroku requests": p.heroku.Log(), "render requests": p.render.Log(),
		"netlify requests": p.nf.Log(), "vercel requests": p.vercel.Log(), "gitlab requests": p.gitlab.Log(),
	}
}

// platformJob loads a configuration of the six integrations and builds the
// engine's job for it.
func platformJob(t *testing.T, env *vaulttest.Env, p *platforms, vaultPath, broken string, logs *lockedBuffer) rotation.Job {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "rekey.yaml")
	text := fmt.Sprintf("vault: {mount: %s}\nkeys:\n  - {id: actionnetwork-main, provider: none, vault_path: %s, owner: \"<@U012ABCDEF>\"}\nintegrations:%s", env.Mount, vaultPath, p.items(broken))
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	host := integrations.Host{
		Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return p.vars[k] }, HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
	k, _ := cfg.KeyByID("actionnetwork-main")
	job := rotation.Job{Key: *k, Reason: "scheduled"}
	for _, in := range cfg.Integrations {
		integ, err := all.New(host, in)
		if err != nil {
			t.Fatalf("build %s: %v", in.ID, err)
		}
		job.Targets = append(job.Targets, rotation.Target{Config: in, Integration: integ})
	}
	return job
}

// TestRotationAcrossTheHostedPlatforms rotates one key held by a
// Kubernetes Secret, a Heroku app, a Render service, a Netlify site, a
// Vercel project (sensitive: write-only) and a GitLab project at once,
// against the real Vault dev server and a test server of each platform.
// Every platform first answers rate limited (waited out), and someone else
// writes the Kubernetes Secret between rekey's read and its patch (a
// conflict, retried on a fresh read). Each ends holding the new key, with
// no other variable changed, each restart, deploy or build requested
// once; an audit says how each is proven; resume writes nothing.
func TestRotationAcrossTheHostedPlatforms(t *testing.T) {
	ctx := context.Background()
	old, key := secret.New("an-old-0123456789abcdef0123456789"), secret.New("an-new-fedcba9876543210fedcba9876")
	env := vaulttest.New(t)
	store := vaultstore.New(env.Client, env.Mount, "rekey")
	if _, err := store.WriteKey(ctx, "actionnetwork/main", old, 0, nil); err != nil {
		t.Fatal(err)
	}
	p := newPlatforms(t, old)
	var logs lockedBuffer
	job := platformJob(t, env, p, "actionnetwork/main", "", &logs)
	others := p.others()

	// Each platform asks rekey to slow down once; someone else writes the
	// Secret just before rekey's patch.
	p.k8s.Throttle(1, time.Second)
	p.heroku.Throttle(1, time.Second)
	p.render.Throttle(1, time.Second)
	p.nf.Throttle(1, time.Second)
	p.vercel.Throttle(1, time.Second)
	p.gitlab.Throttle(1, time.Second)
	p.k8s.ConcurrentWrite("campaign", "web-env", "DATABASE_URL", "postgres://web@db2/web")
	others = strings.Replace(others, "postgres://web@db/web", "postgres://web@db2/web", 1)

	eng := &rotation.Engine{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Concurrency: 6, Timeout: 10 * time.Second, Retries: 2, MaxRetryWait: 30 * time.Second}
	start := time.Now()
	out, err := eng.Rotate(ctx, job, key)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	proofs := map[string]state.Proof{
		"k8s-web": state.Exact, "spoke-heroku": state.Exact, "spoke-render": state.Exact,
		"site-netlify": state.Exact, "site-vercel": state.Timestamp, "ci-gitlab": state.Exact,
	}
	for _, r := range out.Results {
		if r.State != state.Current || r.Proof != proofs[r.ID] {
			t.Errorf("%s (%s) is %s, proven by %q (%s); want current, proven by %q", r.ID, r.Type, r.State, r.Proof, r.Reason, proofs[r.ID])
		}
	}
	if took < time.Second {
		t.Errorf("the rotation took %v: the rate limits (1s) were not waited out", took)
	}

	// Each platform holds the new key, as it stores it.
	holds := map[string]secret.Key{
		"kubernetes (base64-decoded data)": p.k8s.Holds("campaign", "web-env", anVar),
		"heroku":                           must(p.heroku.Var("greens-spoke", anVar)),
		"render":                           must(p.render.Var(renderSvc, anVar)),
		"netlify (production)":             p.nf.Holds(netlifySite, anVar, "production"),
		"vercel (production)":              p.vercel.Holds("campaign-site", anVar, "production"),
		"gitlab":                           p.gitlab.Holds(gitlabProj, anVar, "*"),
	}
	for where, got := range holds {
		if !got.Equal(key) {
			t.Errorf("%s holds %v, want the new key %v", where, got, key)
		}
	}
	if got := p.others(); got != others {
		t.Errorf("other variables changed:\nbefore:\n%s\nafter:\n%s", others, got)
	}
	wantWrites := map[string]int{
		"k8s patches": 1, "k8s restarts": 1, "heroku patches": 1, "heroku releases": 1,
		"render writes": 1, "render bulk replaces": 0, "render deploys": 1,
		"netlify writes": 1, "netlify builds": 1, "vercel writes": 1, "vercel redeploys": 1, "gitlab writes": 1,
	}
	if got := p.writes(); !maps.Equal(got, wantWrites) {
		t.Errorf("writes, restarts, deploys and builds: %v, want %v", got, wantWrites)
	}

	// An audit says each is current, and how it knows.
	audit := eng.Audit(ctx, job)
	for _, r := range audit.Integrations {
		if r.State != state.Current || r.Proof != proofs[r.ID] {
			t.Errorf("audit: %s is %s, proven by %q (%s)", r.ID, r.State, r.Proof, r.Reason)
		}
	}

	// Resume finds everything current and sends no write.
	before := p.writes()
	if _, err := eng.Resume(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got := p.writes(); !maps.Equal(got, before) {
		t.Errorf("resume of a finished rotation wrote: %v → %v", before, got)
	}

	seen := p.logs()
	seen["rekey's log"] = logs.Bytes()
	seen["vault records"] = env.Dump(t, "rekey/")
	seen["audit"] = []byte(fmt.Sprintf("%+v", audit))
	seen["outcome"] = []byte(fmt.Sprintf("%+v %+v", out.Results, out.Rotation))
	for what, data := range seen {
		leakcheck.Assert(t, what, data, old.Reveal(), key.Reveal())
	}
}

// TestPlatformFailuresStayLocal: for each platform, a refused token and a
// missing object fail that integration alone, with a reason naming its
// target; the other five end current.
func TestPlatformFailuresStayLocal(t *testing.T) {
	ctx := context.Background()
	env := vaulttest.New(t)
	store := vaultstore.New(env.Client, env.Mount, "rekey")
	cases := []struct {
		id, target string
		badToken   func(p *platforms, t *testing.T)
	}{
		{"k8s-web", "Secret campaign/", func(p *platforms, t *testing.T) { p.kubeconfig(t, "not-the-token") }},
		{"spoke-heroku", "app greens-", func(p *platforms, _ *testing.T) { p.vars["HEROKU_API_KEY"] = "HRKU-wrong" }},
		{"spoke-render", "service srv-", func(p *platforms, _ *testing.T) { p.vars["RENDER_API_KEY"] = "rnd_wrong" }},
		{"site-netlify", "site ", func(p *platforms, _ *testing.T) { p.vars["NETLIFY_AUTH_TOKEN"] = "nfp_wrong" }},
		{"site-vercel", "project ", func(p *platforms, _ *testing.T) { p.vars["VERCEL_TOKEN"] = "wrong" }},
		{"ci-gitlab", "project greens/", func(p *platforms, _ *testing.T) { p.vars["GITLAB_TOKEN"] = "glpat-wrong" }},
	}
	n := 0
	for _, c := range cases {
		for _, kind := range []string{"401", "404"} {
			t.Run(c.id+" "+kind, func(t *testing.T) {
				n++
				old, key := secret.New(fmt.Sprintf("an-old-%02d-456789abcdef0123456789", n)), secret.New(fmt.Sprintf("an-new-%02d-543210fedcba9876543210", n))
				path := fmt.Sprintf("actionnetwork/case%d", n)
				if _, err := store.WriteKey(ctx, path, old, 0, nil); err != nil {
					t.Fatal(err)
				}
				p := newPlatforms(t, old)
				broken := ""
				if kind == "401" {
					c.badToken(p, t)
				} else {
					broken = c.id + ":missing"
				}
				var logs lockedBuffer
				job := platformJob(t, env, p, path, broken, &logs)
				job.Key.ID = fmt.Sprintf("actionnetwork-case%d", n)
				eng := &rotation.Engine{Store: store, Concurrency: 6, Timeout: 10 * time.Second, Retries: 1}
				out, err := eng.Rotate(ctx, job, key)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range out.Results {
					switch {
					case r.ID == c.id && (r.State != state.Failing || !strings.Contains(r.Reason, c.target)):
						t.Errorf("%s with a %s: %s (%s); want failing, naming %q", r.ID, kind, r.State, r.Reason, c.target)
					case r.ID == c.id && kind == "401" && !strings.Contains(r.Reason, "unauthorized"):
						t.Errorf("%s with a refused token: %s", r.ID, r.Reason)
					case r.ID == c.id && kind == "404" && !strings.Contains(r.Reason, "not found"):
						t.Errorf("%s pointed at nothing: %s", r.ID, r.Reason)
					case r.ID != c.id && r.State != state.Current:
						t.Errorf("%s is %s (%s) because %s failed", r.ID, r.State, r.Reason, c.id)
					}
				}
				seen := p.logs()
				seen["rekey's log"] = logs.Bytes()
				seen["outcome"] = []byte(fmt.Sprintf("%+v", out.Results))
				for what, data := range seen {
					leakcheck.Assert(t, what, data, old.Reveal(), key.Reveal())
				}
			})
		}
	}
}

// lockedBuffer is a log both the engine and the integrations write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func must(k secret.Key, ok bool) secret.Key {
	if !ok {
		return secret.Key{}
	}
	return k
}
