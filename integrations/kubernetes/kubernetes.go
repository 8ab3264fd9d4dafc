// Package kubernetes is the `kubernetes` integration type: one key of a
// Secret's data, through the Kubernetes API.
//
//	integrations:
//	  - {id: k8s-web, key: actionnetwork-main, type: kubernetes,
//	     namespace: campaign, secret: web-env, field: ACTION_NETWORK_API_KEY,
//	     restart: [deployment/web, statefulset/worker], context: prod}
//
// Fields: namespace, secret (the Secret's name), field (the key of its
// data), optional restart (workloads to restart after a changed write,
// kind/name with kind deployment, statefulset or daemonset), kubeconfig
// and context (which credentials: see kubeconfig.go; by default as kubectl
// finds them, or the pod's service account), api_url (the API server, in
// place of the kubeconfig's) and verify (a probe shaped like the http
// type's).
//
// Apply reads the Secret and, unless the field already holds the key,
// patches that one field with a JSON merge patch that carries the
// resourceVersion it read: when someone else changed the Secret in
// between, the API server answers 409 Conflict, and Apply reads it again
// and patches again (never clobbering the other change). Every other key
// of the Secret stays. The Secret must exist; rekey does not create one.
// After a changed write, each restart workload is restarted as `kubectl
// rollout restart` does: a strategic merge patch that sets the pod
// template's kubectl.kubernetes.io/restartedAt annotation. A restart that
// failed is done on the next attempt, also when the field already holds
// the key but rekey has no record of writing it; a workload restarted in
// this rotation is not restarted again.
//
// The state is read back (exact): the field's value, base64-decoded.
//
// Preflight reads the Secret (it must exist and not be immutable) and
// asks the API server, with SelfSubjectAccessReviews, whether these
// credentials may patch it and each restart workload; each workload must
// exist and not be paused.
//
// The credentials (a token, a token file, a client key) are given to the
// run's redactor (integrations.SecretHolder), so that no output, error or
// log line can show them, however a peer quoted them back.
//
// The client is plain REST with a small kubeconfig reader rather than
// k8s.io/client-go: four calls read plainly here, every failure is
// classified in one place from status and headers (client-go's errors
// carry the server's message), and client-go would bring some forty
// modules into a tool that holds keys.
package kubernetes

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/integrations"
	"github.com/rekey-dev/rekey/integrations/internal/httpx"
	"github.com/rekey-dev/rekey/integrations/internal/platform"
	"github.com/rekey-dev/rekey/integrations/internal/rest"
	"github.com/rekey-dev/rekey/secret"
)

// Type is the name of this integration type in the configuration.
const Type = "kubernetes"

// RestartedAt is the pod-template annotation `kubectl rollout restart` sets.
const RestartedAt = "kubectl.kubernetes.io/restartedAt"

// fieldManager names rekey's writes in managedFields.
const fieldManager = "rekey"

type fields struct {
	Namespace  string         `mapstructure:"namespace"`
	Secret     string         `mapstructure:"secret"`
	Field      string         `mapstructure:"field"`
	Restart    []string       `mapstructure:"restart"`
	Kubeconfig string         `mapstructure:"kubeconfig"`
	Context    string         `mapstructure:"context"`
	APIURL     string         `mapstructure:"api_url"`
	Verify     map[string]any `mapstructure:"verify"`
}

// workload is one thing to restart.
type workload struct {
	resource string // deployments, statefulsets, daemonsets
	name     string
	label    string // deployment/web
}

// Kubernetes is one key of one Secret.
type Kubernetes struct {
	id         string
	namespace  string
	secretName string
	field      string
	restart    []workload
	target     string // "Secret campaign/web-env"
	kubeconfig string
	context    string
	apiURL     string
	getenv     func(string) string
	timeout    time.Duration
	log        *slog.Logger

	mu        sync.Mutex
	api       *rest.Client // built at first use, from the credentials
	cred      *credentials // read once (credentialsLocked)
	restarted map[string]bool
	rotation  string // the rotation and key restarted holds
}

// withVerify is a kubernetes integration with its verify probe.
type withVerify struct {
	*Kubernetes
	platform.Verified
}

var (
	_ integrations.Integration  = (*Kubernetes)(nil)
	_ integrations.Reader       = (*Kubernetes)(nil)
	_ integrations.Preflighter  = (*Kubernetes)(nil)
	_ integrations.SecretHolder = (*Kubernetes)(nil)
	_ integrations.SecretHolder = withVerify{}
	_ integrations.Verifier     = withVerify{}
	_ integrations.Factory      = New
)

