// Package k8stest is a Kubernetes API server for tests of the kubernetes
// integration type: Secrets, Deployments, StatefulSets and DaemonSets, and
// SelfSubjectAccessReviews, over TLS with bearer tokens or client
// certificates, answering as kube-apiserver does
// (https://kubernetes.io/docs/reference/using-api/api-concepts/):
//
//	GET   /api/v1/namespaces/{ns}/secrets/{name}
//	PATCH /api/v1/namespaces/{ns}/secrets/{name}        (merge-patch or strategic-merge-patch)
//	PUT   /api/v1/namespaces/{ns}/secrets/{name}
//	GET   /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|daemonsets}/{name}
//	PATCH /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|daemonsets}/{name}
//	POST  /apis/authorization.k8s.io/v1/selfsubjectaccessreviews
//
// Every object has a resourceVersion that every write moves on; a write
// that names an older one is a 409 Conflict, as optimistic concurrency
// works in Kubernetes. Errors are Status objects ({"kind": "Status",
// "reason", "message", "code", …}); a 429 carries Retry-After. RBAC is a
// list of refused verbs; a refused request is a 403 Forbidden, and a
// SelfSubjectAccessReview says the same.
package k8stest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/apitest"
	"github.com/rekey-dev/rekey/secret"
)

// RestartedAt is the pod-template annotation `kubectl rollout restart` sets.
const RestartedAt = "kubectl.kubernetes.io/restartedAt"

// Server is a running Kubernetes API test server.
type Server struct {
	*apitest.Base
	// URL is the API server's URL (https).
	URL string
	// CA is the PEM certificate the server's certificate is checked with.
	CA []byte
	// User is the user the token authenticates.
	User string

	srv    *httptest.Server
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey

	mu        sync.Mutex
	rv        int
	secrets   map[string]*secretObj   // ns/name
	workloads map[string]*workloadObj // resource/ns/name
	forbidden map[string]bool         // "verb resource"
	patches   int
	race      map[string]string // a write someone else makes before the next patch of that Secret
}

type secretObj struct {
	ns, name  string
	uid       string
	rv        string
	data      map[string][]byte
	immutable bool
	labels    map[string]string
}

type workloadObj struct {
	resource, ns, name string
	rv                 string
	paused             bool
	annotations        map[string]string
	restarts           int
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{User: "system:serviceaccount:ops:rekey", secrets: map[string]*secretObj{}, workloads: map[string]*workloadObj{}, forbidden: map[string]bool{}, rv: 1000}
	s.newCA()
	s.Base = apitest.NewBase(t, "eyJhbGciOiJSUzI1NiJ9."+apitest.RandomID(40), apitest.Hooks{
		Authorized: func(r *http.Request, token string) bool { return s.user(r, token) != "" },
		Error:      s.writeError,
		Throttled:  throttled,
		Redact:     func(_ *http.Request, body []byte) []byte { return apitest.RedactJSON(body, "data", "stringData") },
	})
	s.srv = httptest.NewUnstartedServer(s.Handler(s.route))
	pool := x509.NewCertPool()
	pool.AddCert(s.caCert)
	s.srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	s.srv.StartTLS()
	s.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	s.URL = s.srv.URL
	t.Cleanup(func() { s.Base.Close(); s.srv.Close() })
	return s
}

func (s *Server) newCA() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k8stest-client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	s.caCert, _ = x509.ParseCertificate(der)
	s.caKey = key
}

// ClientCert issues a client certificate for user (its common name), as
// a cluster's CA does; it returns the certificate and key in PEM.
func (s *Server) ClientCert(user string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: user, Organization: []string{"ops"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, &key.PublicKey, s.caKey)
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// user is who a request authenticates as, or "".
func (s *Server) user(r *http.Request, token string) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	if r.Header.Get("Authorization") == "Bearer "+token {
		return s.User
	}
	return ""
}

func (s *Server) nextRV() string {
	s.rv++
	return strconv.Itoa(s.rv)
}

// AddSecret makes a Secret exist with data (values as they are, not base64).
func (s *Server) AddSecret(ns, name string, data map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &secretObj{ns: ns, name: name, uid: apitest.RandomID(8) + "-" + apitest.RandomID(4), rv: s.nextRV(), data: map[string][]byte{}, labels: map[string]string{"app": name}}
	for k, v := range data {
		o.data[k] = []byte(v)
	}
	s.secrets[ns+"/"+name] = o
}

