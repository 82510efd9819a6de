package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
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

// TestEarlierReleaseTTL: a data dir an earlier release left holds
// records with Badger's TTL and one expiry per record. When this release
// opens it, a record whose TTL is ahead is rewritten without the TTL and
// reads with its expiry on its value versions; one whose TTL passed stays
// hidden, as Badger hid it then.
func TestEarlierReleaseTTL(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	s := openStore(t, cfg)
	later := time.Now().Add(time.Hour)
	legacy := func(exp time.Time) []byte {
		b, err := proto.Marshal(&pb.Record{
			Versions:  []*pb.Version{{Value: []byte("v"), Dot: &pb.Dot{Actor: 1, Counter: 1}}},
			Context:   []*pb.Dot{{Actor: 1, Counter: 1}},
			ExpiresAt: exp.UnixNano(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	past := time.Now().Add(-time.Hour)
	if err := s.PutLegacyForTest([]byte("gone"), legacy(past), uint64(past.Unix())); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLegacyForTest([]byte("kept"), legacy(later), uint64(later.Unix())+1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if _, err := s.Get(ctx, []byte("gone")); !errors.Is(err, dht.ErrNotFound) {
		t.Errorf("Get(gone) err = %v, want dht.ErrNotFound", err)
	}
	got, err := s.Get(ctx, []byte("kept"))
	if err != nil || len(got.Versions) != 1 || got.Versions[0].ExpiresAt != later.UnixNano() {
		t.Fatalf("Get(kept) = %+v, %v; want its value expiring at %d", got, err, later.UnixNano())
	}
	if ttl, err := s.BadgerExpiresAtForTest([]byte("kept")); err != nil || ttl != 0 {
		t.Errorf("Badger TTL of kept after the upgrade = %d, %v; want none", ttl, err)
	}
	keys, _ := scanAll(t, s, nil, nil)
	if n, err := s.Count(ctx, nil); err != nil || n != 1 || len(keys) != 1 || string(keys[0]) != "kept" {
		t.Fatalf("Count = %d, %v, Scan saw %q; want only kept", n, err, keys)
	}
}
