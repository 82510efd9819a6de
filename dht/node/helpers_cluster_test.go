package node_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/membership"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Helpers of the cluster tests (package node_test, files
// *_cluster_test.go): expected placement, reads of single replicas,
// repair and convergence checks, and the bounds the tests assert.

// safety bounds a wait that is not a property under test: a net for a
// loaded 2-core machine under -race, not a measured figure.
const safety = 60 * time.Second

// slack multiplies a bound derived from the configuration, to absorb
// scheduling on a loaded machine under -race (the race detector slows
// code 2-20x, and Lifeguard stretches probe intervals on a node that
// misses acks).
const slack = 2

// opCtx returns a context for one phase of a test, bounded by safety.
func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), safety)
	t.Cleanup(cancel)
	return ctx
}

// memberCfg is the membership configuration the harness runs.
func memberCfg() membership.Config { return dhttest.NodeConfig().Membership }

// suspicionMax is the longest suspicion timeout in a cluster of n (no
// confirmations): SuspicionMaxTimeoutMult × SuspicionMult ×
// max(1, log10 n) × ProbeInterval (membership/lifeguard.go).
func suspicionMax(cfg membership.Config, n int) time.Duration {
	scale := math.Max(1, math.Log10(float64(n)))
	return time.Duration(float64(cfg.SuspicionMaxTimeoutMult*cfg.SuspicionMult) * scale * float64(cfg.ProbeInterval))
}

// dissemination bounds how long a dead or alive update takes to reach
// every member: its retransmissions (RetransmitMult × ceil(log10(n+1))
// gossip rounds), and as a backstop one push-pull round.
func dissemination(cfg membership.Config, n int) time.Duration {
	rounds := cfg.RetransmitMult * int(math.Ceil(math.Log10(float64(n+1))))
	return time.Duration(rounds)*cfg.GossipInterval + cfg.PushPullInterval
}

// detectionBound is how long, after a crash, every survivor takes to
// declare it dead, derived from the membership configuration:
//
//   - first probe: each member probes one member per ProbeInterval in a
//     shuffled round-robin, so some member probes the victim within
//     (n-1) intervals;
//   - the failed probe (direct, then indirect): one ProbeInterval;
//   - the suspicion timeout, at its maximum (no confirmations);
//   - dissemination of the death to every member;
//
// times slack.
func detectionBound(cfg membership.Config, n int) time.Duration {
	d := time.Duration(n-1)*cfg.ProbeInterval + cfg.ProbeInterval + suspicionMax(cfg, n) + dissemination(cfg, n)
	return slack * d
}

// healBound is how long membership takes to converge after a partition
// heals: each member push-pulls with one dead member every
// PushPullInterval, so within a few intervals one of them reaches across
// (2 intervals allowed), and the refutation (a higher incarnation) then
// spreads by gossip and push-pull; times slack.
func healBound(cfg membership.Config, n int) time.Duration {
	return slack * (2*cfg.PushPullInterval + dissemination(cfg, n))
}

// handoffBound is how long hinted handoff takes to empty every node's
// hints once their targets are alive again: a handoff round every
// HintInterval, each delivering up to HintBatch hints per target, each
// delivery bounded by RequestTimeout; plus the detection of the target as
// alive (dissemination); times slack.
func handoffBound(hints int64) time.Duration {
	cfg := dhttest.NodeConfig()
	rounds := 1 + int(hints)/cfg.Replica.HintBatch
	d := time.Duration(rounds)*cfg.Replica.HintInterval + cfg.Replica.RequestTimeout + dissemination(cfg.Membership, 8)
	return slack * d
}

// keys returns n distinct random keys named by prefix, seeded.
func keys(prefix string, n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%d-%x", prefix, i, r.Uint64())
	}
	return out
}

