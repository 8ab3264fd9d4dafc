// Package all is the one list of integration types rekey knows.
package all

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/config"
	"github.com/rekey-dev/rekey/integrations"
	execint "github.com/rekey-dev/rekey/integrations/exec"
	"github.com/rekey-dev/rekey/integrations/file"
	"github.com/rekey-dev/rekey/integrations/github"
	"github.com/rekey-dev/rekey/integrations/gitlab"
	"github.com/rekey-dev/rekey/integrations/heroku"
	httpint "github.com/rekey-dev/rekey/integrations/http"
	"github.com/rekey-dev/rekey/integrations/kubernetes"
	"github.com/rekey-dev/rekey/integrations/manual"
	"github.com/rekey-dev/rekey/integrations/netlify"
	"github.com/rekey-dev/rekey/integrations/render"
	vaultint "github.com/rekey-dev/rekey/integrations/vault"
	"github.com/rekey-dev/rekey/integrations/vercel"
)

// Types maps each type name to its factory.
var Types = map[string]integrations.Factory{
	file.Type:     file.New,
	execint.Type:  execint.New,
	manual.Type:   manual.New,
	httpint.Type:  httpint.New,
	github.Type:   github.New,
	vaultint.Type: vaultint.New,

	// Hosted platforms.
	kubernetes.Type: kubernetes.New,
	heroku.Type:     heroku.New,
	render.Type:     render.New,
	netlify.Type:    netlify.New,
	vercel.Type:     vercel.New,
	gitlab.Type:     gitlab.New,
}

// Names lists the type names, sorted.
func Names() []string {
	names := make([]string, 0, len(Types))
	for n := range Types {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New builds an integration of the type its configuration names.
func New(h integrations.Host, in config.Integration) (integrations.Integration, error) {
	f, ok := Types[in.Type]
	if !ok {
		return nil, h.Config.Invalid(in, "type", "unknown type %q (one of %s)", in.Type, strings.Join(Names(), ", "))
	}
	integ, err := f(h, in)
	if err != nil {
		return nil, err
	}
	if integ.ID() != in.ID {
		return nil, fmt.Errorf("integration type %s built %q for %q", in.Type, integ.ID(), in.ID)
	}
	return integ, nil
}
