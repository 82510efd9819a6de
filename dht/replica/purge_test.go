package replica_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	expired := func(r roles) dht.Record {
		return writeVersion(dht.Record{}, r.nat[0], dht.Version{Value: []byte("v"), ExpiresAt: clockStart.UnixNano() + 100})
	}
	// lwwDeleted is a tombstone that is the latest write, next to an
	// older value it did not see.
	lwwDeleted := func(r roles) dht.Record {
		return version.Merge(mkRecord(dht.Record{}, r.nat[0], "older", 100), mkTombstone(dht.Record{}, r.nat[1], 200))
	}
	tests := []struct {
		name string
		// stored is the record on the replica (nil: none); seen is the
		// record whose digest the caller passes.
		stored, seen func(r roles) dht.Record
		lww          bool // the cluster runs in last-writer-wins mode
		wantPurged   bool
	}{
		{name: "tombstone with matching digest", stored: tomb, seen: tomb, wantPurged: true},
		{name: "expired value with matching digest", stored: expired, seen: expired, wantPurged: true},
		{name: "LWW: latest tombstone next to an older value", stored: lwwDeleted, seen: lwwDeleted, lww: true, wantPurged: true},
		{name: "siblings: a tombstone next to a live value", stored: lwwDeleted, seen: lwwDeleted},
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
				cfg := testConfig()
				cfg.LWW = tt.lww
				c := newCluster(t, 3, cfg)
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

// TestRelease: handoff's delete takes any record, live or not, but only
// while it still has the digest the caller pushed.
func TestRelease(t *testing.T) {
	live := func(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[0], "v", 100) }
	tests := []struct {
		name         string
		stored, seen func(r roles) dht.Record // stored nil: no record
		wantReleased bool
	}{
		{name: "live record with matching digest", stored: live, seen: live, wantReleased: true},
		{
			name: "tombstone with matching digest", wantReleased: true,
			stored: func(r roles) dht.Record { return mkTombstone(live(r), r.nat[0], 200) },
			seen:   func(r roles) dht.Record { return mkTombstone(live(r), r.nat[0], 200) },
		},
		{
			name:   "written since it was pushed",
			stored: func(r roles) dht.Record { return mkRecord(live(r), r.nat[1], "later", 300) },
			seen:   live,
		},
		{name: "no record", seen: live},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3, testConfig())
			r := c.roles("release-key")
			ctx := context.Background()
			holder := c.node(r.nat[1])
			if tt.stored != nil {
				if _, err := holder.e.Apply(ctx, r.key, r.pos, tt.stored(r)); err != nil {
					t.Fatal(err)
				}
			}
			released, err := holder.e.Release(ctx, r.key, merkle.RecordDigest(tt.seen(r)))
			if err != nil || released != tt.wantReleased {
				t.Fatalf("released %v err %v, want %v", released, err, tt.wantReleased)
			}
			_, ok := c.data(holder.id, r.key)
			if want := tt.stored != nil && !tt.wantReleased; ok != want {
				t.Fatalf("record present %v after release, want %v", ok, want)
			}
		})
	}
}

// TestReleaseRacesWrite runs a release of a pushed record against a write
// of a newer version: whichever goes first, the newer version stays.
func TestReleaseRacesWrite(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("release-race")
	ctx := context.Background()
	holder := c.node(r.nat[1])
	for i := range 100 {
		pushed := mkRecord(dht.Record{}, r.nat[0], fmt.Sprint("v", i), int64(1000*i+1))
		if _, err := holder.e.Apply(ctx, r.key, r.pos, pushed); err != nil {
			t.Fatal(err)
		}
		newer := mkRecord(pushed, r.nat[0], fmt.Sprint("w", i), int64(1000*i+2))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := holder.e.Release(ctx, r.key, merkle.RecordDigest(pushed)); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := holder.e.Apply(ctx, r.key, r.pos, newer); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		got, ok := c.data(holder.id, r.key)
		if !ok || !version.Identical(version.Merge(got, newer), got) {
			t.Fatalf("round %d: after a release and a newer write the node holds %+v (present %v); want the newer write", i, got, ok)
		}
		if _, err := holder.e.Release(ctx, r.key, merkle.RecordDigest(got)); err != nil {
			t.Fatal(err)
		}
	}
}
