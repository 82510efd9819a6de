package ring_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// FuzzPreferenceList builds rings from arbitrary member lists (duplicate
// IDs, odd capacities, uneven zones) and checks lookups against the
// reference model and the package's invariants. Every 3 bytes of members
// is one node: ID index, zone (0 = unset), capacity in 64ths.
func FuzzPreferenceList(f *testing.F) {
	f.Add([]byte{0, 0, 64}, uint64(0), uint8(3), uint8(4))
	f.Add([]byte{0, 1, 64, 1, 2, 64, 2, 3, 64, 3, 1, 64}, uint64(1<<63), uint8(3), uint8(8))
	f.Add([]byte{0, 1, 64, 1, 1, 255, 2, 2, 1, 0, 3, 0}, uint64(42), uint8(5), uint8(2))
	f.Add([]byte{5, 0, 128, 6, 0, 32, 7, 0, 0, 8, 4, 200, 9, 4, 64}, ^uint64(0), uint8(1), uint8(1))
	f.Add([]byte{}, uint64(7), uint8(3), uint8(4))
	ids := make([]peer.ID, 64)
	for i, nd := range testNodes(21, len(ids), 0) {
		ids[i] = nd.ID
	}
	f.Fuzz(func(t *testing.T, members []byte, pos uint64, n, vnodes uint8) {
		nodes := fuzzNodes(ids, members)
		v := int(vnodes%16) + 1
		r := ring.New(nodes, v)
		if r.Len() != len(nodes) {
			t.Fatalf("Len = %d, want %d", r.Len(), len(nodes))
		}
		pl := r.PreferenceList(pos, int(n))
		if len(nodes) == 0 || n == 0 {
			if pl != nil {
				t.Fatalf("PreferenceList = %v, want nil", pl)
			}
			return
		}
		ref := newRefRing(t, nodes, v)
		if want := ref.preference(pos, int(n)); !slices.Equal(pl, want) {
			t.Fatalf("PreferenceList = %v, want %v", pl, want)
		}
		if a := r.ArcOf(pos); !ring.Contains(a, pos) {
			t.Fatalf("ArcOf(%#x) = %v does not contain it", pos, a)
		}
		owner := pl[0]
		arcs := r.ReplicaArcs(owner, int(n))
		if !slices.ContainsFunc(arcs, func(a ring.Arc) bool { return ring.Contains(a, pos) }) {
			t.Fatalf("owner %s: no replica arc contains %#x: %v", owner, pos, arcs)
		}
	})
}

// fuzzNodes decodes members into nodes, keeping the last entry of each ID
// as New does, in first-appearance order.
func fuzzNodes(ids []peer.ID, members []byte) []ring.Node {
	var out []ring.Node
	for i := 0; i+3 <= len(members) && len(out) < 40; i += 3 {
		nd := ring.Node{ID: ids[int(members[i])%len(ids)], Capacity: float64(members[i+2]) / 64}
		if z := members[i+1] % 5; z != 0 {
			nd.Zone = "z" + strconv.Itoa(int(z))
		}
		if j := slices.IndexFunc(out, func(o ring.Node) bool { return o.ID == nd.ID }); j >= 0 {
			out[j] = nd
			continue
		}
		out = append(out, nd)
	}
	return out
}
