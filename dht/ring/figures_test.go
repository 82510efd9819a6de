package ring_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// Figures. Peer IDs are real Ed25519 identity peer IDs derived from fixed
// seeds (ringtest.PeerID), so every figure is deterministic.

// balanceTarget is the largest share over the mean share that a ring of
// equal nodes may reach with DefaultVNodes.
const balanceTarget = 1.25

var (
	balanceSizes = []int{10, 100, 1000}
	balanceSeeds = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	vnodeChoices = []int{32, 64, 96, 128, 160, 192, 224, 256}
)

// maxOverMean returns the largest share of r over the mean share.
func maxOverMean(r *ring.Ring) float64 {
	var top float64
	for _, s := range r.Shares() {
		top = max(top, s)
	}
	return top * float64(r.Len())
}

// TestBalanceFigures measures largest/mean share for each vnodes choice,
// ring size and seed, logs the table, and checks that DefaultVNodes is the
// smallest choice meeting balanceTarget everywhere. With -short or -race
// it runs three seeds and checks only that DefaultVNodes meets the target.
func TestBalanceFigures(t *testing.T) {
	reduced := testing.Short() || raceEnabled
	seeds := balanceSeeds
	if reduced {
		seeds = seeds[:3]
	}
	var log strings.Builder
	fmt.Fprintf(&log, "largest/mean share, worst over seeds %v (per seed)\n", seeds)
	smallest := 0
	for _, vnodes := range vnodeChoices {
		fmt.Fprintf(&log, "vnodes=%-4d", vnodes)
		meets := true
		for _, size := range balanceSizes {
			var worst float64
			var per []string
			for _, seed := range seeds {
				m := maxOverMean(ring.New(testNodes(seed, size, 0), vnodes))
				worst = max(worst, m)
				per = append(per, fmt.Sprintf("%.3f", m))
			}
			meets = meets && worst <= balanceTarget
			fmt.Fprintf(&log, "  N=%-5d %.3f (%s)", size, worst, strings.Join(per, " "))
			if vnodes == ring.DefaultVNodes && worst > balanceTarget {
				t.Errorf("DefaultVNodes at N=%d: largest/mean share %.3f, want <= %.2f", size, worst, balanceTarget)
			}
		}
		fmt.Fprintln(&log)
		if meets && smallest == 0 {
			smallest = vnodes
		}
	}
	t.Log("\n" + log.String())
	if !reduced && smallest != ring.DefaultVNodes {
		t.Errorf("smallest vnodes meeting %.2f is %d, DefaultVNodes is %d", balanceTarget, smallest, ring.DefaultVNodes)
	}
}

// TestCapacityFigures checks that a node's share follows its capacity: a
// node of capacity c owns about c/sum(capacities) of the ring, within 15%
// or three standard deviations of its share (1/sqrt(tokens)), whichever is
// wider: a node of capacity 0.5 holds only 128 tokens.
func TestCapacityFigures(t *testing.T) {
	tests := []struct {
		size     int
		capacity float64
		heavy    int // how many nodes get capacity
	}{
		{10, 2, 2},
		{100, 2, 5},
		{1000, 2, 10},
		{100, 0.5, 5},
		{100, 4, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("N=%d/capacity=%v", tt.size, tt.capacity), func(t *testing.T) {
			nodes := testNodes(1, tt.size, 0)
			total := float64(tt.size - tt.heavy)
			for i := range tt.heavy {
				nodes[i].Capacity = tt.capacity
				total += tt.capacity
			}
			shares := ring.New(nodes, 0).Shares()
			tol := max(0.15, 3/math.Sqrt(float64(ring.TokenCount(tt.capacity, ring.DefaultVNodes))))
			for _, n := range nodes[:tt.heavy] {
				ratio := shares[n.ID] / (tt.capacity / total)
				t.Logf("node %s: share/expected %.3f, share/mean share %.3f",
					n.ID.ShortString(), ratio, shares[n.ID]*float64(tt.size))
				if ratio < 1-tol || ratio > 1+tol {
					t.Errorf("node %s of capacity %v owns %.3f of its expected share, want within %.2f", n.ID, tt.capacity, ratio, tol)
				}
			}
		})
	}
}