var (
	labelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dataKeyRE   = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	kinds       = map[string]string{
		"deployment": "deployments", "deployments": "deployments", "deploy": "deployments",
		"statefulset": "statefulsets", "statefulsets": "statefulsets", "sts": "statefulsets",
		"daemonset": "daemonsets", "daemonsets": "daemonsets", "ds": "daemonsets",
	}
)

// New builds a kubernetes integration from its configuration item. The
// kubeconfig is read when the integration is first used, not here.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	var f fields
	if err := h.Config.DecodeSettings(in, &f); err != nil {
		return nil, err
	}
	switch {
	case f.Namespace == "":
		return nil, h.Config.Required(in, "namespace", "(the Secret's namespace)")
	case len(f.Namespace) > 63 || !labelRE.MatchString(f.Namespace):
		return nil, h.Config.Invalid(in, "namespace", "%q is not a namespace name", f.Namespace)
	case f.Secret == "":
		return nil, h.Config.Required(in, "secret", "(the Secret's name)")
	case len(f.Secret) > 253 || !subdomainRE.MatchString(f.Secret):
		return nil, h.Config.Invalid(in, "secret", "%q is not a Secret name", f.Secret)
	case f.Field == "":
		return nil, h.Config.Required(in, "field", "(the key of the Secret's data that holds the key)")
	case len(f.Field) > 253 || !dataKeyRE.MatchString(f.Field):
		return nil, h.Config.Invalid(in, "field", "%q is not a Secret data key (letters, digits, '-', '_', '.')", f.Field)
	case f.Context != "" && strings.TrimSpace(f.Context) != f.Context:
		return nil, h.Config.Invalid(in, "context", "%q has surrounding white space", f.Context)
	}
	x := &Kubernetes{
		id: in.ID, namespace: f.Namespace, secretName: f.Secret, field: f.Field,
		target:     "Secret " + f.Namespace + "/" + f.Secret,
		kubeconfig: f.Kubeconfig, context: f.Context, getenv: h.Getenv, log: h.Logger,
	}
	for i, r := range f.Restart {
		kind, name, ok := strings.Cut(r, "/")
		res := kinds[strings.ToLower(kind)]
		if !ok || res == "" || len(name) > 253 || !subdomainRE.MatchString(name) {
			return nil, h.Config.Invalid(in, fmt.Sprintf("restart[%d]", i), "%q is not kind/name with kind deployment, statefulset or daemonset", r)
		}
		x.restart = append(x.restart, workload{resource: res, name: name, label: strings.TrimSuffix(res, "s") + "/" + name})
	}
	if f.APIURL != "" {
		if _, err := rest.ParseBase(f.APIURL); err != nil {
			return nil, h.Config.Invalid(in, "api_url", "%v", err)
		}
		x.apiURL = f.APIURL
	}
	if x.getenv == nil {
		x.getenv = func(string) string { return "" }
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if h.HTTPClient != nil {
		x.timeout = h.HTTPClient.Timeout
	}
	probe, ok, err := platform.NewVerified(h, in, f.Verify)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return x, nil
	}
	return withVerify{Kubernetes: x, Verified: probe}, nil
}

// ID implements integrations.Integration.
func (x *Kubernetes) ID() string { return x.id }

// client builds the API client from the credentials, once.
func (x *Kubernetes) client() (*rest.Client, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.api != nil {
		return x.api, nil
	}
	cred, err := x.credentialsLocked()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %s: %v: %w", x.target, err, failure.ErrInvalid)
	}
	api, err := clientFor(cred, x.apiURL, x.timeout)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %s: %v: %w", x.target, err, failure.ErrInvalid)
	}
	x.api = api
	return api, nil
}

// credentialsLocked reads the kubeconfig (or the pod's service account)
// once: Secrets at start-up and the client on first use share what was
// read. x.mu is held.
func (x *Kubernetes) credentialsLocked() (*credentials, error) {
	if x.cred != nil {
		return x.cred, nil
	}
	cred, err := loadCredentials(x.kubeconfig, x.context, x.getenv)
	if err != nil {
		return nil, err
	}
	x.cred = cred
	return cred, nil
}

// Secrets implements integrations.SecretHolder: the credentials the
// kubeconfig (or the pod's service account) gives this integration, for
// the run's redactor: a static token, the token file's content as it is
// now (a projected token rotates; a later one is not known), the client
// certificate's private key. A kubeconfig that cannot be read gives none.
func (x *Kubernetes) Secrets() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	cred, err := x.credentialsLocked()
	if err != nil {
		return nil
	}
	return cred.secrets()
}

