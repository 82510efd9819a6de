package routing

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"cold cache", func(c *Config) { c.CacheSize = 0 }, true},
		{"no loop", func(c *Config) { c.StabilizeInterval = 0 }, true},
		{"vnodes 0", func(c *Config) { c.VNodes = 0 }, false},
		{"vnodes over MaxTokens", func(c *Config) { c.VNodes = ring.MaxTokens + 1 }, false},
		{"replicas 0", func(c *Config) { c.Replicas = 0 }, false},
		{"successors below replicas-1", func(c *Config) { c.Replicas, c.Successors = 5, 3 }, false},
		{"successors 33", func(c *Config) { c.Successors = 33 }, false},
		{"predecessors 0", func(c *Config) { c.Predecessors = 0 }, false},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, false},
		{"alpha 0", func(c *Config) { c.Alpha = 0 }, false},
		{"alpha 33", func(c *Config) { c.Alpha = 33 }, false},
		{"max hops 65", func(c *Config) { c.MaxHops = 65 }, false},
		{"query timeout 0", func(c *Config) { c.QueryTimeout = 0 }, false},
		{"negative interval", func(c *Config) { c.StabilizeInterval = -time.Second }, false},
		{"tokens per round 0", func(c *Config) { c.StabilizeTokensPerRound = 0 }, false},
		{"fingers per round 65", func(c *Config) { c.FixFingersPerRound = 65 }, false},
		{"negative forget timeout", func(c *Config) { c.ForgetTimeout = -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// newTestTable returns a table for the first of nodes with the rest
// observed in order.
func newTestTable(nodes []ring.Node, vnodes, succs, preds, cache int) *table {
	cfg := DefaultConfig()
	cfg.VNodes, cfg.Successors, cfg.Predecessors, cfg.CacheSize = vnodes, succs, preds, cache
	self := newRec(Peer{ID: nodes[0].ID, Zone: nodes[0].Zone, Capacity: nodes[0].Capacity}, vnodes)
	t := newTable(cfg, self)
	for _, n := range nodes[1:] {
		t.observe(newRec(Peer{ID: n.ID, Zone: n.Zone, Capacity: n.Capacity}, vnodes))
	}
	return t
}

// TestViewMatchesRing checks that a view holding every node answers what
// ring.Ring answers: owner and zone-aware preference lists.
func TestViewMatchesRing(t *testing.T) {
	for _, tc := range []struct {
		nodes, zones, vnodes, n int
		capacities              bool
	}{
		{1, 0, 4, 3, false},
		{2, 0, 1, 3, false},
		{10, 0, 16, 3, false},
		{30, 3, 8, 3, false},
		{30, 2, 8, 5, true},
		{50, 7, 4, 3, true},
		{200, 4, 1, 3, false},
	} {
		t.Run(fmt.Sprintf("%d nodes %d zones V%d N%d", tc.nodes, tc.zones, tc.vnodes, tc.n), func(t *testing.T) {
			nodes := ringtest.Nodes(uint64(tc.nodes), tc.nodes, tc.zones)
			if tc.capacities {
				for i := range nodes {
					nodes[i].Capacity = []float64{0.5, 1, 2, 3.3}[i%4]
				}
			}
			ref := ring.New(nodes, tc.vnodes)
			v := newTestTable(nodes, tc.vnodes, 8, 4, 10_000).fullSnapshot()
			if len(v.toks) != len(ref.Arcs()) {
				t.Fatalf("view has %d tokens, ring %d", len(v.toks), len(ref.Arcs()))
			}
			rng := rand.New(rand.NewPCG(uint64(tc.nodes), 3))
			positions := []uint64{0, 1, ^uint64(0)}
			for range 2000 {
				positions = append(positions, rng.Uint64())
			}
			for _, tok := range ref.TokensOf(nodes[0].ID) {
				positions = append(positions, tok, tok+1, tok-1)
			}
			for _, pos := range positions {
				want := ref.PreferenceList(pos, tc.n)
				got := v.prefList(pos, tc.n, nil)
				if !slices.Equal(recIDs(got), want) {
					t.Fatalf("prefList(%016x) = %v, want %v", pos, recIDs(got), want)
				}
				if _, o, _ := ref.Successor(pos); v.owner(pos, nil).ID != o {
					t.Fatalf("owner(%016x) = %s, want %s", pos, v.owner(pos, nil).ID, o)
				}
			}
		})
	}
}

func recIDs(recs []*peerRec) []peer.ID {
	out := make([]peer.ID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// expectedStructural computes, from the global ring, the peers self keeps
// whatever its cache: r successors and p predecessors of each own token,
// and the fingers.
func expectedStructural(ref *ring.Ring, self peer.ID, r, p int) map[peer.ID]bool {
	out := make(map[peer.ID]bool)
	toks := ref.TokensOf(self)
	for _, tok := range toks {
		n := 0
		ref.Walk(tok+1, func(id peer.ID) bool {
			if id != self {
				out[id] = true
				n++
			}
			return n < r
		})
		var preds []peer.ID
		for q := ref.Predecessor(tok); q != tok && len(preds) < p; q = ref.Predecessor(q) {
			if _, o, _ := ref.Successor(q); o != self && !slices.Contains(preds, o) {
				preds = append(preds, o)
				out[o] = true
			}
		}
	}
	for b := range 64 {
		if _, o, _ := ref.Successor(toks[0] + 1<<b); o != self {
			out[o] = true
		}
	}
	return out
}

func TestTableBoundAndPins(t *testing.T) {
	for _, tc := range []struct {
		nodes, vnodes, succs, preds, cache int
	}{
		{500, 1, 8, 1, 0},
		{500, 1, 8, 4, 20},
		{300, 4, 4, 2, 10},
		{2000, 2, 8, 8, 100},
		{40, 16, 8, 4, 0},
	} {
		t.Run(fmt.Sprintf("%d nodes V%d r%d p%d cache %d", tc.nodes, tc.vnodes, tc.succs, tc.preds, tc.cache), func(t *testing.T) {
			nodes := ringtest.Nodes(uint64(tc.nodes)+11, tc.nodes, 0)
			rng := rand.New(rand.NewPCG(5, 5))
			rng.Shuffle(len(nodes)-1, func(i, j int) { nodes[i+1], nodes[j+1] = nodes[j+1], nodes[i+1] })
			tab := newTestTable(nodes, tc.vnodes, tc.succs, tc.preds, tc.cache)
			tab.fullSnapshot()
			cfg := DefaultConfig()
			cfg.Successors, cfg.Predecessors, cfg.CacheSize = tc.succs, tc.preds, tc.cache
			if n, bound := tab.size(), cfg.MaxSize(len(tab.self.toks)); n > bound {
				t.Fatalf("%d peers over the bound %d", n, bound)
			}
			want := expectedStructural(ring.New(nodes, tc.vnodes), nodes[0].ID, tc.succs, tc.preds)
			got := make(map[peer.ID]bool)
			for _, e := range tab.entries {
				if e.pinned {
					got[e.rec.ID] = true
				}
			}
			for id := range want {
				if !got[id] {
					t.Errorf("structural peer %s is not pinned", id)
				}
			}
			for id := range got {
				if !want[id] {
					t.Errorf("peer %s is pinned but not structural", id)
				}
			}
			if unpinned := tab.size() - len(got); unpinned != min(tc.cache, tc.nodes-1-len(want)) {
				t.Errorf("%d cached peers, want %d", unpinned, min(tc.cache, tc.nodes-1-len(want)))
			}
			// The cache keeps the most recently observed unpinned peers.
			var recent []peer.ID
			for i := len(nodes) - 1; i > 0 && len(recent) < tc.cache; i-- {
				if !want[nodes[i].ID] {
					recent = append(recent, nodes[i].ID)
				}
			}
			for _, id := range recent {
				if _, ok := tab.lookup(id); !ok {
					t.Errorf("recently observed %s was evicted", id)
				}
			}
		})
	}
}

func TestTableForgetAndReobserve(t *testing.T) {
	nodes := ringtest.Nodes(77, 30, 3)
	tab := newTestTable(nodes, 4, 8, 4, 100)
	v := tab.fullSnapshot()
	if v.nodes != 30 || v.zones != 3 {
		t.Fatalf("view of %d nodes, %d zones; want 30, 3", v.nodes, v.zones)
	}
	e, _ := tab.lookup(nodes[5].ID)
	victim := e.rec
	tab.forget(victim.ID)
	tab.observe(victim) // same record back before any rebuild
	v = tab.fullSnapshot()
	if !slices.Equal(recIDs(v.prefList(victim.toks[0], 1, nil)), []peer.ID{victim.ID}) {
		t.Fatalf("re-observed peer does not own its token")
	}
	seen := 0
	for _, x := range v.toks {
		if x.rec == victim {
			seen++
		}
	}
	if seen != len(victim.toks) {
		t.Fatalf("re-observed peer has %d tokens in the view, want %d", seen, len(victim.toks))
	}
	// A changed zone replaces the record.
	moved := victim.Peer
	moved.Zone = "elsewhere"
	tab.observe(victim.withPeer(moved, 4))
	if v = tab.fullSnapshot(); v.zones != 4 || v.nodes != 30 {
		t.Fatalf("after a zone change: %d nodes, %d zones; want 30, 4", v.nodes, v.zones)
	}
	for _, n := range nodes[1:] {
		tab.forget(n.ID)
	}
	if v = tab.fullSnapshot(); len(v.toks) != len(tab.self.toks) || v.nodes != 1 || tab.size() != 0 {
		t.Fatalf("after forgetting everyone: %d tokens, %d nodes, %d entries", len(v.toks), v.nodes, tab.size())
	}
}

func TestTombstones(t *testing.T) {
	var ts tombstones
	now := time.Unix(1000, 0)
	ids := ringtest.PeerIDs(3, maxTombstones+10)
	for i, id := range ids {
		ts.add(id, now.Add(time.Duration(i)*time.Millisecond))
	}
	if ts.has(ids[0], now, time.Hour) {
		t.Errorf("oldest tombstone kept beyond maxTombstones")
	}
	last := ids[len(ids)-1]
	if !ts.has(last, now.Add(time.Second), time.Hour) {
		t.Errorf("newest tombstone lost")
	}
	if ts.has(last, now.Add(2*time.Hour), time.Hour) {
		t.Errorf("tombstone outlived its timeout")
	}
	ts.clear(last)
	if ts.has(last, now, time.Hour) {
		t.Errorf("cleared tombstone still there")
	}
	if len(ts.order) > maxTombstones {
		t.Errorf("%d tombstones kept, bound %d", len(ts.order), maxTombstones)
	}
}
