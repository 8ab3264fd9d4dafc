package ghtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The server answers as GitHub does, and notices clients that do not send
// what GitHub asks for.
func TestServerProtocol(t *testing.T) {
	s := Start(Options{Token: "ghp_test"})
	defer s.Close()
	s.AddRepo("greens/site")
	cases := []struct {
		name, method, path, token, accept, version, body string
		status                                           int
		message                                          string
		violation                                        string
	}{
		{"public key", "GET", "repos/greens/site/actions/secrets/public-key", "Bearer ghp_test", "application/vnd.github+json", APIVersion, "", 200, "", ""},
		{"classic token header", "GET", "repos/greens/site/actions/secrets/public-key", "token ghp_test", "application/vnd.github+json", APIVersion, "", 200, "", ""},
		{"no token", "GET", "repos/greens/site/actions/secrets/public-key", "", "application/vnd.github+json", APIVersion, "", 401, "Requires authentication", ""},
		{"bad token", "GET", "repos/greens/site/actions/secrets/public-key", "Bearer ghp_nope", "application/vnd.github+json", APIVersion, "", 401, "Bad credentials", ""},
		{"unknown repository", "GET", "repos/greens/nope/actions/secrets/public-key", "Bearer ghp_test", "application/vnd.github+json", APIVersion, "", 404, "Not Found", ""},
		{"missing secret", "GET", "repos/greens/site/actions/secrets/X", "Bearer ghp_test", "application/vnd.github+json", APIVersion, "", 404, "Not Found", ""},
		{"unsupported version", "GET", "repos/greens/site/actions/secrets/X", "Bearer ghp_test", "application/vnd.github+json", "2021-01-01", "", 400, "API version '2021-01-01' is not supported.", ""},
		{"no Accept", "GET", "repos/greens/site/actions/secrets/X", "Bearer ghp_test", "", APIVersion, "", 404, "Not Found", "Accept is"},
		{"bad key_id", "PUT", "repos/greens/site/actions/secrets/X", "Bearer ghp_test", "application/vnd.github+json", APIVersion, `{"encrypted_value":"AAAA","key_id":"1"}`, 422, "Bad key_id", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(s.Violations())
			req, _ := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", c.token)
			}
			if c.accept != "" {
				req.Header.Set("Accept", c.accept)
			}
			req.Header.Set("X-GitHub-Api-Version", c.version)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var e apiError
			json.Unmarshal(b, &e)
			if resp.StatusCode != c.status || !strings.Contains(e.Message, c.message) {
				t.Fatalf("%d %s, want %d %q", resp.StatusCode, b, c.status, c.message)
			}
			if resp.StatusCode >= 400 && e.DocumentationURL == "" {
				t.Fatalf("error body %s has no documentation_url", b)
			}
			v := s.Violations()[before:]
			if (c.violation == "") != (len(v) == 0) || (c.violation != "" && !strings.Contains(v[0], c.violation)) {
				t.Fatalf("violations %q, want %q", v, c.violation)
			}
		})
	}
}

// What a token may do is answered as GitHub answers it: scopes of a
// classic token in X-OAuth-Scopes and a 404 for what they do not reach, a
// fine-grained token's missing permission in a 403 with
// X-Accepted-GitHub-Permissions, SAML enforcement in a 403 with
// X-GitHub-SSO.
func TestTokenPermissions(t *testing.T) {
	cases := []struct {
		name          string
		o             Options
		public        bool
		method, path  string
		status        int
		header, value string // a header the answer must carry
		message       string
	}{
		{"classic with repo", Options{Scopes: []string{"repo", "gist"}}, false, "GET", "repos/greens/site/actions/secrets/public-key", 200, "X-OAuth-Scopes", "repo, gist", ""},
		{"classic without repo", Options{Scopes: []string{"gist"}}, false, "GET", "repos/greens/site/actions/secrets/public-key", 404, "X-OAuth-Scopes", "gist", "Not Found"},
		{"classic, public key of a public repository", Options{Scopes: []string{}}, true, "GET", "repos/greens/site/actions/secrets/public-key", 200, "X-OAuth-Scopes", "", ""},
		{"classic public_repo writes a public repository", Options{Scopes: []string{"public_repo"}}, true, "PUT", "repos/greens/site/actions/secrets/X", 422, "X-Accepted-OAuth-Scopes", "repo, public_repo", "Bad key_id"},
		{"classic public_repo, private repository", Options{Scopes: []string{"public_repo"}}, false, "PUT", "repos/greens/site/actions/secrets/X", 404, "", "", "Not Found"},
		{"classic without admin:org", Options{Scopes: []string{"repo", "write:org"}}, false, "GET", "orgs/greens/actions/secrets/public-key", 404, "X-Accepted-OAuth-Scopes", "admin:org", "Not Found"},
		{"fine-grained read", Options{Permissions: map[string]string{"secrets": "read"}}, false, "GET", "repos/greens/site/actions/secrets/public-key", 200, "X-Accepted-GitHub-Permissions", "secrets=read", ""},
		{"fine-grained read, writing", Options{Permissions: map[string]string{"secrets": "read"}}, false, "PUT", "repos/greens/site/actions/secrets/X", 403, "X-Accepted-GitHub-Permissions", "secrets=write", "Resource not accessible by personal access token"},
		{"fine-grained without organisation secrets", Options{Permissions: map[string]string{"secrets": "write"}}, false, "GET", "orgs/greens/actions/secrets/public-key", 403, "X-Accepted-GitHub-Permissions", "organization_secrets=read", "Resource not accessible"},
		{"SAML", Options{SSO: []string{"greens"}}, false, "GET", "repos/greens/site/actions/secrets/public-key", 403, "X-GitHub-SSO", "required; url=https://github.com/orgs/greens/sso?authorization_request=A1B2C3", "SAML enforcement"},
		{"repository", Options{}, false, "GET", "repos/greens/site", 200, "", "", ""},
		{"environment", Options{}, false, "GET", "repos/greens/site/environments/production", 200, "", "", ""},
		{"missing environment", Options{}, false, "GET", "repos/greens/site/environments/staging", 404, "", "", "Not Found"},
		{"organisation", Options{}, false, "GET", "orgs/greens", 200, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.Token = "ghp_test"
			s := New(t, c.o)
			s.AddEnvironment("greens/site", "production")
			s.AddOrg("greens")
			s.SetPublic("greens/site", c.public)
			body := ""
			if c.method == "PUT" {
				body = `{"encrypted_value":"AAAA","key_id":"1"}`
			}
			req, _ := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer ghp_test")
			req.Header.Set("Accept", "application/vnd.github+json")
			req.Header.Set("X-GitHub-Api-Version", APIVersion)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var e apiError
			json.Unmarshal(b, &e)
			if resp.StatusCode != c.status || !strings.Contains(e.Message, c.message) {
				t.Fatalf("%d %s, want %d %q", resp.StatusCode, b, c.status, c.message)
			}
			if c.header != "" {
				if v, ok := resp.Header[http.CanonicalHeaderKey(c.header)]; !ok || strings.Join(v, ", ") != c.value {
					t.Fatalf("%s: %q, want %q", c.header, v, c.value)
				}
			}
		})
	}
}
