package cli

import (
	"context"
	"errors"
	"testing"
)

func TestSaySignalled(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	plain := errors.New("vault is not usable: context canceled")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"no signal", context.Background(), plain, plain.Error()},
		{"signal", cancelled, plain, "interrupted: " + plain.Error()},
		{"says so already", cancelled, interruptedBeforeStore(true).(*exitError).err, "interrupted before the new key was stored; nothing was changed"},
		{"no error", cancelled, nil, ""},
	} {
		got := saySignalled(tc.ctx, tc.err)
		if (got == nil) != (tc.want == "") || got != nil && got.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, got, tc.want)
		}
	}
}

func TestInterruptedAfterStore(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var ee *exitError
	if err := interruptedAfterStore(cancelled, silent(ExitDegraded), "an"); !errors.As(err, &ee) || ee.code != ExitDegraded || ee.err == nil || ee.hint == "" {
		t.Errorf("stored, not all current, signalled: %#v", err)
	}
	if err := interruptedAfterStore(cancelled, silent(ExitOK), "an"); !errors.As(err, &ee) || ee.err != nil {
		t.Errorf("all current: %#v", err)
	}
	if err := interruptedAfterStore(context.Background(), silent(ExitDegraded), "an"); !errors.As(err, &ee) || ee.err != nil {
		t.Errorf("no signal: %#v", err)
	}
}
