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
