package antientropy

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
	"github.com/ringkv/ringkv/dht/version"
)

// replicate writes keys to all their natural replicas, with one replica
// of some keys holding a newer version than the others, and returns the
// merged state of each key.
func replicate(c *cluster, keys int) map[string]dht.Record {
	ts := c.clock.Now()
	want := map[string]dht.Record{}
	for i := range keys {
		key := keyName(i)
		reps := c.natural(key)
		rec := write(dht.Record{}, actor(0), "v-"+key, ts)
		for k, id := range reps {
			r := rec
			if i%5 == 0 && k == len(reps)-1 {
				r = write(rec, actor(1), "newer", ts)
			}
			c.put(id, key, r)
			want[key] = version.Merge(want[key], r)
		}
	}
	return want
}

func TestBootstrapPullsExactlyItsArcs(t *testing.T) {
	for _, tt := range []struct {
		name         string
		nodes, n     int
		vnodes, keys int
	}{
		{"4 nodes + 1, N=3", 4, 3, 8, 600},
		{"2 nodes + 1, N=2, one token", 2, 2, 1, 200},
		{"1 node + 1, N=3", 1, 3, 4, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.nodes, tt.n, tt.vnodes, testConfig())
			want := replicate(c, tt.keys)
			joiner := ringtest.PeerID(99, 0)
			c.w.setRings(c.ringOf(c.ids...), c.ringOf(append(slices.Clone(c.ids), joiner)...))
			nd := c.add(joiner)
			var last Progress
			if err := nd.s.Bootstrap(context.Background(), func(p Progress) { last = p }); err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			if last.KeysSent != 0 || last.KeysReceived == 0 || last.RangesDone != last.RangesTotal {
				t.Fatalf("bootstrap progress %+v: want keys received, none sent, every range done", last)
			}
			got := nd.st.records(t)
			mine := 0
			for key, rec := range want {
				_, held := got[key]
				should := contains(c.future(key), joiner)
				switch {
				case should && !held:
					t.Fatalf("joiner lacks %s, a key of its future arcs", key)
				case !should && held:
					t.Fatalf("joiner pulled %s, which it will not replicate", key)
				case held && !version.Identical(got[key], rec):
					t.Fatalf("joiner holds %s as %+v, want the merge of its replicas %+v", key, got[key], rec)
				}
				if should {
					mine++
				}
			}
			if mine == 0 || len(got) != mine {
				t.Fatalf("joiner holds %d keys, should hold %d", len(got), mine)
			}
			// Pull only: the serving replicas are unchanged.
			for _, id := range c.ids {
				for key := range c.nodes[id].st.records(t) {
					if _, ok := want[key]; !ok || !contains(c.natural(key), id) {
						t.Fatalf("%s gained %s during the bootstrap", id, key)
					}
				}
			}
		})
	}
}

func TestBootstrapWithSourceDown(t *testing.T) {
	c := newCluster(t, 4, 3, 8, testConfig())
	want := replicate(c, 300)
	joiner := ringtest.PeerID(99, 0)
	c.w.setRings(c.ringOf(c.ids...), c.ringOf(append(slices.Clone(c.ids), joiner)...))
	nd := c.add(joiner)
	c.w.setDown(c.ids[0], true)
	if err := nd.s.Bootstrap(context.Background(), nil); err != nil {
		t.Fatalf("Bootstrap with a source marked down: %v", err)
	}
	got := nd.st.records(t)
	for key := range want {
		if contains(c.future(key), joiner) {
			if _, ok := got[key]; !ok {
				t.Fatalf("joiner lacks %s: every key has a live source", key)
			}
		}
	}
}

