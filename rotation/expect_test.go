package rotation

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/rekey-dev/rekey/records"
	"github.com/rekey-dev/rekey/secret"
	"github.com/rekey-dev/rekey/state"
	"github.com/rekey-dev/rekey/store/memstore"
)

// countingStore counts the engine's own reads of a key's state and
// history (the store's reads inside its updates are not counted).
type countingStore struct {
	*memstore.Store
	states, histories atomic.Int32
}

func (s *countingStore) KeyState(ctx context.Context, keyID string) (*records.KeyState, int, error) {
	s.states.Add(1)
	return s.Store.KeyState(ctx, keyID)
}

func (s *countingStore) History(ctx context.Context, keyID string) (*records.History, int, error) {
	s.histories.Add(1)
	return s.Store.History(ctx, keyID)
}

// An audit reads the key's state and history once: the history it brings
// up to date is the one it measures against. When the history cannot be
// written (a token that may only read it), it is read as it stands, and
// the audit still knows every version.
func TestAuditReadsStateAndHistoryOnce(t *testing.T) {
	ctx := context.Background()
	leaked, fresh, outside := secret.New("leaked-key-aaaaaaaaaaa"), secret.New("fresh-key-bbbbbbbbbbbb"), secret.New("outside-key-cccccccccc")
	mem, _ := setup(t, leaked)
	holder := &memTarget{id: "m", held: leaked}
	stale := &memTarget{id: "s", held: leaked}
	leak := job(holder)
	leak.Reason, leak.Leak = "leak", true
	if _, err := (&Engine{Store: mem}).Rotate(ctx, leak, fresh); err != nil {
		t.Fatal(err)
	}

	s := &countingStore{Store: mem}
	ka := (&Engine{Store: s}).Audit(ctx, job(holder, stale))
	if ka.Error != "" || ka.Integrations[0].State != state.Current || ka.Integrations[1].State != state.Compromised {
		t.Fatalf("audit: %+v", ka)
	}
	if n, m := s.states.Load(), s.histories.Load(); n != 1 || m != 0 {
		t.Errorf("the audit read the key's state %d times and its history %d more; want once, and none", n, m)
	}

	// A version stored outside rekey, and a history rekey may not write.
	if _, err := mem.WriteKey(ctx, "an/main", outside, 2, nil); err != nil {
		t.Fatal(err)
	}
	mem.Deny("mem/data/rekey/keys/an/history", "create", "update")
	s = &countingStore{Store: mem}
	ka = (&Engine{Store: s}).Audit(ctx, job(holder, stale))
	if ka.Error != "" || ka.Integrations[0].State != state.Stale || ka.Integrations[1].State != state.Compromised {
		t.Fatalf("audit with a history it may not write: %+v", ka)
	}
	if n, m := s.states.Load(), s.histories.Load(); n != 1 || m != 1 {
		t.Errorf("the audit read the key's state %d times and its history %d; want once each", n, m)
	}
}
