package replica_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/version"
)

// TestPurge checks that Purge deletes a replica's record only when it is
// the very tombstone the caller saw, locally and through CallPurge.
func TestPurge(t *testing.T) {
	tomb := func(r roles) dht.Record {
		return mkTombstone(mkRecord(dht.Record{}, r.nat[0], "v", 100), r.nat[0], 200)
	}
	tests := []struct {
		name string
		// stored is the record on the replica (nil: none); seen is the
		// record whose digest the caller passes.
		stored, seen func(r roles) dht.Record
		wantPurged   bool
	}{
		{name: "tombstone with matching digest", stored: tomb, seen: tomb, wantPurged: true},
		{
			name: "tombstone with another digest", stored: tomb,
			seen: func(r roles) dht.Record { return mkTombstone(dht.Record{}, r.nat[1], 200) },
		},
		{
			name:   "live value, even with its own digest",
			stored: func(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[0], "v", 100) },
			seen:   func(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[0], "v", 100) },
		},
		{
			name: "tombstone and a concurrent live sibling",
			stored: func(r roles) dht.Record {
				return version.Merge(tomb(r), mkRecord(dht.Record{}, r.nat[1], "late", 300))
			},
			seen: func(r roles) dht.Record {
				return version.Merge(tomb(r), mkRecord(dht.Record{}, r.nat[1], "late", 300))
			},
		},
		{
			name: "tombstone changed since it was seen",
			stored: func(r roles) dht.Record {
				return mkTombstone(tomb(r), r.nat[1], 300)
			},
			seen: tomb,
		},
		{name: "no record", seen: tomb},
	}
	for _, tt := range tests {
		for _, via := range []string{"local", "remote"} {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				c := newCluster(t, 3, testConfig())
				r := c.roles("purge-key")
				ctx := context.Background()
				holder := c.node(r.nat[1])
				if tt.stored != nil {
					if _, err := holder.e.Apply(ctx, r.key, r.pos, tt.stored(r)); err != nil {
						t.Fatal(err)
					}
				}
				digest := merkle.RecordDigest(tt.seen(r))
				var purged bool
				var err error
				if via == "local" {
					purged, err = holder.e.Purge(ctx, r.key, digest)
				} else {
					purged, err = c.node(r.nat[0]).e.CallPurge(ctx, holder.id, r.key, digest)
				}
				if err != nil || purged != tt.wantPurged {
					t.Fatalf("purged %v err %v, want %v", purged, err, tt.wantPurged)
				}
				_, ok := c.data(holder.id, r.key)
				if want := tt.stored != nil && !tt.wantPurged; ok != want {
					t.Fatalf("record present %v after purge, want %v", ok, want)
				}
			})
		}
	}
}

// TestCallPurgeSelfAndUnreachable covers the two other paths of CallPurge.
func TestCallPurgeSelfAndUnreachable(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("purge-key")
	ctx := context.Background()
	rec := mkTombstone(dht.Record{}, r.nat[0], 100)
	for _, id := range r.nat {
		if _, err := c.node(id).e.Apply(ctx, r.key, r.pos, rec); err != nil {
			t.Fatal(err)
		}
	}
	e := c.node(r.nat[0]).e
	if ok, err := e.CallPurge(ctx, r.nat[0], r.key, merkle.RecordDigest(rec)); !ok || err != nil {
		t.Fatalf("CallPurge to self: %v %v", ok, err)
	}
	c.net.Kill(r.nat[2])
	ok, err := e.CallPurge(ctx, r.nat[2], r.key, merkle.RecordDigest(rec))
	if ok || !errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("CallPurge to a killed peer: %v %v, want ErrUnreachable", ok, err)
	}
	if _, ok := c.data(r.nat[2], r.key); !ok {
		t.Fatal("unreachable replica lost its tombstone")
	}
}
