package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
)

// expiring is rec(value) expiring at t (zero time: never).
func expiring(value string, t time.Time) dht.Record {
	r := rec(value)
	if !t.IsZero() {
		r.ExpiresAt = t.UnixNano()
	}
	return r
}

// futureSecond returns a time half a second into a whole second an hour
// from now: far enough ahead that Badger's own TTL check (system clock)
// never hides the test's records, so only the store's Clock decides.
func futureSecond() time.Time {
	return time.Now().Add(time.Hour).Truncate(time.Second).Add(500 * time.Millisecond)
}

func TestExpiryWithFakeClock(t *testing.T) {
	ctx := context.Background()
	base := futureSecond()
	clock := newFakeClock(base)
	cfg := testConfig(t)
	cfg.Clock = clock
	s := openStore(t, cfg)

	expiresAt := base.Add(10 * time.Second)
	if err := s.Put(ctx, []byte("k"), expiring("v", expiresAt)); err != nil {
		t.Fatal(err)
	}
	// Badger's TTL is set, rounded up to the second.
	ttl, err := s.BadgerExpiresAtForTest([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(expiresAt.Unix() + 1); ttl != want {
		t.Fatalf("Badger ExpiresAt = %d, want %d (ceil of %v)", ttl, want, expiresAt)
	}
	steps := []struct {
		at   time.Time
		live bool
	}{
		{base, true},
		{expiresAt.Add(-time.Nanosecond), true},
		{expiresAt, false}, // ExpiresAt is the first instant the record is gone
		{expiresAt.Add(time.Hour), false},
	}
	for _, st := range steps {
		clock.Set(st.at)
		_, err := s.Get(ctx, []byte("k"))
		if st.live != (err == nil) || (!st.live && !errors.Is(err, dht.ErrNotFound)) {
			t.Fatalf("at %v: Get err = %v, want live=%v", st.at.Sub(expiresAt), err, st.live)
		}
		keys, _ := scanAll(t, s, nil, nil)
		n, err := s.Count(ctx, nil)
		if err != nil || (n == 1) != st.live || len(keys) != int(n) {
			t.Fatalf("at %v: Count = %d, %v and Scan saw %d keys; want live=%v",
				st.at.Sub(expiresAt), n, err, len(keys), st.live)
		}
	}
}

// TestExpiryCountMatchesScan covers Count's keys-only shortcut: records
// expiring in the current second need their exact expiry decoded.
func TestExpiryCountMatchesScan(t *testing.T) {
	ctx := context.Background()
	now := futureSecond() // x.5s
	cfg := testConfig(t)
	cfg.Clock = newFakeClock(now)
	s := openStore(t, cfg)
	records := []struct {
		key  string
		at   time.Time
		live bool
	}{
		{"never", time.Time{}, true},
		{"same second, later", now.Add(100 * time.Millisecond), true},
		{"same second, earlier", now.Add(-100 * time.Millisecond), false},
		{"same second, now", now, false},
		{"next second", now.Add(time.Second), true},
		{"later", now.Add(time.Minute), true},
		{"earlier", now.Add(-5 * time.Second), false},
		{"1ns after", now.Add(time.Nanosecond), true},
	}
	want := 0
	for _, r := range records {
		if err := s.Put(ctx, []byte(r.key), expiring(r.key, r.at)); err != nil {
			t.Fatal(err)
		}
		if r.live {
			want++
		}
	}
	n, err := s.Count(ctx, nil)
	if err != nil || n != int64(want) {
		t.Fatalf("Count = %d, %v; want %d", n, err, want)
	}
	keys, _ := scanAll(t, s, nil, nil)
	live := map[string]bool{}
	for _, k := range keys {
		live[string(k)] = true
	}
	for _, r := range records {
		if live[r.key] != r.live {
			t.Errorf("Scan: %q live = %v, want %v", r.key, live[r.key], r.live)
		}
		_, err := s.Get(ctx, []byte(r.key))
		if (err == nil) != r.live {
			t.Errorf("Get(%q) err = %v, want live=%v", r.key, err, r.live)
		}
	}
}

// TestBadgerDropsExpired shows the Badger TTL at work: a record whose expiry
// has passed by the system clock is gone even when the store's Clock says
// otherwise.
func TestBadgerDropsExpired(t *testing.T) {
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	cfg := testConfig(t)
	cfg.Clock = newFakeClock(past.Add(-time.Hour)) // the store's clock says: still live
	s := openStore(t, cfg)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"an hour ago", past},
		{"before the epoch", time.Unix(0, -5)},
	}
	for i, tt := range tests {
		key := []byte(fmt.Sprint("k", i))
		if err := s.Put(ctx, key, expiring("v", tt.at)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, dht.ErrNotFound) {
			t.Errorf("%s: Get err = %v, want dht.ErrNotFound from Badger's TTL", tt.name, err)
		}
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v; want 0", n, err)
	}
}