// MakeImmutable sets a Secret's immutable field.
func (s *Server) MakeImmutable(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[ns+"/"+name].immutable = true
}

// SetData writes one key of a Secret as someone other than rekey would
// (moving its resourceVersion on).
func (s *Server) SetData(ns, name, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.secrets[ns+"/"+name]
	o.data[key] = []byte(value)
	o.rv = s.nextRV()
}

// DeleteData removes one key of a Secret.
func (s *Server) DeleteData(ns, name, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.secrets[ns+"/"+name]
	delete(o.data, key)
	o.rv = s.nextRV()
}

// Data is a copy of a Secret's data, decoded.
func (s *Server) Data(ns, name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.secrets[ns+"/"+name].data {
		out[k] = string(v)
	}
	return out
}

// Holds is what one key of a Secret holds, decoded from base64 as the
// kubelet hands it to a pod.
func (s *Server) Holds(ns, name, key string) secret.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return secret.New(string(s.secrets[ns+"/"+name].data[key]))
}

// Patches is how many Secret writes were accepted.
func (s *Server) Patches() int { s.mu.Lock(); defer s.mu.Unlock(); return s.patches }

// ConcurrentWrite makes someone else set key of Secret ns/name to value
// just before the server handles the next write of that Secret: a write
// that read the Secret before then carries a stale resourceVersion.
func (s *Server) ConcurrentWrite(ns, name, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.race = map[string]string{"secret": ns + "/" + name, "key": key, "value": value}
}

// AddWorkload makes a deployment, statefulset or daemonset exist.
func (s *Server) AddWorkload(resource, ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workloads[resource+"/"+ns+"/"+name] = &workloadObj{resource: resource, ns: ns, name: name, rv: s.nextRV(), annotations: map[string]string{}}
}

// Pause pauses a deployment's rollouts.
func (s *Server) Pause(resource, ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workloads[resource+"/"+ns+"/"+name].paused = true
}

// Restarts is how many times a workload's pod template annotation
// RestartedAt was changed (a rollout restart each).
func (s *Server) Restarts(resource, ns, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workloads[resource+"/"+ns+"/"+name].restarts
}

// Forbid refuses verb on resource ("patch", "secrets") to every user.
func (s *Server) Forbid(verb, resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbidden[verb+" "+resource] = true
}

// Allow takes back a Forbid.
func (s *Server) Allow(verb, resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.forbidden, verb+" "+resource)
}

// status is a metav1.Status.
func status(code int, reason, msg string, details map[string]any) map[string]any {
	st := map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure", "message": msg, "reason": reason, "code": code}
	if details != nil {
		st["details"] = details
	}
	return st
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusUnauthorized:
		apitest.WriteJSON(w, code, status(code, "Unauthorized", "Unauthorized", nil))
	case http.StatusForbidden:
		apitest.WriteJSON(w, code, status(code, "Forbidden", "forbidden: User \""+s.User+"\" cannot do that", nil))
	case http.StatusNotFound:
		apitest.WriteJSON(w, code, status(code, "NotFound", "the server could not find the requested resource", nil))
	case http.StatusConflict:
		apitest.WriteJSON(w, code, status(code, "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again", nil))
	case http.StatusTooManyRequests:
		throttled(w, r, time.Second)
	case http.StatusInternalServerError:
		apitest.WriteJSON(w, code, status(code, "InternalError", "Internal error occurred: etcdserver: request timed out", nil))
	default:
		apitest.WriteJSON(w, code, status(code, strings.ReplaceAll(http.StatusText(code), " ", ""), http.StatusText(code), nil))
	}
}