// keysWith returns n keys like keys does, keeping only those whose
// replica set on r satisfies ok.
func keysWith(r *ring.Ring, prefix string, n int, seed uint64, ok func(replicas []peer.ID) bool) [][]byte {
	var out [][]byte
	for i := 0; len(out) < n; i++ {
		for _, k := range keys(fmt.Sprintf("%s%d", prefix, i), n, seed) {
			if len(out) < n && ok(placementOf(r, k).replicas) {
				out = append(out, k)
			}
		}
	}
	return out
}

// expectedRing is the ring the given slots make, as every node should
// compute it: capacity 1, the harness's vnodes, the slots' zones.
func expectedRing(c *dhttest.Cluster, slots []int) *ring.Ring {
	nodes := make([]ring.Node, 0, len(slots))
	for _, i := range slots {
		nodes = append(nodes, ring.Node{ID: c.ID(i), Zone: c.Zone(i), Capacity: 1})
	}
	return ring.New(nodes, dhttest.NodeConfig().VNodes)
}

// placement is a key's owner (directory node) and replica set.
type placement struct {
	owner    peer.ID
	replicas []peer.ID
}

func placementOf(r *ring.Ring, key []byte) placement {
	pos := ring.KeyPos(key)
	_, owner, _ := r.Successor(pos)
	return placement{owner: owner, replicas: r.PreferenceList(pos, dhttest.NodeConfig().Replicas)}
}

// slotsOf maps peer IDs to slots.
func slotsOf(c *dhttest.Cluster, ids []peer.ID) []int {
	out := make([]int, 0, len(ids))
	for _, id := range ids {
		i, _ := c.Index(id)
		out = append(out, i)
	}
	return out
}

// checkLocate returns nil when every observer Locates every key at want's
// owner and replica set, else the first difference.
func checkLocate(ctx context.Context, c *dhttest.Cluster, observers []int, ks [][]byte, want *ring.Ring) error {
	for _, key := range ks {
		exp := placementOf(want, key)
		for _, o := range observers {
			loc, err := c.Node(o).Locate(ctx, key, node.LocateOptions{})
			if err != nil {
				return fmt.Errorf("slot %d: Locate(%q): %w", o, key, err)
			}
			if loc.Owner != exp.owner || !slices.Equal(loc.Replicas, exp.replicas) {
				return fmt.Errorf("slot %d: Locate(%q) = owner %v replicas %v, want owner %v replicas %v",
					o, key, slotsOf(c, []peer.ID{loc.Owner}), slotsOf(c, loc.Replicas),
					slotsOf(c, []peer.ID{exp.owner}), slotsOf(c, exp.replicas))
			}
		}
	}
	return nil
}

// storeRecord reads slot i's own replica record of key straight from its
// store (no quorum, no hints).
func storeRecord(ctx context.Context, c *dhttest.Cluster, i int, key []byte) (dht.Record, bool, error) {
	r, err := c.Store(i).Get(ctx, replica.DataKey(ring.KeyPos(key), key))
	if errors.Is(err, dht.ErrNotFound) {
		return dht.Record{}, false, nil
	}
	return r, err == nil, err
}

// liveValues returns the values of the versions that are not tombstones,
// sorted: the values of a read's siblings.
func liveValues(vs []dht.Version) []string {
	return liveAt(vs, math.MinInt64)
}

// storedValues returns the values of a stored record's versions that are
// live on the cluster's clock (neither tombstones nor expired), sorted.
func storedValues(c *dhttest.Cluster, rec dht.Record) []string {
	return liveAt(rec.Versions, c.Clock().Now().UnixNano())
}

func liveAt(vs []dht.Version, now int64) []string {
	var out []string
	for _, v := range vs {
		if v.LiveAt(now) {
			out = append(out, string(v.Value))
		}
	}
	sort.Strings(out)
	return out
}

