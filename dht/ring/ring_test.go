package ring_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// Golden values pin the hash functions: every node of a cluster must derive
// the same positions, across versions, or they disagree on owners.
func TestKeyPosGolden(t *testing.T) {
	tests := []struct {
		key  string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"hello", 0x26c7827d889f6da3},
	}
	for _, tt := range tests {
		if got := ring.KeyPos([]byte(tt.key)); got != tt.want {
			t.Errorf("KeyPos(%q) = %#x, want %#x", tt.key, got, tt.want)
		}
	}
}

func TestTokensGolden(t *testing.T) {
	id, err := peer.Decode("12D3KooWQhBRK3ajNMJUW1cZYBLR97n4nu7Hp2vmS68Dr1Yh4C7C")
	if err != nil {
		t.Fatal(err)
	}
	// SHA-256(id || 00000000), (id || 00000001), (id || 00000002), sorted.
	want := []uint64{0x4b1f1988877baf02, 0x51a5e2ed268cfc3b, 0x77ee7b05cc079d41}
	if got := ring.Tokens(id, 3); !slices.Equal(got, want) {
		t.Errorf("Tokens = %#x, want %#x", got, want)
	}
	if got := ring.Tokens(id, 2); !slices.Equal(got, []uint64{want[0], want[1]}) {
		t.Errorf("Tokens(2) = %#x, want the first two indices", got)
	}
}

func TestTokensCount(t *testing.T) {
	id := testNodes(1, 1, 0)[0].ID
	tests := []struct {
		count, want int
	}{
		{-1, 0}, {0, 0}, {1, 1}, {100, 100}, {ring.MaxTokens + 5, ring.MaxTokens},
	}
	for _, tt := range tests {
		got := ring.Tokens(id, tt.count)
		if len(got) != tt.want || !slices.IsSorted(got) {
			t.Errorf("Tokens(%d): %d tokens (sorted %v), want %d sorted", tt.count, len(got), slices.IsSorted(got), tt.want)
		}
	}
}

func TestTokenCount(t *testing.T) {
	tests := []struct {
		name     string
		capacity float64
		vnodes   int
		want     int
	}{
		{"standard", 1, 128, 128},
		{"double", 2, 128, 256},
		{"rounds half up", 1.5, 3, 5},
		{"rounds down", 1.1, 4, 4},
		{"default vnodes", 1, 0, ring.DefaultVNodes},
		{"negative vnodes", 1, -3, ring.DefaultVNodes},
		{"tiny capacity", 0.0001, 128, 1},
		{"zero capacity", 0, 128, 1},
		{"negative capacity", -4, 128, 1},
		{"NaN", math.NaN(), 128, 1},
		{"huge capacity", 1e12, 128, ring.MaxTokens},
		{"+Inf", math.Inf(1), 128, ring.MaxTokens},
		{"-Inf", math.Inf(-1), 128, 1},
		{"cap exactly", 16, ring.DefaultVNodes, ring.MaxTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ring.TokenCount(tt.capacity, tt.vnodes); got != tt.want {
				t.Errorf("TokenCount(%v, %d) = %d, want %d", tt.capacity, tt.vnodes, got, tt.want)
			}
		})
	}
}

// smallRing is 3 nodes of 4 tokens and its reference model.
func smallRing(t *testing.T) (*ring.Ring, *refRing) {
	t.Helper()
	nodes := testNodes(7, 3, 0)
	return ring.New(nodes, 4), newRefRing(t, nodes, 4)
}

func TestSuccessor(t *testing.T) {
	r, ref := smallRing(t)
	toks := ref.tokens
	last := len(toks) - 1
	if toks[0] == 0 || toks[last] == math.MaxUint64 {
		t.Fatal("fixture tokens at the ends of the space; pick another seed")
	}
	tests := []struct {
		name string
		pos  uint64
		want int // index into toks
	}{
		{"zero", 0, 0},
		{"just before first", toks[0] - 1, 0},
		{"exactly first", toks[0], 0},
		{"just after first", toks[0] + 1, 1},
		{"just before middle", toks[5] - 1, 5},
		{"exactly middle", toks[5], 5},
		{"exactly last", toks[last], last},
		{"just after last wraps", toks[last] + 1, 0},
		{"max wraps", math.MaxUint64, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, owner, ok := r.Successor(tt.pos)
			if !ok || tok != toks[tt.want] || owner != ref.owner[tt.want] {
				t.Errorf("Successor(%#x) = %#x, %s, %v; want %#x, %s, true",
					tt.pos, tok, owner, ok, toks[tt.want], ref.owner[tt.want])
			}
		})
	}
}

