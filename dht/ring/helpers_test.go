package ring_test

import (
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// refRing is a naive model of a ring, built only from ring.Tokens and
// ring.TokenCount, against which the real one is checked.
type refRing struct {
	tokens []uint64
	owner  []peer.ID
	zone   map[peer.ID]string
	nodes  int
}

func newRefRing(t testing.TB, nodes []ring.Node, vnodes int) *refRing {
	t.Helper()
	type tok struct {
		t  uint64
		id peer.ID
	}
	var all []tok
	ref := &refRing{zone: map[peer.ID]string{}}
	for _, n := range nodes {
		if _, dup := ref.zone[n.ID]; dup {
			t.Fatalf("refRing: duplicate node %s", n.ID)
		}
		ref.zone[n.ID] = n.Zone
		for _, x := range ring.Tokens(n.ID, ring.TokenCount(n.Capacity, vnodes)) {
			all = append(all, tok{x, n.ID})
		}
	}
	ref.nodes = len(ref.zone)
	slices.SortFunc(all, func(a, b tok) int {
		if a.t != b.t {
			if a.t < b.t {
				return -1
			}
			return 1
		}
		t.Fatalf("refRing: token collision %x", a.t)
		return 0
	})
	for _, x := range all {
		ref.tokens = append(ref.tokens, x.t)
		ref.owner = append(ref.owner, x.id)
	}
	return ref
}

// succ returns the index of the first token at or after pos, by linear scan.
func (r *refRing) succ(pos uint64) int {
	for i, t := range r.tokens {
		if t >= pos {
			return i
		}
	}
	return 0
}

// walk returns the distinct owners in clockwise order from pos.
func (r *refRing) walk(pos uint64) []peer.ID {
	var out []peer.ID
	start := r.succ(pos)
	for k := range r.tokens {
		id := r.owner[(start+k)%len(r.tokens)]
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// preference is the preference-list algorithm of the package doc, walking
// the whole ring without shortcuts.
func (r *refRing) preference(pos uint64, n int) []peer.ID {
	n = min(n, r.nodes)
	var taken, skipped []peer.ID
	zones := map[string]bool{}
	for _, id := range r.walk(pos) {
		if len(taken) == n {
			break
		}
		if zones[r.zone[id]] {
			skipped = append(skipped, id)
			continue
		}
		zones[r.zone[id]] = true
		taken = append(taken, id)
	}
	return append(taken, skipped[:n-len(taken)]...)
}

// idCache memoises ringtest IDs, which cost an Ed25519 key derivation each.
var idCache sync.Map // seed uint64 -> []peer.ID

// testNodes returns count nodes of capacity 1 from seed, in zones like
// ringtest.Nodes, with cached IDs.
func testNodes(seed uint64, count, zones int) []ring.Node {
	var ids []peer.ID
	if v, ok := idCache.Load(seed); ok {
		ids = v.([]peer.ID)
	}
	if len(ids) < count {
		ids = ringtest.PeerIDs(seed, max(count, 1024))
		idCache.Store(seed, ids)
	}
	ns := make([]ring.Node, count)
	for i := range ns {
		ns[i] = ring.Node{ID: ids[i], Capacity: 1}
		if zones > 0 {
			ns[i].Zone = "z" + strconv.Itoa(i%zones)
		}
	}
	return ns
}

// sumSizes adds the sizes of arcs in 128 bits; a full arc counts 2^64.
func sumSizes(arcs []ring.Arc) (hi, lo uint64) {
	for _, a := range arcs {
		if ring.Full(a) {
			hi++
			continue
		}
		var c uint64
		lo, c = bits.Add64(lo, ring.Size(a), 0)
		hi += c
	}
	return hi, lo
}

// zonesOf returns the number of distinct zones among ids.
func zonesOf(r *ring.Ring, ids []peer.ID) int {
	zone := map[peer.ID]string{}
	for _, n := range r.Nodes() {
		zone[n.ID] = n.Zone
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[zone[id]] = true
	}
	return len(seen)
}