func TestDrainPushesToFutureReplicas(t *testing.T) {
	c := newCluster(t, 5, 3, 8, testConfig())
	replicate(c, 500)
	leaver := c.ids[2]
	ts := c.clock.Now()
	// The leaver also holds newer versions and keys no one else has.
	own := c.nodes[leaver].st.records(t)
	i := 0
	for key, rec := range own {
		if i%3 == 0 {
			c.put(leaver, key, write(rec, actor(7), "leaver's", ts))
		}
		i++
	}
	for k := range 40 {
		key := "only-on-leaver-" + keyName(k)
		c.put(leaver, key, write(dht.Record{}, actor(7), "x", ts))
	}
	rest := slices.DeleteFunc(slices.Clone(c.ids), func(id peer.ID) bool { return id == leaver })
	c.w.setRings(c.ringOf(c.ids...), c.ringOf(rest...))
	held := c.nodes[leaver].st.records(t)
	var last Progress
	if err := c.nodes[leaver].s.Drain(context.Background(), func(p Progress) { last = p }); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if last.KeysReceived != 0 || last.KeysSent == 0 {
		t.Fatalf("drain progress %+v: want keys sent, none received", last)
	}
	for key, rec := range held {
		for _, id := range c.future(key) {
			got, found, err := getLocal(context.Background(), c.nodes[id].st, []byte(key))
			if err != nil || !found {
				t.Fatalf("future replica %s lacks %s after the drain (%v)", id, key, err)
			}
			if !version.Identical(version.Merge(got, rec), got) {
				t.Fatalf("future replica %s holds %s without the leaver's state", id, key)
			}
		}
	}
	// Push only: the leaver took nothing.
	if after := c.nodes[leaver].st.records(t); len(after) != len(held) {
		t.Fatalf("leaver holds %d keys after the drain, %d before", len(after), len(held))
	}
}

func TestDrainWithoutLiveTarget(t *testing.T) {
	c := newCluster(t, 1, 3, 4, testConfig())
	only := c.ids[0]
	c.put(only, "k", write(dht.Record{}, actor(0), "v", c.clock.Now()))
	c.w.setRings(c.ringOf(only), c.ringOf())
	if err := c.nodes[only].s.Drain(context.Background(), nil); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Drain of the last node = %v, want ErrIncomplete", err)
	}
}

func TestHandoff(t *testing.T) {
	c := newCluster(t, 5, 2, 8, testConfig())
	holder := c.ids[0]
	ts := c.clock.Now()
	strays := map[string]dht.Record{}
	for i := 0; len(strays) < 60; i++ {
		key := "stray-" + keyName(i)
		if contains(c.natural(key), holder) {
			continue
		}
		rec := write(dht.Record{}, actor(3), "stray", ts)
		strays[key] = rec
		c.put(holder, key, rec)
		// One natural replica already has a concurrent state of some keys.
		if i%4 == 0 {
			c.put(c.natural(key)[0], key, write(dht.Record{}, actor(4), "other", ts))
		}
	}
	p, err := c.nodes[holder].s.Round(context.Background(), nil)
	if err != nil {
		t.Fatalf("Round: %v", err)
	}
	if p.KeysSent < int64(2*len(strays)) {
		t.Fatalf("handoff sent %d records, want at least %d", p.KeysSent, 2*len(strays))
	}
	left := c.nodes[holder].st.records(t)
	for key, want := range strays {
		if _, ok := left[key]; ok {
			t.Fatalf("holder still has %s after handing it off", key)
		}
		for _, id := range c.natural(key) {
			got, found, err := getLocal(context.Background(), c.nodes[id].st, []byte(key))
			if err != nil || !found || !version.Identical(version.Merge(got, want), got) {
				t.Fatalf("natural replica %s holds %s as %+v (found %v, err %v), want it to include %+v", id, key, got, found, err, want)
			}
		}
	}
}

func TestHandoffKeeps(t *testing.T) {
	tests := []struct {
		name  string
		setup func(c *cluster, holder peer.ID, key string)
	}{
		{"a natural replica is down", func(c *cluster, _ peer.ID, key string) {
			c.w.setDown(c.natural(key)[1], true)
		}},
		{"the holder is a future replica", func(c *cluster, holder peer.ID, _ string) {
			c.w.setRings(c.ringOf(c.ids...), c.ringOf(holder))
		}},
		{"a natural replica is unreachable", func(c *cluster, _ peer.ID, key string) {
			c.w.net.Partition([]peer.ID{c.natural(key)[1]})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 4, 2, 8, testConfig())
			holder := ringtest.PeerID(99, 0)
			nd := c.add(holder)
			key := keyName(1)
			rec := write(dht.Record{}, actor(3), "v", c.clock.Now())
			c.put(holder, key, rec)
			tt.setup(c, holder, key)
			_, _ = nd.s.Round(context.Background(), nil)
			got, found, err := getLocal(context.Background(), nd.st, []byte(key))
			if err != nil || !found || digest(got) != digest(rec) {
				t.Fatalf("holder's record after the round: found %v, err %v; want it kept", found, err)
			}
		})
	}
}
