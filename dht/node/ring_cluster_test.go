package node_test

import (
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/ring"
)

// Cluster tests of the ring, gossip membership and routing, on in-process
// clusters (dht/dhttest): real nodes, libp2p mocknet, dht/p2p.

// TestClusterLocateAgrees: once a 16-node cluster in three zones has
// converged, every node locates each of 200 random keys at the same owner
// and replica set, and that is the placement the ring of the 16 members
// gives (zone-aware preference list).
func TestClusterLocateAgrees(t *testing.T) {
	const n = 16
	nkeys := 200
	if testing.Short() {
		nkeys = 50
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 1, Zones: []string{"z0", "z1", "z2"}})
	ctx := opCtx(t)
	ks := keys("locate", nkeys, 1)
	want := expectedRing(c, c.Live())
	d := dhttest.WaitFor(t, safety, "every node to locate every key at the ring's placement", func() error {
		return checkLocate(ctx, c, c.Live(), ks, want)
	})
	t.Logf("%d nodes agree on %d keys after %v", n, nkeys, d)
	// The replica sets span the three zones.
	for _, key := range ks[:10] {
		zones := map[string]bool{}
		for _, i := range slotsOf(c, placementOf(want, key).replicas) {
			zones[c.Zone(i)] = true
		}
		if len(zones) != 3 {
			t.Errorf("replicas of %q span zones %v, want 3 zones", key, zones)
		}
	}
}

// TestClusterKillThreeLocateAgrees: after 3 of 16 nodes crash, every
// survivor declares them dead and locates every key at the placement of
// the ring of the 13 survivors, within the detection bound derived from
// the membership configuration (detectionBound: with LocalTiming's 100ms
// probes at N=16, (15+1)·100ms + 2.89s max suspicion + 1.24s
// dissemination = 5.7s, times slack 2 = 11.4s).
func TestClusterKillThreeLocateAgrees(t *testing.T) {
	const n = 16
	nkeys := 200
	if testing.Short() {
		nkeys = 50
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 2})
	ctx := opCtx(t)
	ks := keys("kill3", nkeys, 2)
	dhttest.WaitFor(t, safety, "every node to locate every key", func() error {
		return checkLocate(ctx, c, c.Live(), ks, expectedRing(c, c.Live()))
	})

	victims := []int{3, 8, 13}
	for _, v := range victims {
		c.Kill(v)
	}
	survivors := c.Live()
	want := expectedRing(c, survivors)
	bound := detectionBound(memberCfg(), n)
	d := dhttest.WaitFor(t, bound, fmt.Sprintf("survivors to agree on the new owners (bound %v)", bound), func() error {
		if err := seesDown(c, survivors, victims); err != nil {
			return err
		}
		for _, i := range survivors {
			for _, v := range victims {
				if st := c.StateOf(i, v); st != dht.StateDead {
					return fmt.Errorf("slot %d sees victim %d as %v", i, v, st)
				}
			}
		}
		return checkLocate(ctx, c, survivors, ks, want)
	})
	t.Logf("survivors agreed on the new owners %v after the kills (bound %v)", d, bound)
}

// TestClusterPartitionHeal: a 6-node cluster split 3/3 sees the other
// side suspect or dead within the detection bound; after Heal every node
// sees every node Normal again within healBound (2 push-pull intervals
// plus dissemination, times slack).
func TestClusterPartitionHeal(t *testing.T) {
	const n = 6
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 3})
	a, b := []int{0, 1, 2}, []int{3, 4, 5}
	c.Partition(a, b)
	bound := detectionBound(memberCfg(), n)
	d := dhttest.WaitFor(t, bound, "each side to see the other suspect or dead", func() error {
		if err := seesDown(c, a, b); err != nil {
			return err
		}
		return seesDown(c, b, a)
	})
	t.Logf("partition detected after %v (bound %v)", d, bound)
	// Each side still sees itself Normal.
	for _, side := range [][]int{a, b} {
		for _, i := range side {
			for _, j := range side {
				if st := c.StateOf(i, j); st != dht.StateNormal {
					t.Errorf("slot %d sees slot %d on its own side as %v", i, j, st)
				}
			}
		}
	}

	c.Heal()
	hb := healBound(memberCfg(), n)
	d = c.WaitNormal(hb)
	t.Logf("membership converged %v after heal (bound %v)", d, hb)
}

// TestClusterRestartSameTokens: a node that crashes and restarts with the
// same identity (and store) rejoins with the same peer ID and the same
// tokens, and is Normal everywhere; every node's ring lists it with the
// token count and share it had before.
func TestClusterRestartSameTokens(t *testing.T) {
	const n, victim = 5, 3
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 4})
	id := c.ID(victim)
	before := shareOf(t, c.Node(0).Ring(), id)
	if want := ring.TokenCount(1, dhttest.NodeConfig().VNodes); before.Tokens != want {
		t.Fatalf("slot %d holds %d tokens before the restart, want %d", victim, before.Tokens, want)
	}

	c.Kill(victim)
	dhttest.WaitFor(t, detectionBound(memberCfg(), n), "the victim to be declared dead", func() error {
		for _, i := range c.Live() {
			if st := c.StateOf(i, victim); st != dht.StateDead {
				return fmt.Errorf("slot %d sees the victim as %v", i, st)
			}
		}
		return nil
	})
	c.Restart(victim)

	if got := c.Node(victim).Self(); got != id {
		t.Fatalf("restarted slot is %s, was %s", got, id)
	}
	for _, i := range c.Live() {
		after := shareOf(t, c.Node(i).Ring(), id)
		if after.State != dht.StateNormal {
			t.Errorf("slot %d lists the restarted node as %v", i, after.State)
		}
		if after.Tokens != before.Tokens || after.Share != before.Share || after.Zone != before.Zone {
			t.Errorf("slot %d lists the restarted node with %d tokens, share %.6f, zone %q; before: %d, %.6f, %q",
				i, after.Tokens, after.Share, after.Zone, before.Tokens, before.Share, before.Zone)
		}
	}
}

// shareOf returns id's entry in a node's ring report.
func shareOf(t *testing.T, shares []node.Share, id fmt.Stringer) node.Share {
	t.Helper()
	for _, s := range shares {
		if s.ID.String() == id.String() {
			return s
		}
	}
	t.Fatalf("%s is not in the ring %v", id, shares)
	return node.Share{}
}