// movementKeys returns the positions of 200,000 keys "key-0", "key-1", ...
func movementKeys() []uint64 {
	out := make([]uint64, 200_000)
	for i := range out {
		out[i] = ring.KeyPos([]byte(fmt.Sprintf("key-%d", i)))
	}
	return out
}

// TestMovementFigures joins one node to rings of N and measures the
// fraction of keys whose owner changes (ideal 1/(N+1)) and whose
// preference list (n=3) changes. Consistent hashing must move keys only to
// the joiner and change only lists that then contain it. Each figure is
// the mean over several joiners, which averages out the joiner's own share
// variance (about 1/sqrt(vnodes) = 6%); individual joins are logged.
func TestMovementFigures(t *testing.T) {
	keys := movementKeys()
	const joiners = 6
	for _, size := range []int{10, 100} {
		for _, zones := range []int{0, 3} {
			t.Run(fmt.Sprintf("N=%d/zones=%d", size, zones), func(t *testing.T) {
				base := ring.New(testNodes(1, size, zones), 0)
				extra := testNodes(2, joiners, zones)
				var ownerSum, listSum float64
				var per []string
				for _, j := range extra {
					owner, list := movement(t, base, base.With(j), j.ID, keys)
					ownerSum += owner
					listSum += list
					per = append(per, fmt.Sprintf("%.4f/%.4f", owner, list))
				}
				ideal := 1 / float64(size+1)
				owner, list := ownerSum/joiners, listSum/joiners
				t.Logf("owner moved %.4f (ideal %.4f, x%.3f); list (n=3) changed %.4f (3/(N+1) = %.4f, x%.3f); per joiner owner/list: %s",
					owner, ideal, owner/ideal, list, 3*ideal, list/(3*ideal), strings.Join(per, " "))
				if owner < 0.9*ideal || owner > 1.1*ideal {
					t.Errorf("owner moved for %.4f of keys, want within 10%% of %.4f", owner, ideal)
				}
				if list < 0.8*3*ideal || list > 1.2*3*ideal {
					t.Errorf("preference list changed for %.4f of keys, want within 20%% of %.4f", list, 3*ideal)
				}
			})
		}
	}
}

// movement returns the fractions of keys whose owner and whose preference
// list (n=3) differ between before and after, and checks that every change
// involves joiner.
func movement(t *testing.T, before, after *ring.Ring, joiner peer.ID, keys []uint64) (owner, list float64) {
	t.Helper()
	lists := func(r *ring.Ring) func(uint64) []peer.ID {
		memo := map[uint64][]peer.ID{} // per successor token
		return func(pos uint64) []peer.ID {
			tok, _, _ := r.Successor(pos)
			pl, ok := memo[tok]
			if !ok {
				pl = r.PreferenceList(tok, 3)
				memo[tok] = pl
			}
			return pl
		}
	}
	listBefore, listAfter := lists(before), lists(after)
	var moved, changed int
	for _, k := range keys {
		_, o1, _ := before.Successor(k)
		_, o2, _ := after.Successor(k)
		if o1 != o2 {
			moved++
			if o2 != joiner {
				t.Fatalf("key at %#x moved from %s to %s, not to the joiner", k, o1, o2)
			}
		}
		if l1, l2 := listBefore(k), listAfter(k); !slices.Equal(l1, l2) {
			changed++
			if !slices.Contains(l2, joiner) {
				t.Fatalf("list at %#x changed from %v to %v without the joiner", k, l1, l2)
			}
		}
	}
	return float64(moved) / float64(len(keys)), float64(changed) / float64(len(keys))
}

// TestZoneFigures checks every preference list (n=3) of a 100-node ring
// with DefaultVNodes for zone coverage: min(3, zones) zones each.
func TestZoneFigures(t *testing.T) {
	for _, zones := range []int{0, 1, 2, 3, 4} {
		t.Run(fmt.Sprintf("zones=%d", zones), func(t *testing.T) {
			r := ring.New(testNodes(1, 100, zones), 0)
			want := min(3, max(zones, 1))
			counts := map[int]int{}
			for _, a := range r.Arcs() {
				counts[zonesOf(r, r.PreferenceList(a.End, 3))]++
			}
			t.Logf("lists by zones covered: %v over %d arcs", counts, len(r.Arcs()))
			if counts[want] != len(r.Arcs()) {
				t.Errorf("lists by zones covered: %v, want all %d with %d", counts, len(r.Arcs()), want)
			}
		})
	}
}
