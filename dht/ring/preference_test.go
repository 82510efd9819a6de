package ring_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// prefCase is a ring shape for preference-list tests.
type prefCase struct {
	name          string
	nodes, zones  int
	vnodes        int
	smallZoneNode bool // one node, alone in its zone, with a tiny capacity
}

var prefCases = []prefCase{
	{name: "no zones", nodes: 20, vnodes: 8},
	{name: "one zone", nodes: 20, zones: 1, vnodes: 8},
	{name: "two zones", nodes: 20, zones: 2, vnodes: 8},
	{name: "three zones", nodes: 30, zones: 3, vnodes: 8},
	{name: "five zones", nodes: 25, zones: 5, vnodes: 8},
	{name: "zone per node", nodes: 12, zones: 12, vnodes: 4},
	{name: "lonely small zone", nodes: 30, zones: 2, vnodes: 16, smallZoneNode: true},
	{name: "two nodes", nodes: 2, zones: 2, vnodes: 3},
}

func (c prefCase) build(t *testing.T) (*ring.Ring, *refRing, int) {
	t.Helper()
	nodes := testNodes(11, c.nodes, c.zones)
	zones := max(c.zones, 1)
	if c.smallZoneNode {
		nodes[0].Zone, nodes[0].Capacity = "lonely", 0.1
		zones++
	}
	return ring.New(nodes, c.vnodes), newRefRing(t, nodes, c.vnodes), zones
}

// probes returns positions to test on r: every token, the position after
// it, and random ones.
func probes(r *ring.Ring, random int) []uint64 {
	var out []uint64
	for _, a := range r.Arcs() {
		out = append(out, a.End, a.End+1)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range random {
		out = append(out, rng.Uint64())
	}
	return out
}

func TestPreferenceListMatchesReference(t *testing.T) {
	for _, c := range prefCases {
		t.Run(c.name, func(t *testing.T) {
			r, ref, _ := c.build(t)
			for _, n := range []int{1, 2, 3, 5, c.nodes, c.nodes + 3} {
				for _, pos := range probes(r, 300) {
					got, want := r.PreferenceList(pos, n), ref.preference(pos, n)
					if !slices.Equal(got, want) {
						t.Fatalf("PreferenceList(%#x, %d) = %v, want %v", pos, n, got, want)
					}
				}
			}
		})
	}
}

func TestPreferenceListProperties(t *testing.T) {
	for _, c := range prefCases {
		t.Run(c.name, func(t *testing.T) {
			r, _, zones := c.build(t)
			for _, n := range []int{1, 3, c.nodes + 1} {
				for _, a := range r.Arcs() {
					pl := r.PreferenceList(a.End, n)
					if len(pl) != min(n, c.nodes) {
						t.Fatalf("n=%d: %d entries, want %d", n, len(pl), min(n, c.nodes))
					}
					if _, owner, _ := r.Successor(a.End); pl[0] != owner {
						t.Fatalf("n=%d: first entry %s is not the owner %s", n, pl[0], owner)
					}
					if distinct(pl) != len(pl) {
						t.Fatalf("n=%d: repeated node in %v", n, pl)
					}
					if got := zonesOf(r, pl); got != min(n, zones) {
						t.Fatalf("n=%d: list covers %d zones, want %d", n, got, min(n, zones))
					}
					if !ring.Full(a) && !slices.Equal(r.PreferenceList(a.Start+1, n), pl) {
						t.Fatalf("n=%d: list differs within arc %v", n, a)
					}
				}
			}
		})
	}
}

func distinct(ids []peer.ID) int {
	seen := map[peer.ID]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	return len(seen)
}

func TestPreferenceListN(t *testing.T) {
	r := ring.New(testNodes(1, 4, 0), 8)
	tests := []struct {
		n, want int
	}{
		{-1, 0}, {0, 0}, {1, 1}, {4, 4}, {5, 4}, {1 << 30, 4},
	}
	for _, tt := range tests {
		if got := r.PreferenceList(99, tt.n); len(got) != tt.want {
			t.Errorf("PreferenceList(n=%d) has %d entries, want %d", tt.n, len(got), tt.want)
		}
	}
}

func TestWalk(t *testing.T) {
	nodes := testNodes(8, 15, 3)
	r, ref := ring.New(nodes, 6), newRefRing(t, nodes, 6)
	for _, pos := range probes(r, 50) {
		var got []peer.ID
		r.Walk(pos, func(id peer.ID) bool { got = append(got, id); return true })
		if want := ref.walk(pos); !slices.Equal(got, want) {
			t.Fatalf("Walk(%#x) = %v, want %v", pos, got, want)
		}
	}
	for _, stop := range []int{1, 4, 15} {
		var got []peer.ID
		r.Walk(12345, func(id peer.ID) bool { got = append(got, id); return len(got) < stop })
		if want := ref.walk(12345)[:stop]; !slices.Equal(got, want) {
			t.Errorf("Walk stopping after %d visited %v, want %v", stop, got, want)
		}
	}
}

func TestReplicaArcs(t *testing.T) {
	for _, c := range prefCases {
		for _, n := range []int{1, 3, c.nodes} {
			t.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(t *testing.T) {
				r, _, _ := c.build(t)
				pos := probes(r, 400)
				for _, node := range r.Nodes() {
					arcs := r.ReplicaArcs(node.ID, n)
					checkArcSet(t, arcs)
					for _, p := range pos {
						inList := slices.Contains(r.PreferenceList(p, n), node.ID)
						inArc := slices.ContainsFunc(arcs, func(a ring.Arc) bool { return ring.Contains(a, p) })
						if inList != inArc {
							t.Fatalf("node %s pos %#x: in list %v, in replica arcs %v", node.ID, p, inList, inArc)
						}
					}
				}
			})
		}
	}
	r := ring.New(testNodes(1, 3, 0), 4)
	if r.ReplicaArcs("nobody", 3) != nil || r.ReplicaArcs(r.Nodes()[0].ID, 0) != nil {
		t.Error("ReplicaArcs of a non-member or n=0 is not nil")
	}
	if a := r.ReplicaArcs(r.Nodes()[0].ID, 3); len(a) != 1 || !ring.Full(a[0]) {
		t.Errorf("node in every list: ReplicaArcs = %v, want the full ring", a)
	}
}

// checkArcSet checks that arcs are sorted by End, disjoint and not adjacent
// (adjacent ones should have been merged).
func checkArcSet(t *testing.T, arcs []ring.Arc) {
	t.Helper()
	if !slices.IsSortedFunc(arcs, func(a, b ring.Arc) int { return compareU64(a.End, b.End) }) {
		t.Fatalf("arcs not sorted by End: %v", arcs)
	}
	if len(arcs) == 1 {
		return
	}
	for i, a := range arcs {
		if ring.Full(a) {
			t.Fatalf("full arc among others: %v", arcs)
		}
		next := arcs[(i+1)%len(arcs)]
		if a.End == next.Start || ring.Contains(a, next.End) || ring.Contains(next, a.End) {
			t.Fatalf("arcs %v and %v touch or overlap", a, next)
		}
	}
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