// clientFor is an API client with cred, at apiURL when it is given.
func clientFor(cred *credentials, apiURL string, timeout time.Duration) (*rest.Client, error) {
	server := cred.server.String()
	if apiURL != "" {
		server = apiURL
	}
	base, err := rest.ParseBase(server)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cred.tls
	return &rest.Client{
		Base:       base,
		HTTP:       httpx.Client(&http.Client{Transport: t, Timeout: timeout}),
		Credential: cred.bearer,
		Who:        cred.source,
		Auth: func(h http.Header, token string) {
			if token != "" {
				h.Set("Authorization", "Bearer "+token)
			}
		},
		DefaultWait: time.Second,
	}, nil
}

func (x *Kubernetes) secretPath() string {
	return "api/v1/namespaces/" + url.PathEscape(x.namespace) + "/secrets/" + url.PathEscape(x.secretName)
}

func (x *Kubernetes) workloadPath(w workload) string {
	return "apis/apps/v1/namespaces/" + url.PathEscape(x.namespace) + "/" + w.resource + "/" + url.PathEscape(w.name)
}

// secretObject is the part of a Secret rekey reads.
type secretObject struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Data      map[string]string `json:"data"`
	Immutable bool              `json:"immutable"`
}

func (x *Kubernetes) get(ctx context.Context) (secretObject, error) {
	api, err := x.client()
	if err != nil {
		return secretObject{}, err
	}
	what := fmt.Sprintf("kubernetes: read %s", x.target)
	resp, err := api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.secretPath(), What: what, Target: x.target})
	if err != nil {
		return secretObject{}, err
	}
	var s secretObject
	if err := rest.Decode(resp, &s, what); err != nil {
		return secretObject{}, err
	}
	return s, nil
}

// held decodes the field's value; ok is false when the Secret lacks it.
func (x *Kubernetes) held(s secretObject) (secret.Key, bool, error) {
	v, ok := s.Data[x.field]
	if !ok || v == "" {
		return secret.Key{}, false, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return secret.Key{}, false, fmt.Errorf("kubernetes: %s: key %s is not base64 (%d bytes): %w", x.target, x.field, len(v), failure.ErrInvalid)
	}
	return secret.New(string(b)), true, nil
}

// Read implements integrations.Reader.
func (x *Kubernetes) Read(ctx context.Context) (secret.Key, error) {
	s, err := x.get(ctx)
	if err != nil {
		return secret.Key{}, err
	}
	k, ok, err := x.held(s)
	if err != nil {
		return secret.Key{}, err
	}
	if !ok {
		return secret.Key{}, fmt.Errorf("kubernetes: %s has no key %s: %w", x.target, x.field, failure.ErrNotFound)
	}
	return k, nil
}

// Apply implements integrations.Integration.
func (x *Kubernetes) Apply(ctx context.Context, req integrations.ApplyRequest) (integrations.ApplyResult, error) {
	what := fmt.Sprintf("kubernetes: set key %s of %s", x.field, x.target)
	if err := ctx.Err(); err != nil {
		return integrations.ApplyResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if req.Key.IsZero() {
		return integrations.ApplyResult{}, fmt.Errorf("%s: empty key: %w", what, failure.ErrInvalid)
	}
	return rest.RetryConflicts(ctx, func() (integrations.ApplyResult, error) {
		s, err := x.get(ctx)
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		k, ok, err := x.held(s)
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		if ok && k.Equal(req.Key) {
			if len(x.restart) == 0 || req.Last.Fingerprint == req.Key.Fingerprint() {
				return integrations.ApplyResult{Changed: false, At: time.Now()}, nil
			}
			// Written by an earlier attempt that did not get to restart.
			if err := x.restartAll(ctx, req); err != nil {
				return integrations.ApplyResult{}, err
			}
			return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
		}
		if s.Immutable {
			return integrations.ApplyResult{}, fmt.Errorf("%s: the Secret is immutable, so Kubernetes refuses any change (replace it by hand): %w", what, failure.ErrInvalid)
		}
		api, err := x.client()
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		patch := map[string]any{
			"metadata": map[string]string{"resourceVersion": s.Metadata.ResourceVersion},
			"data":     map[string]string{x.field: base64.StdEncoding.EncodeToString([]byte(req.Key.Reveal()))},
		}
		resp, err := api.Do(ctx, rest.Request{
			Method: http.MethodPatch, Path: x.secretPath() + "?fieldManager=" + fieldManager, What: what, Target: x.target,
			Body: patch, ContentType: "application/merge-patch+json",
		})
		if err != nil {
			return integrations.ApplyResult{}, err
		}
		rest.Drain(resp) // the Secret, with its data
		x.log.InfoContext(ctx, "kubernetes: Secret key set", "integration", x.id, "target", x.target, "field", x.field, "fingerprint", req.Key.Fingerprint())
		if err := x.restartAll(ctx, req); err != nil {
			return integrations.ApplyResult{}, err
		}
		return integrations.ApplyResult{Changed: true, At: time.Now()}, nil
	})
}

// restartAll restarts each workload not yet restarted for this rotation
// and key.
func (x *Kubernetes) restartAll(ctx context.Context, req integrations.ApplyRequest) error {
	if len(x.restart) == 0 {
		return nil
	}
	api, err := x.client()
	if err != nil {
		return err
	}
	run := req.RotationID + " " + req.Key.Fingerprint()
	x.mu.Lock()
	if x.rotation != run {
		x.rotation, x.restarted = run, map[string]bool{}
	}
	x.mu.Unlock()
	at := time.Now().UTC().Format(time.RFC3339)
	for _, w := range x.restart {
		x.mu.Lock()
		done := x.restarted[w.label]
		x.mu.Unlock()
		if done {
			continue
		}
		what := fmt.Sprintf("kubernetes: %s written; restart %s in namespace %s", x.field, w.label, x.namespace)
		resp, err := api.Do(ctx, rest.Request{
			Method: http.MethodPatch, Path: x.workloadPath(w) + "?fieldManager=" + fieldManager, What: what, Target: w.label + " in namespace " + x.namespace,
			Body:        map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{RestartedAt: at}}}}},
			ContentType: "application/strategic-merge-patch+json",
		})
		if err != nil {
			return err
		}
		rest.Drain(resp)
		x.mu.Lock()
		x.restarted[w.label] = true
		x.mu.Unlock()
		x.log.InfoContext(ctx, "kubernetes: rollout restart", "integration", x.id, "workload", w.label, "namespace", x.namespace)
	}
	return nil
}