func TestPredecessor(t *testing.T) {
	r, ref := smallRing(t)
	toks := ref.tokens
	last := len(toks) - 1
	tests := []struct {
		name  string
		token uint64
		want  uint64
	}{
		{"first wraps to last", toks[0], toks[last]},
		{"second", toks[1], toks[0]},
		{"last", toks[last], toks[last-1]},
		{"between tokens", toks[0] + 1, toks[0]},
		{"zero wraps", 0, toks[last]},
		{"max", math.MaxUint64, toks[last]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Predecessor(tt.token); got != tt.want {
				t.Errorf("Predecessor(%#x) = %#x, want %#x", tt.token, got, tt.want)
			}
		})
	}
}

func TestMatchesReference(t *testing.T) {
	nodes := testNodes(3, 40, 0)
	nodes[3].Capacity = 2.5
	nodes[9].Capacity = 0.01
	r, ref := ring.New(nodes, 16), newRefRing(t, nodes, 16)
	if !slices.Equal(arcEnds(r.Arcs()), ref.tokens) {
		t.Fatal("ring tokens differ from the reference")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		pos := rng.Uint64()
		_, owner, _ := r.Successor(pos)
		if want := ref.owner[ref.succ(pos)]; owner != want {
			t.Fatalf("Successor(%#x) owner %s, want %s", pos, owner, want)
		}
	}
	for _, n := range nodes {
		if got, want := len(r.TokensOf(n.ID)), ring.TokenCount(n.Capacity, 16); got != want {
			t.Errorf("node %s holds %d tokens, want %d", n.ID, got, want)
		}
	}
}

func arcEnds(arcs []ring.Arc) []uint64 {
	out := make([]uint64, len(arcs))
	for i, a := range arcs {
		out[i] = a.End
	}
	return out
}

func TestArcsPartition(t *testing.T) {
	tests := []struct {
		name          string
		nodes, vnodes int
	}{
		{"one token", 1, 1},
		{"one node", 1, 8},
		{"two nodes", 2, 1},
		{"many", 50, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ring.New(testNodes(5, tt.nodes, 0), tt.vnodes)
			arcs := r.Arcs()
			if len(arcs) != tt.nodes*tt.vnodes {
				t.Fatalf("%d arcs, want one per token (%d)", len(arcs), tt.nodes*tt.vnodes)
			}
			if hi, lo := sumSizes(arcs); hi != 1 || lo != 0 {
				t.Errorf("arc sizes sum to %d*2^64 + %d, want 2^64", hi, lo)
			}
			for i, a := range arcs {
				if prev := arcs[(i+len(arcs)-1)%len(arcs)]; a.Start != prev.End {
					t.Fatalf("arc %d starts at %#x, previous ends at %#x", i, a.Start, prev.End)
				}
				if a.Start != r.Predecessor(a.End) {
					t.Fatalf("arc %d: Start %#x != Predecessor(End) %#x", i, a.Start, r.Predecessor(a.End))
				}
			}
			var total float64
			for _, s := range r.Shares() {
				total += s
			}
			if math.Abs(total-1) > 1e-9 {
				t.Errorf("shares sum to %v, want 1", total)
			}
		})
	}
}

func TestArcOf(t *testing.T) {
	r, ref := smallRing(t)
	toks := ref.tokens
	last := len(toks) - 1
	tests := []struct {
		name string
		pos  uint64
		want ring.Arc
	}{
		{"on a token", toks[3], ring.Arc{Start: toks[2], End: toks[3]}},
		{"just after a token", toks[2] + 1, ring.Arc{Start: toks[2], End: toks[3]}},
		{"zero, wrapping arc", 0, ring.Arc{Start: toks[last], End: toks[0]}},
		{"after last, wrapping arc", toks[last] + 1, ring.Arc{Start: toks[last], End: toks[0]}},
		{"on first, wrapping arc", toks[0], ring.Arc{Start: toks[last], End: toks[0]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.ArcOf(tt.pos)
			if got != tt.want || !ring.Contains(got, tt.pos) {
				t.Errorf("ArcOf(%#x) = %v, want %v containing it", tt.pos, got, tt.want)
			}
		})
	}
}