// getValues reads key through slot i with quorum r and returns its
// sibling values, sorted; nil (and no error) when the key is not found.
func getValues(ctx context.Context, c *dhttest.Cluster, i int, key []byte, r int) ([]string, error) {
	res, err := c.Node(i).Get(ctx, key, node.ReadOptions{R: r})
	if errors.Is(err, dht.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return liveValues(res.Siblings), nil
}

// checkReads returns nil when every key in want reads back, through every
// given slot with quorum r, as exactly the sibling values want lists (nil:
// not found).
func checkReads(ctx context.Context, c *dhttest.Cluster, via []int, r int, want map[string][]string) error {
	for key, vals := range want {
		sorted := slices.Clone(vals)
		sort.Strings(sorted)
		for _, i := range via {
			got, err := getValues(ctx, c, i, []byte(key), r)
			if err != nil {
				return fmt.Errorf("slot %d: get %q (R=%d): %w", i, key, r, err)
			}
			if !slices.Equal(got, sorted) {
				return fmt.Errorf("slot %d: get %q (R=%d) = %q, want %q", i, key, r, got, sorted)
			}
		}
	}
	return nil
}

// totalHints sums Stats().Hints over the up slots.
func totalHints(ctx context.Context, c *dhttest.Cluster) int64 {
	var n int64
	for _, i := range c.Live() {
		n += c.Node(i).Stats(ctx).Hints
	}
	return n
}

// repairAll runs one Repair on every up slot, one after the other, so
// that every pair of replicas of every arc has been merged both ways.
func repairAll(ctx context.Context, c *dhttest.Cluster) error {
	for _, i := range c.Live() {
		if _, err := c.Node(i).Repair(ctx, nil); err != nil {
			return fmt.Errorf("slot %d: repair: %w", i, err)
		}
	}
	return nil
}

// checkRoots returns nil when, for every arc, the up slots that replicate
// it report the same Merkle root and there are `replicas` of them.
func checkRoots(ctx context.Context, c *dhttest.Cluster, replicas int) error {
	type report struct {
		slot int
		root uint64
	}
	byArc := map[ring.Arc][]report{}
	for _, i := range c.Live() {
		roots, err := c.Node(i).MerkleRoots(ctx)
		if err != nil {
			return fmt.Errorf("slot %d: roots: %w", i, err)
		}
		for arc, root := range roots {
			byArc[arc] = append(byArc[arc], report{i, root})
		}
	}
	if len(byArc) == 0 {
		return errors.New("no node reported any arc")
	}
	for arc, rs := range byArc {
		if len(rs) != replicas {
			return fmt.Errorf("arc %v is reported by %d slots %v, want %d", arc, len(rs), rs, replicas)
		}
		for _, r := range rs[1:] {
			if r.root != rs[0].root {
				return fmt.Errorf("arc %v: slot %d has root %x, slot %d has %x", arc, rs[0].slot, rs[0].root, r.slot, r.root)
			}
		}
	}
	return nil
}

// waitConverged drains hints and repairs until every arc's replicas agree,
// within bound.
func waitConverged(t *testing.T, c *dhttest.Cluster, bound time.Duration) time.Duration {
	t.Helper()
	ctx := opCtx(t)
	return dhttest.WaitFor(t, bound, "every arc's replicas to report equal Merkle roots after repair", func() error {
		if err := repairAll(ctx, c); err != nil {
			return err
		}
		return checkRoots(ctx, c, dhttest.NodeConfig().Replicas)
	})
}

// seesDown reports whether every slot of a sees every slot of b as
// suspect, dead or left.
func seesDown(c *dhttest.Cluster, a, b []int) error {
	for _, i := range a {
		for _, j := range b {
			if st := c.StateOf(i, j); st != dht.StateSuspect && st != dht.StateDead && st != dht.StateLeft {
				return fmt.Errorf("slot %d sees slot %d as %v", i, j, st)
			}
		}
	}
	return nil
}

// without returns s without the values in drop.
func without(s []int, drop ...int) []int {
	return slices.DeleteFunc(slices.Clone(s), func(x int) bool { return slices.Contains(drop, x) })
}
