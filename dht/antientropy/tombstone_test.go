package antientropy

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// tombstoneCluster is 3 nodes with N = 3: every node replicates every key.
func tombstoneCluster(t *testing.T) *cluster {
	return newCluster(t, 3, 3, 4, testConfig())
}

// found reports which nodes hold a record of key.
func found(t *testing.T, c *cluster, key string) map[peer.ID]bool {
	t.Helper()
	out := map[peer.ID]bool{}
	for id, nd := range c.nodes {
		_, ok, err := getLocal(context.Background(), nd.st, []byte(key))
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		out[id] = ok
	}
	return out
}

func TestTombstoneCollection(t *testing.T) {
	grace := testConfig().TombstoneGrace
	tests := []struct {
		name    string
		setup   func(c *cluster, reps []peer.ID, base, tomb dht.Record, key string)
		advance float64 // in grace periods
		purged  bool
	}{{
		name:    "every replica holds it and the grace passed",
		advance: 1.5, purged: true,
	}, {
		name:    "the grace has not passed",
		advance: 0.5,
	}, {
		name: "one replica still holds the value",
		setup: func(c *cluster, reps []peer.ID, base, _ dht.Record, key string) {
			c.put(reps[2], key, base)
		},
		advance: 1.5,
	}, {
		name: "one replica lacks the key",
		setup: func(c *cluster, reps []peer.ID, _, _ dht.Record, key string) {
			if err := c.nodes[reps[1]].st.Delete(context.Background(), dataKey([]byte(key))); err != nil {
				panic(err)
			}
		},
		advance: 1.5,
	}, {
		name: "one replica is down",
		setup: func(c *cluster, reps []peer.ID, _, _ dht.Record, _ string) {
			c.w.setDown(reps[1], true)
			c.w.net.Kill(reps[1])
		},
		advance: 1.5,
	}, {
		name: "one replica is unreachable but believed alive",
		setup: func(c *cluster, reps []peer.ID, _, _ dht.Record, _ string) {
			c.w.net.Partition([]peer.ID{reps[2]})
		},
		advance: 1.5,
	}, {
		name: "a value whose TTL ran out over a grace ago",
		setup: func(c *cluster, reps []peer.ID, base, _ dht.Record, key string) {
			exp := expiring(base, actor(1), "ttl", c.clock.Now(), c.clock.Now().Add(grace/4))
			for _, id := range reps {
				c.put(id, key, exp)
			}
		},
		advance: 1.5, purged: true,
	}, {
		name: "a value whose TTL ran out less than a grace ago",
		setup: func(c *cluster, reps []peer.ID, base, _ dht.Record, key string) {
			exp := expiring(base, actor(1), "ttl", c.clock.Now(), c.clock.Now().Add(grace))
			for _, id := range reps {
				c.put(id, key, exp)
			}
		},
		advance: 1.5,
	}, {
		name: "an expired value next to a concurrent tombstone",
		setup: func(c *cluster, reps []peer.ID, base, tomb dht.Record, key string) {
			exp := expiring(base, actor(2), "ttl", c.clock.Now(), c.clock.Now().Add(grace/4))
			for _, id := range reps {
				c.put(id, key, mergeAll(tomb, exp))
			}
		},
		advance: 1.5, purged: true,
	}, {
		name: "a value that never expires next to an expired one",
		setup: func(c *cluster, reps []peer.ID, base, _ dht.Record, key string) {
			exp := expiring(base, actor(2), "ttl", c.clock.Now(), c.clock.Now().Add(grace/4))
			for _, id := range reps {
				c.put(id, key, mergeAll(base, exp, write(dht.Record{}, actor(5), "lasting", c.clock.Now())))
			}
		},
		advance: 1.5,
	}, {
		name: "a live sibling next to the tombstone",
		setup: func(c *cluster, reps []peer.ID, base, tomb dht.Record, key string) {
			live := write(dht.Record{}, actor(5), "concurrent", c.clock.Now())
			for _, id := range reps {
				c.put(id, key, mergeAll(tomb, live))
			}
		},
		advance: 1.5,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tombstoneCluster(t)
			key := keyName(3)
			reps := c.natural(key)
			base := write(dht.Record{}, actor(0), "v", c.clock.Now())
			tomb := del(base, actor(1), c.clock.Now())
			for _, id := range reps {
				c.put(id, key, tomb)
			}
			if tt.setup != nil {
				tt.setup(c, reps, base, tomb, key)
			}
			before := found(t, c, key)
			c.clock.Advance(time.Duration(tt.advance * float64(grace)))
			for _, id := range c.sortedIDs() {
				if err := c.nodes[id].s.collectTombstones(context.Background()); err != nil {
					t.Fatalf("collectTombstones: %v", err)
				}
			}
			after := found(t, c, key)
			for id := range c.nodes {
				switch {
				case tt.purged && after[id]:
					t.Errorf("%s still holds the tombstone", id)
				case !tt.purged && after[id] != before[id]:
					t.Errorf("%s: held %v before collection, %v after; want unchanged", id, before[id], after[id])
				}
			}
		})
	}
}

