package vaultstore

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/vaulttest"
	"github.com/rekey-dev/rekey/records"
)

// A lock's PID means something only in its own boot and PID namespace. A
// holder in another namespace (a container with this host's name) whose
// PID does not exist here may well be alive: its lock waits for the lease
// to expire. So does an old lock that does not say where its PID lives.
func TestLockOfOtherNamespaceWaitsForLease(t *testing.T) {
	env := vaulttest.New(t)
	s := New(env.Client, env.Mount, "rekey")
	ctx := context.Background()
	host, _ := os.Hostname()
	me := Identity()
	if me.BootID == "" || me.PIDNamespace == "" {
		t.Skip("no /proc/sys/kernel/random/boot_id or /proc/self/ns/pid here")
	}
	cases := []struct {
		name string
		lock records.Lock
	}{
		{"another PID namespace", records.Lock{BootID: me.BootID, PIDNamespace: "pid:[1]"}},
		{"another boot", records.Lock{BootID: "00000000-0000-0000-0000-000000000000", PIDNamespace: me.PIDNamespace}},
		{"no namespace on record", records.Lock{}},
	}
	for i, c := range cases {
		key := string(rune('a' + i))
		l := c.lock
		l.Held, l.User, l.Host, l.PID, l.Expires = true, "ghost", host, 1<<30, time.Now().Add(time.Hour)
		if _, err := s.PutRecord(ctx, "keys/"+key+"/lock", l, 0); err != nil {
			t.Fatal(err)
		}
		_, err := s.Lock(ctx, key, records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute)
		var le *LockedError
		if !errors.As(err, &le) {
			t.Errorf("%s: a live lease with a PID unknown here was taken: %v", c.name, err)
		}
	}
	// Same boot, same namespace, PID gone: taken at once.
	l := records.Lock{Held: true, User: "ghost", Host: host, PID: 1 << 30, BootID: me.BootID, PIDNamespace: me.PIDNamespace, Expires: time.Now().Add(time.Hour)}
	if _, err := s.PutRecord(ctx, "keys/z/lock", l, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lock(ctx, "z", records.Lock{User: "alice", Host: host, PID: os.Getpid()}, time.Minute)
	if err != nil {
		t.Fatalf("a dead process of this namespace still holds the lock: %v", err)
	}
	if h := got.Holder(); h.BootID != me.BootID || h.PIDNamespace != me.PIDNamespace {
		t.Fatalf("the lock taken does not say where its PID lives: %+v", h)
	}
}
