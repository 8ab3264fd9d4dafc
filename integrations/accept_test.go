package integrations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/failure"
	"github.com/rekey-dev/rekey/secret"
)

// noDollar is a target that cannot hold a '$'.
type noDollar struct{}

func (noDollar) ID() string { return "t" }
func (noDollar) Apply(context.Context, ApplyRequest) (ApplyResult, error) {
	return ApplyResult{}, nil
}
func (noDollar) Accepts(k secret.Key) error {
	if strings.Contains(k.Reveal(), "$") {
		return fmt.Errorf("t: the key holds a '$': %w", failure.ErrInvalid)
	}
	return nil
}

type plain struct{ noDollar }

func (plain) Accepts() {} // not the Acceptor method

func TestCheckAccepts(t *testing.T) {
	hex := secret.Form{Alphabet: "0123456789abcdef", MinLen: 32, MaxLen: 32}
	dollar := secret.Form{Alphabet: "ab$", MinLen: 8, MaxLen: 8}
	if err := CheckAccepts(noDollar{}, hex); err != nil {
		t.Errorf("hex keys refused: %v", err)
	}
	err := CheckAccepts(noDollar{}, dollar)
	if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(err.Error(), "holds a '$'") || !strings.Contains(err.Error(), `8 characters of "ab$"`) {
		t.Errorf("keys with '$': %v", err)
	}
	if err := CheckAccepts(plain{}, dollar); err != nil {
		t.Errorf("a type that is no Acceptor: %v", err)
	}
}
