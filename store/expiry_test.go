package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
)

// TestExpiredVersionsKept: the store keeps a record whatever its versions'
// expiries say; expiry is the dht layer's to act on (an expired version
// stays, with its context, until tombstone collection deletes the record).
func TestExpiredVersionsKept(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	r := rec("v")
	r.Versions[0].ExpiresAt = time.Now().Add(-time.Hour).UnixNano()
	if err := s.Put(ctx, []byte("k"), r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, []byte("k"))
	if err != nil || len(got.Versions) != 1 || got.Versions[0].ExpiresAt != r.Versions[0].ExpiresAt {
		t.Fatalf("Get = %+v, %v; want the record with its expiry", got, err)
	}
	keys, _ := scanAll(t, s, nil, nil)
	if n, err := s.Count(ctx, nil); err != nil || n != 1 || len(keys) != 1 {
		t.Fatalf("Count = %d, %v, Scan saw %d keys; want 1", n, err, len(keys))
	}
}

// TestEarlierReleaseTTL: a record an earlier release stored with Badger's
// TTL vanishes from Get, Scan and Count once the TTL passes, as it did
// then; one whose TTL is ahead stays.
func TestEarlierReleaseTTL(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	past, future := uint64(time.Now().Add(-time.Hour).Unix()), uint64(time.Now().Add(time.Hour).Unix())
	if err := s.PutWithBadgerTTLForTest([]byte("gone"), rec("v"), past); err != nil {
		t.Fatal(err)
	}
	if err := s.PutWithBadgerTTLForTest([]byte("kept"), rec("v"), future); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, []byte("gone")); !errors.Is(err, dht.ErrNotFound) {
		t.Errorf("Get(gone) err = %v, want dht.ErrNotFound", err)
	}
	if _, err := s.Get(ctx, []byte("kept")); err != nil {
		t.Errorf("Get(kept) err = %v", err)
	}
	keys, _ := scanAll(t, s, nil, nil)
	if n, err := s.Count(ctx, nil); err != nil || n != 1 || len(keys) != 1 || string(keys[0]) != "kept" {
		t.Fatalf("Count = %d, %v, Scan saw %q; want only kept", n, err, keys)
	}
}