func TestContains(t *testing.T) {
	tests := []struct {
		name string
		arc  ring.Arc
		pos  uint64
		want bool
	}{
		{"inside", ring.Arc{Start: 10, End: 20}, 15, true},
		{"start excluded", ring.Arc{Start: 10, End: 20}, 10, false},
		{"end included", ring.Arc{Start: 10, End: 20}, 20, true},
		{"after end", ring.Arc{Start: 10, End: 20}, 21, false},
		{"wrapping, high", ring.Arc{Start: 20, End: 10}, math.MaxUint64, true},
		{"wrapping, zero", ring.Arc{Start: 20, End: 10}, 0, true},
		{"wrapping, end", ring.Arc{Start: 20, End: 10}, 10, true},
		{"wrapping, start excluded", ring.Arc{Start: 20, End: 10}, 20, false},
		{"wrapping, gap", ring.Arc{Start: 20, End: 10}, 15, false},
		{"full ring", ring.Arc{Start: 7, End: 7}, 7, true},
		{"full ring elsewhere", ring.Arc{Start: 7, End: 7}, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ring.Contains(tt.arc, tt.pos); got != tt.want {
				t.Errorf("Contains(%v, %#x) = %v, want %v", tt.arc, tt.pos, got, tt.want)
			}
		})
	}
}

func TestArcSize(t *testing.T) {
	tests := []struct {
		name     string
		arc      ring.Arc
		size     uint64
		fraction float64
	}{
		{"plain", ring.Arc{Start: 10, End: 20}, 10, 10 / 0x1p64},
		{"wrapping", ring.Arc{Start: math.MaxUint64 - 4, End: 5}, 10, 10 / 0x1p64},
		{"half", ring.Arc{Start: 0, End: 1 << 63}, 1 << 63, 0.5},
		{"full ring", ring.Arc{Start: 9, End: 9}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ring.Size(tt.arc); got != tt.size {
				t.Errorf("Size = %d, want %d", got, tt.size)
			}
			if got := ring.Fraction(tt.arc); got != tt.fraction {
				t.Errorf("Fraction = %v, want %v", got, tt.fraction)
			}
		})
	}
}

func TestEmptyRing(t *testing.T) {
	for name, r := range map[string]*ring.Ring{
		"New(nil)":       ring.New(nil, 0),
		"zero value":     new(ring.Ring),
		"only empty IDs": ring.New([]ring.Node{{ID: "", Capacity: 1}}, 0),
		"all removed": ring.New(testNodes(1, 2, 0), 4).
			Without(testNodes(1, 2, 0)[0].ID, testNodes(1, 2, 0)[1].ID),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, ok := r.Successor(42); ok {
				t.Error("Successor found a token")
			}
			if r.Len() != 0 || len(r.Nodes()) != 0 || r.Arcs() != nil || len(r.Shares()) != 0 {
				t.Error("empty ring reports members or arcs")
			}
			if r.PreferenceList(42, 3) != nil || r.Predecessor(42) != 0 || r.ArcOf(42) != (ring.Arc{}) {
				t.Error("empty ring answers lookups")
			}
			r.Walk(42, func(peer.ID) bool { t.Error("Walk visited a node"); return true })
			if r.VNodes() != ring.DefaultVNodes && r.VNodes() != 4 {
				t.Errorf("VNodes = %d", r.VNodes())
			}
		})
	}
}

func TestOneNodeRing(t *testing.T) {
	n := testNodes(2, 1, 1)[0]
	for _, vnodes := range []int{1, 8} {
		r := ring.New([]ring.Node{n}, vnodes)
		for _, pos := range []uint64{0, 1 << 63, math.MaxUint64} {
			if _, owner, ok := r.Successor(pos); !ok || owner != n.ID {
				t.Errorf("vnodes=%d: Successor(%#x) = %s, %v", vnodes, pos, owner, ok)
			}
			if pl := r.PreferenceList(pos, 3); !slices.Equal(pl, []peer.ID{n.ID}) {
				t.Errorf("vnodes=%d: PreferenceList = %v", vnodes, pl)
			}
		}
		if s := r.Shares()[n.ID]; s != 1 {
			t.Errorf("vnodes=%d: share %v, want 1", vnodes, s)
		}
		ra := r.ReplicaArcs(n.ID, 3)
		if len(ra) != 1 || !ring.Full(ra[0]) {
			t.Errorf("vnodes=%d: ReplicaArcs = %v, want the full ring", vnodes, ra)
		}
	}
	r := ring.New([]ring.Node{n}, 1)
	tok := r.TokensOf(n.ID)[0]
	if r.Predecessor(tok) != tok || !ring.Full(r.ArcOf(tok+1)) {
		t.Error("one-token ring: predecessor or arc is not the full ring")
	}
}