// allowed asks the API server whether these credentials may do verb on a
// resource (SelfSubjectAccessReview, as `kubectl auth can-i` does).
func (x *Kubernetes) allowed(ctx context.Context, api *rest.Client, verb, group, resource, name string) (bool, error) {
	what := fmt.Sprintf("kubernetes: ask whether %s may %s %s %s in namespace %s", api.Who, verb, resource, name, x.namespace)
	resp, err := api.Do(ctx, rest.Request{
		Method: http.MethodPost, Path: "apis/authorization.k8s.io/v1/selfsubjectaccessreviews", What: what, Target: "the SelfSubjectAccessReview API",
		Body: map[string]any{
			"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
			"spec": map[string]any{"resourceAttributes": map[string]string{
				"namespace": x.namespace, "verb": verb, "group": group, "resource": resource, "name": name,
			}},
		},
	})
	if err != nil {
		return false, err
	}
	var out struct {
		Status struct {
			Allowed bool `json:"allowed"`
		} `json:"status"`
	}
	if err := rest.Decode(resp, &out, what); err != nil {
		return false, err
	}
	return out.Status.Allowed, nil
}

// Preflight implements integrations.Preflighter.
func (x *Kubernetes) Preflight(ctx context.Context) error {
	s, err := x.get(ctx)
	if err != nil {
		return err
	}
	if s.Immutable {
		return fmt.Errorf("kubernetes: %s is immutable, so Kubernetes refuses any change: %w", x.target, failure.ErrInvalid)
	}
	if _, _, err := x.held(s); err != nil {
		return err
	}
	api, err := x.client()
	if err != nil {
		return err
	}
	ok, err := x.allowed(ctx, api, "patch", "", "secrets", x.secretName)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("kubernetes: %s may not patch %s (RBAC): %w", api.Who, x.target, failure.ErrUnauthorized)
	}
	for _, w := range x.restart {
		what := fmt.Sprintf("kubernetes: read %s in namespace %s", w.label, x.namespace)
		resp, err := api.Do(ctx, rest.Request{Method: http.MethodGet, Path: x.workloadPath(w), What: what, Target: w.label + " in namespace " + x.namespace})
		if err != nil {
			return err
		}
		var obj struct {
			Spec struct {
				Paused bool `json:"paused"`
			} `json:"spec"`
		}
		if err := rest.Decode(resp, &obj, what); err != nil {
			return err
		}
		if obj.Spec.Paused {
			return fmt.Errorf("%s: it is paused and cannot be restarted (kubectl rollout resume %s first): %w", what, w.label, failure.ErrInvalid)
		}
		ok, err := x.allowed(ctx, api, "patch", "apps", w.resource, w.name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("kubernetes: %s may not patch %s in namespace %s, so it cannot restart it (RBAC): %w", api.Who, w.label, x.namespace, failure.ErrUnauthorized)
		}
	}
	return nil
}