func TestTombstoneCollectedByRound(t *testing.T) {
	c := tombstoneCluster(t)
	key := keyName(4)
	reps := c.natural(key)
	base := write(dht.Record{}, actor(0), "v", c.clock.Now())
	// The delete reached one replica only; the round spreads it, then
	// collects it once the grace has passed.
	for _, id := range reps {
		c.put(id, key, base)
	}
	c.put(reps[1], key, del(base, actor(1), c.clock.Now()))
	c.roundAll()
	if got := found(t, c, key); !got[reps[0]] || !got[reps[2]] {
		t.Fatalf("tombstone collected before the grace: %v", got)
	}
	c.clock.Advance(2 * testConfig().TombstoneGrace)
	c.roundAll()
	for id, ok := range found(t, c, key) {
		if ok {
			t.Fatalf("%s still holds the key after collection", id)
		}
	}
}

func TestDeletedKeyStaysDeletedAfterHeal(t *testing.T) {
	c := tombstoneCluster(t)
	key := keyName(5)
	reps := c.natural(key)
	base := write(dht.Record{}, actor(0), "v", c.clock.Now())
	for _, id := range reps {
		c.put(id, key, base)
	}
	// Cut one replica off; the others delete the key and outlive the grace.
	cut := reps[2]
	c.w.setDown(cut, true)
	c.w.net.Partition([]peer.ID{cut})
	tomb := del(base, actor(1), c.clock.Now())
	c.put(reps[0], key, tomb)
	c.put(reps[1], key, tomb)
	c.clock.Advance(3 * testConfig().TombstoneGrace)
	for _, id := range reps[:2] {
		if _, err := c.nodes[id].s.Round(context.Background(), nil); err != nil {
			t.Fatalf("Round during the partition: %v", err)
		}
	}
	if got := found(t, c, key); !got[reps[0]] || !got[reps[1]] || !got[cut] {
		t.Fatalf("tombstone collected while a replica was cut off: %v", got)
	}
	c.w.setDown(cut, false)
	c.w.net.Heal()
	for range 3 {
		c.roundAll()
		for _, id := range reps {
			rec, ok, err := getLocal(context.Background(), c.nodes[id].st, []byte(key))
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if ok && !rec.DeletedAt(c.clock.Now().UnixNano()) {
				t.Fatalf("%s holds the deleted key's value again: %+v", id, rec)
			}
		}
	}
	for id, ok := range found(t, c, key) {
		if ok {
			t.Fatalf("%s still holds the key three rounds after the heal", id)
		}
	}
}

// TestTombstoneCollectionLWW: in last-writer-wins mode a key whose latest
// version is dead is deleted, even next to an older live sibling that a
// merge kept, and is collected after the grace; one whose latest version
// is live is not.
func TestTombstoneCollectionLWW(t *testing.T) {
	for _, latestDead := range []bool{true, false} {
		cfg := testConfig()
		cfg.LWW = true
		c := newCluster(t, 3, 3, 4, cfg)
		key := keyName(6)
		reps := c.natural(key)
		now := c.clock.Now()
		older := write(dht.Record{}, actor(0), "older", now)
		latest := del(dht.Record{}, actor(1), now.Add(time.Second))
		if !latestDead {
			older, latest = del(dht.Record{}, actor(0), now), write(dht.Record{}, actor(1), "latest", now.Add(time.Second))
		}
		for _, id := range reps {
			c.put(id, key, mergeAll(older, latest))
		}
		c.clock.Advance(2 * cfg.TombstoneGrace)
		for _, id := range c.sortedIDs() {
			if err := c.nodes[id].s.collectTombstones(context.Background()); err != nil {
				t.Fatalf("collectTombstones: %v", err)
			}
		}
		for id, ok := range found(t, c, key) {
			if ok == latestDead {
				t.Errorf("latest version dead %v: %s holds the key %v after collection", latestDead, id, ok)
			}
		}
	}
}