func throttled(w http.ResponseWriter, _ *http.Request, wait time.Duration) {
	secs := max(1, int(wait.Round(time.Second)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	apitest.WriteJSON(w, http.StatusTooManyRequests, status(429, "TooManyRequests", "Too many requests, please try again later.", map[string]any{"retryAfterSeconds": secs}))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	if got := r.Header.Get("Accept"); got != "" && !strings.Contains(got, "application/json") && got != "*/*" {
		s.Report("k8stest: %s %s: Accept is %q", r.Method, r.URL.Path, got)
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(parts) == 6 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" && parts[4] == "secrets":
		if !s.may(w, r, "secrets", parts[5]) {
			return
		}
		s.secret(w, r, parts[3], parts[5], body)
	case len(parts) == 7 && parts[0] == "apis" && parts[1] == "apps" && parts[2] == "v1" && parts[3] == "namespaces" &&
		slices.Contains([]string{"deployments", "statefulsets", "daemonsets"}, parts[5]):
		if !s.may(w, r, parts[5], parts[6]) {
			return
		}
		s.workload(w, r, parts[5], parts[4], parts[6], body)
	case len(parts) == 4 && strings.Join(parts, "/") == "apis/authorization.k8s.io/v1/selfsubjectaccessreviews" && r.Method == http.MethodPost:
		s.review(w, r, body)
	default:
		apitest.WriteJSON(w, http.StatusNotFound, status(404, "NotFound", "the server could not find the requested resource", nil))
	}
}

// may answers 403 when RBAC refuses the request's verb.
func (s *Server) may(w http.ResponseWriter, r *http.Request, resource, name string) bool {
	verb := map[string]string{"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}[r.Method]
	if !s.forbidden[verb+" "+resource] {
		return true
	}
	apitest.WriteJSON(w, http.StatusForbidden, status(403, "Forbidden",
		fmt.Sprintf("%s %q is forbidden: User %q cannot %s resource %q in API group %q in the namespace", resource, name, s.User, verb, resource, groupOf(resource)),
		map[string]any{"name": name, "kind": resource}))
	return false
}

func groupOf(resource string) string {
	if resource == "secrets" {
		return ""
	}
	return "apps"
}

func (o *secretObj) view() map[string]any {
	data := map[string]string{}
	for k, v := range o.data {
		data[k] = base64.StdEncoding.EncodeToString(v)
	}
	v := map[string]any{
		"kind": "Secret", "apiVersion": "v1", "type": "Opaque", "data": data,
		"metadata": map[string]any{
			"name": o.name, "namespace": o.ns, "uid": o.uid, "resourceVersion": o.rv,
			"creationTimestamp": "2025-01-01T00:00:00Z", "labels": o.labels,
		},
	}
	if o.immutable {
		v["immutable"] = true
	}
	return v
}

func (s *Server) secret(w http.ResponseWriter, r *http.Request, ns, name string, body []byte) {
	o := s.secrets[ns+"/"+name]
	if o == nil {
		apitest.WriteJSON(w, http.StatusNotFound, status(404, "NotFound", fmt.Sprintf("secrets %q not found", name), map[string]any{"name": name, "kind": "secrets"}))
		return
	}
	switch r.Method {
	case http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, o.view())
		return
	case http.MethodPatch, http.MethodPut:
	default:
		apitest.WriteJSON(w, http.StatusMethodNotAllowed, status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", nil))
		return
	}
	if s.race != nil && s.race["secret"] == ns+"/"+name {
		o.data[s.race["key"]] = []byte(s.race["value"])
		o.rv = s.nextRV()
		s.race = nil
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		apitest.WriteJSON(w, http.StatusBadRequest, status(400, "BadRequest", "the body of the request was in an unknown format", nil))
		return
	}
	current := o.view()
	next := doc
	if r.Method == http.MethodPatch {
		ct := r.Header.Get("Content-Type")
		if ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json" {
			apitest.WriteJSON(w, http.StatusUnsupportedMediaType, status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml", nil))
			return
		}
		next = mergePatch(current, doc).(map[string]any)
	}
	meta, _ := next["metadata"].(map[string]any)
	if rv, _ := meta["resourceVersion"].(string); (r.Method == http.MethodPut || rv != "") && rv != o.rv {
		apitest.WriteJSON(w, http.StatusConflict, status(409, "Conflict",
			fmt.Sprintf("Operation cannot be fulfilled on secrets %q: the object has been modified; please apply your changes to the latest version and try again", name),
			map[string]any{"name": name, "kind": "secrets"}))
		return
	}
	data := map[string][]byte{}
	raw, _ := next["data"].(map[string]any)
	for k, v := range raw {
		str, _ := v.(string)
		b, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			apitest.WriteJSON(w, http.StatusUnprocessableEntity, status(422, "Invalid", fmt.Sprintf("Secret %q is invalid: data[%s]: Invalid value: illegal base64 data", name, k), nil))
			return
		}
		data[k] = b
	}
	if sd, ok := next["stringData"].(map[string]any); ok {
		for k, v := range sd {
			str, _ := v.(string)
			data[k] = []byte(str)
		}
	}
	if o.immutable && !maps.EqualFunc(data, o.data, func(a, b []byte) bool { return string(a) == string(b) }) {
		apitest.WriteJSON(w, http.StatusUnprocessableEntity, status(422, "Invalid", fmt.Sprintf("Secret %q is invalid: data: Forbidden: field is immutable when `immutable` is set", name), nil))
		return
	}
	if r.URL.Query().Get("fieldManager") == "" {
		s.Report("k8stest: %s %s without fieldManager", r.Method, r.URL.Path)
	}
	o.data = data
	o.rv = s.nextRV()
	s.patches++
	apitest.WriteJSON(w, http.StatusOK, o.view())
}

func (o *workloadObj) view() map[string]any {
	kind := map[string]string{"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}[o.resource]
	spec := map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": o.annotations}}}
	if o.paused {
		spec["paused"] = true
	}
	return map[string]any{"kind": kind, "apiVersion": "apps/v1", "metadata": map[string]any{"name": o.name, "namespace": o.ns, "resourceVersion": o.rv}, "spec": spec}
}

func (s *Server) workload(w http.ResponseWriter, r *http.Request, resource, ns, name string, body []byte) {
	o := s.workloads[resource+"/"+ns+"/"+name]
	if o == nil {
		apitest.WriteJSON(w, http.StatusNotFound, status(404, "NotFound", fmt.Sprintf("%s.apps %q not found", resource, name), map[string]any{"name": name, "group": "apps", "kind": resource}))
		return
	}
	switch r.Method {
	case http.MethodGet:
		apitest.WriteJSON(w, http.StatusOK, o.view())
	case http.MethodPatch:
		if ct := r.Header.Get("Content-Type"); ct != "application/strategic-merge-patch+json" && ct != "application/merge-patch+json" {
			apitest.WriteJSON(w, http.StatusUnsupportedMediaType, status(415, "UnsupportedMediaType", "unsupported patch type", nil))
			return
		}
		var doc map[string]any
		if json.Unmarshal(body, &doc) != nil {
			apitest.WriteJSON(w, http.StatusBadRequest, status(400, "BadRequest", "the body of the request was in an unknown format", nil))
			return
		}
		next := mergePatch(o.view(), doc).(map[string]any)
		ann := map[string]string{}
		if spec, ok := next["spec"].(map[string]any); ok {
			if tmpl, ok := spec["template"].(map[string]any); ok {
				if md, ok := tmpl["metadata"].(map[string]any); ok {
					if a, ok := md["annotations"].(map[string]any); ok {
						for k, v := range a {
							ann[k], _ = v.(string)
						}
					}
				}
			}
		}
		if ann[RestartedAt] != o.annotations[RestartedAt] {
			o.restarts++
		}
		o.annotations = ann
		o.rv = s.nextRV()
		apitest.WriteJSON(w, http.StatusOK, o.view())
	default:
		apitest.WriteJSON(w, http.StatusMethodNotAllowed, status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", nil))
	}
}

func (s *Server) review(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			ResourceAttributes *struct {
				Namespace, Verb, Group, Resource, Name string
			} `json:"resourceAttributes"`
		} `json:"spec"`
	}
	if json.Unmarshal(body, &in) != nil || in.Kind != "SelfSubjectAccessReview" || in.APIVersion != "authorization.k8s.io/v1" || in.Spec.ResourceAttributes == nil {
		apitest.WriteJSON(w, http.StatusBadRequest, status(400, "BadRequest", "SelfSubjectAccessReview is invalid", nil))
		return
	}
	a := in.Spec.ResourceAttributes
	if a.Group != groupOf(a.Resource) {
		s.Report("k8stest: SelfSubjectAccessReview for %s in group %q; it is in group %q", a.Resource, a.Group, groupOf(a.Resource))
	}
	allowed := !s.forbidden[a.Verb+" "+a.Resource]
	st := map[string]any{"allowed": allowed}
	if !allowed {
		st["reason"] = ""
	}
	apitest.WriteJSON(w, http.StatusCreated, map[string]any{"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": map[string]any{}, "spec": in.Spec, "status": st})
}

// mergePatch applies a JSON merge patch (RFC 7386) to doc.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	} else {
		d = roundTrip(d)
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = mergePatch(d[k], v)
	}
	return d
}

// roundTrip copies a document into plain JSON types.
func roundTrip(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}
