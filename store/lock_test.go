package store

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/records"
)

// exitedPID is the PID of a process of this host that has exited.
func exitedPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	return cmd.Process.Pid
}

// A lock's PID means something only in its own host, boot and PID
// namespace. A holder elsewhere (a container with this host's name, a
// record that does not say where its PID lives) whose PID does not exist
// here may well be alive: its lock waits for its lease to expire.
func TestAbandoned(t *testing.T) {
	me := Identity()
	if me.BootID == "" || me.PIDNamespace == "" {
		t.Skip("no /proc/sys/kernel/random/boot_id or /proc/self/ns/pid here")
	}
	host, _ := os.Hostname()
	now := time.Now()
	dead := exitedPID(t)
	held := func(pid int, host, boot, ns string, expires time.Time) records.Lock {
		return records.Lock{Held: true, User: "ghost", Host: host, PID: pid, BootID: boot, PIDNamespace: ns, Expires: expires}
	}
	later, earlier := now.Add(time.Hour), now.Add(-time.Second)
	for _, c := range []struct {
		name      string
		lock      records.Lock
		abandoned bool
	}{
		{"never taken", records.Lock{}, true},
		{"released", records.Lock{Held: false, User: "ghost", Expires: later}, true},
		{"expired lease of a live holder elsewhere", held(4242, "elsewhere.example", "", "", earlier), true},
		{"live lease elsewhere", held(4242, "elsewhere.example", "", "", later), false},
		{"a dead process of this host, boot and PID namespace", held(dead, host, me.BootID, me.PIDNamespace, later), true},
		{"a PID gone from here, of another PID namespace", held(dead, host, me.BootID, "pid:[1]", later), false},
		{"a PID gone from here, of another boot", held(dead, host, "00000000-0000-0000-0000-000000000000", me.PIDNamespace, later), false},
		{"a PID gone from here, on record without a namespace", held(dead, host, "", "", later), false},
		{"a PID gone from here, of another host with our boot and namespace", held(dead, "elsewhere.example", me.BootID, me.PIDNamespace, later), false},
		{"this very process", held(os.Getpid(), host, me.BootID, me.PIDNamespace, later), false},
		{"a live process of this namespace", held(os.Getppid(), host, me.BootID, me.PIDNamespace, later), false},
	} {
		if got := Abandoned(c.lock, now); got != c.abandoned {
			t.Errorf("%s: Abandoned = %v, want %v", c.name, got, c.abandoned)
		}
	}
}

func TestTake(t *testing.T) {
	now := time.Now()
	holder := records.Lock{User: "alice", Host: "here.example", PID: 42, Command: "rotate an"}
	cur := records.Lock{Held: true, User: "bob", Host: "elsewhere.example", PID: 7, Expires: now.Add(time.Minute)}
	_, err := Take("an", cur, holder, now, time.Minute)
	var locked *LockedError
	if !errors.As(err, &locked) || locked.KeyID != "an" || locked.Holder.User != "bob" {
		t.Fatalf("Take of a live lease: %v, want a *LockedError naming bob", err)
	}
	rec, err := Take("an", records.Lock{}, holder, now, time.Minute)
	if err != nil {
		t.Fatalf("Take of a free lock: %v", err)
	}
	me := Identity()
	if !rec.Held || rec.User != "alice" || !rec.Since.Equal(now) || !rec.Expires.Equal(now.Add(time.Minute)) ||
		rec.Since.Location() != time.UTC || rec.BootID != me.BootID || rec.PIDNamespace != me.PIDNamespace {
		t.Fatalf("Take of a free lock = %+v, want alice's, held from now for a minute, in UTC, saying where its PID lives", rec)
	}
	// A holder that says where its PID lives keeps what it says.
	holder.BootID, holder.PIDNamespace = "boot", "pid:[1]"
	if rec, _ := Take("an", records.Lock{}, holder, now, time.Minute); rec.BootID != "boot" || rec.PIDNamespace != "pid:[1]" {
		t.Fatalf("Take kept %q %q of the holder's boot and namespace", rec.BootID, rec.PIDNamespace)
	}
}