func TestNewMembers(t *testing.T) {
	ns := testNodes(4, 3, 3)
	moved := ns[1]
	moved.Zone = "elsewhere"
	moved.Capacity = 2
	r := ring.New([]ring.Node{ns[0], ns[1], ns[2], {ID: "", Capacity: 5}, moved}, 8)

	if r.Len() != 3 || r.VNodes() != 8 {
		t.Fatalf("Len = %d, VNodes = %d; want 3, 8", r.Len(), r.VNodes())
	}
	got := r.Nodes()
	if !slices.IsSortedFunc(got, func(a, b ring.Node) int { return compareIDs(a.ID, b.ID) }) {
		t.Error("Nodes not sorted by ID")
	}
	for _, n := range got {
		if n.ID == moved.ID && n != moved {
			t.Errorf("duplicate ID: kept %+v, want the last entry %+v", n, moved)
		}
	}
	if len(r.TokensOf(moved.ID)) != 16 {
		t.Errorf("replaced node holds %d tokens, want 16", len(r.TokensOf(moved.ID)))
	}
	if !r.Has(ns[0].ID) || r.Has("") || r.Has(testNodes(4, 5, 0)[4].ID) {
		t.Error("Has answers wrongly")
	}
	if r.TokensOf("nobody") != nil {
		t.Error("TokensOf a non-member is not nil")
	}
	got[0].Zone = "mutated"
	if r.Nodes()[0].Zone == "mutated" {
		t.Error("Nodes returned the ring's own slice")
	}
}

func compareIDs(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestVNodesClamp(t *testing.T) {
	r := ring.New(testNodes(1, 1, 0), ring.MaxTokens*2)
	if r.VNodes() != ring.MaxTokens || len(r.Arcs()) != ring.MaxTokens {
		t.Errorf("VNodes = %d with %d arcs, want both %d", r.VNodes(), len(r.Arcs()), ring.MaxTokens)
	}
}

func TestWithWithout(t *testing.T) {
	ns := testNodes(6, 12, 3)
	base := ring.New(ns[:10], 16)
	tests := []struct {
		name string
		got  *ring.Ring
		want []ring.Node
	}{
		{"with one", base.With(ns[10]), ns[:11]},
		{"with two", base.With(ns[10], ns[11]), ns},
		{"with existing replaces", base.With(ring.Node{ID: ns[0].ID, Zone: "z9", Capacity: 3}),
			append([]ring.Node{{ID: ns[0].ID, Zone: "z9", Capacity: 3}}, ns[1:10]...)},
		{"without one", base.Without(ns[4].ID), append(slices.Clone(ns[:4]), ns[5:10]...)},
		{"without non-member", base.Without(ns[11].ID), ns[:10]},
		{"without then with", base.Without(ns[4].ID).With(ns[4]), ns[:10]},
		{"nothing", base.With(), ns[:10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := ring.New(tt.want, 16)
			if !slices.Equal(tt.got.Nodes(), want.Nodes()) {
				t.Fatalf("nodes = %v, want %v", tt.got.Nodes(), want.Nodes())
			}
			if !slices.Equal(tt.got.Arcs(), want.Arcs()) {
				t.Fatal("arcs differ from a ring built with New")
			}
			for _, n := range want.Nodes() {
				if !slices.Equal(tt.got.TokensOf(n.ID), want.TokensOf(n.ID)) {
					t.Fatalf("tokens of %s differ", n.ID)
				}
			}
			if tt.got.VNodes() != 16 {
				t.Errorf("VNodes = %d, want 16", tt.got.VNodes())
			}
		})
	}
	if base.Len() != 10 {
		t.Errorf("base ring changed: %d nodes", base.Len())
	}
}
