package node_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"time"

	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/replica"
)

// Cluster tests of the write path under network faults: writes on both
// sides of a partition, quorums made of distinct nodes, and a write
// retried after a lost answer.

// TestClusterPartitionWrites: a 6-node cluster is split 3/3 and both
// sides write with W=1, so both acknowledge. After the partition heals,
// hints drain and every arc is repaired:
//   - every acknowledged write survives, as a sibling or through a causal
//     successor: keys written on both sides from the same pre-partition
//     context end with both sides' last values as siblings (a side's
//     earlier value is superseded by its own later write);
//   - a key deleted with its context before the partition stays deleted;
//   - a key deleted on one side during the partition, with nothing
//     written to it on the other, stays deleted;
//   - keys written on one side only are there.
//
// A side accepts writes to a key only while it holds one of the key's
// replicas (only a replica coordinates a write), so the keys are chosen
// with a replica on each side that writes them.
//
// It runs twice: writing as soon as the partition starts (every node still
// believes the other side alive; the replica calls fail and fall back) and
// after each side declared the other dead.
func TestClusterPartitionWrites(t *testing.T) {
	for _, detected := range []bool{false, true} {
		t.Run(fmt.Sprintf("detected=%v", detected), func(t *testing.T) { testPartitionWrites(t, detected) })
	}
}

func testPartitionWrites(t *testing.T, detected bool) {
	const n = 6
	nboth := 8
	if testing.Short() {
		nboth = 4
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 9})
	ctx := opCtx(t)
	a, b := []int{0, 1, 2}, []int{3, 4, 5}
	all3 := node.WriteOptions{W: 3}
	full := expectedRing(c, c.Live())
	onSide := func(side []int) func([]peer.ID) bool {
		return func(reps []peer.ID) bool { return len(without(side, slotsOf(c, reps)...)) < len(side) }
	}
	onBoth := func(reps []peer.ID) bool { return onSide(a)(reps) && onSide(b)(reps) }

	// Before the partition, every write reaches all three replicas.
	deleted := []byte("deleted-before")
	res, err := c.Node(0).Put(ctx, deleted, []byte("x"), all3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(1).Delete(ctx, deleted, node.WriteOptions{W: 3, Context: res.Context}); err != nil {
		t.Fatal(err)
	}
	sideDel := keysWith(full, "deleted-on-one-side", 1, 9, onSide(a))[0]
	sideDelRes, err := c.Node(2).Put(ctx, sideDel, []byte("y"), all3)
	if err != nil {
		t.Fatal(err)
	}
	both := keysWith(full, "both", nboth, 9, onBoth)
	base := make([]string, len(both)) // the context of each key's base value
	for k, key := range both {
		r, err := c.Node(k%n).Put(ctx, key, []byte("base"), all3)
		if err != nil {
			t.Fatal(err)
		}
		base[k] = r.Context
	}

	c.Partition(a, b)
	if detected {
		dhttest.WaitFor(t, detectionBound(memberCfg(), n), "each side to see the other down", func() error {
			return errors.Join(seesDown(c, a, b), seesDown(c, b, a))
		})
	}

	w1 := func(cctx string) node.WriteOptions { return node.WriteOptions{W: 1, Context: cctx} }
	want := map[string][]string{string(deleted): nil, string(sideDel): nil}
	for k, key := range both {
		viaA, viaB := a[k%len(a)], b[k%len(b)]
		r1, err := c.Node(viaA).Put(ctx, key, fmt.Appendf(nil, "a1-%d", k), w1(base[k]))
		if err != nil {
			t.Fatalf("side A put %q: %v", key, err)
		}
		if _, err := c.Node(a[(k+1)%len(a)]).Put(ctx, key, fmt.Appendf(nil, "a2-%d", k), w1(r1.Context)); err != nil {
			t.Fatalf("side A second put %q: %v", key, err)
		}
		if _, err := c.Node(viaB).Put(ctx, key, fmt.Appendf(nil, "b1-%d", k), w1(base[k])); err != nil {
			t.Fatalf("side B put %q: %v", key, err)
		}
		want[string(key)] = []string{fmt.Sprintf("a2-%d", k), fmt.Sprintf("b1-%d", k)}
	}
	if _, err := c.Node(a[0]).Delete(ctx, sideDel, w1(sideDelRes.Context)); err != nil {
		t.Fatalf("side A delete: %v", err)
	}
	for _, side := range [][]int{a, b} {
		key := string(keysWith(full, fmt.Sprintf("only-%d", side[0]), 1, 9, onSide(side))[0])
		if _, err := c.Node(side[1]).Put(ctx, []byte(key), []byte(key), w1("")); err != nil {
			t.Fatalf("one-side put %q: %v", key, err)
		}
		want[key] = []string{key}
	}

	c.Heal()
	c.WaitNormal(healBound(memberCfg(), n))
	hints := max(totalHints(ctx, c), 1)
	dhttest.WaitFor(t, handoffBound(hints), "hints to drain after the heal", func() error {
		if h := totalHints(ctx, c); h != 0 {
			return fmt.Errorf("%d hints left", h)
		}
		return nil
	})
	d := waitConverged(t, c, repairBound())
	t.Logf("replicas converged %v after the hints drained", d)
	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("after heal and repair: %v", err)
	}
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatalf("after heal and repair: %v", err)
	}

	// Past the tombstone grace, repair collects the tombstones (every
	// replica holds them now); the deleted keys stay deleted.
	c.Clock().Advance(dhttest.NodeConfig().Maintenance.TombstoneGrace + time.Second)
	dhttest.WaitFor(t, repairBound(), "the tombstones to be collected", func() error {
		if err := repairAll(ctx, c); err != nil {
			return err
		}
		for _, key := range [][]byte{deleted, sideDel} {
			for i := range n {
				if _, found, err := storeRecord(ctx, c, i, key); err != nil || found {
					return fmt.Errorf("slot %d still holds a record of %q (%v)", i, key, err)
				}
			}
		}
		return nil
	})
	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("after tombstone collection: %v", err)
	}
}

// TestClusterSloppyQuorumDistinctNodes: a write's W acknowledgements must
// come from W distinct nodes. A node cut off from every other node holds
// the only copy it can make, so a W=2 put through it must fail with a
// *node.QuorumError, both before the others are suspected (the natural
// replicas still look alive) and after they are declared dead.
func TestClusterSloppyQuorumDistinctNodes(t *testing.T) {
	const n = 4
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 10})
	ctx := opCtx(t)
	full := expectedRing(c, c.Live())
	// A writer that is not a replica of the key, so it can coordinate only
	// as a fallback.
	key := []byte("lonely")
	reps := slotsOf(c, placementOf(full, key).replicas)
	writer := without(c.Live(), reps...)[0]
	c.Partition([]int{writer})

	tests := []struct {
		name string
		wait func()
	}{
		{"before detection", func() {}},
		{"after detection", func() { waitDead(t, c, []int{writer}, without(c.Live(), writer)...) }},
	}
	for k, tt := range tests {
		tt.wait()
		val := fmt.Appendf(nil, "v%d", k)
		res, err := c.Node(writer).Put(ctx, key, val, node.WriteOptions{W: 2})
		var qe *node.QuorumError
		if !errors.As(err, &qe) && !errors.Is(err, node.ErrUnavailable) {
			t.Errorf("%s: W=2 put through an isolated node = %+v, %v; want a QuorumError or ErrUnavailable (no replica is reachable)",
				tt.name, res, err)
		}
	}
}

// TestClusterLostCoordinateResponse: a put whose coordinator served it
// but whose answer was lost (the connection dropped after the request)
// fails as outcome unknown; it is not retried at the next replica, which
// would give the one write a second version under another dot. A delete
// that then reads the key removes it for good.
func TestClusterLostCoordinateResponse(t *testing.T) {
	const n = 4
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 17})
	ctx := opCtx(t)
	key := []byte("retried")
	reps := slotsOf(c, placementOf(expectedRing(c, c.Live()), key).replicas)
	writer := without(c.Live(), reps...)[0] // not a replica: it asks one to coordinate
	c.LoseResponses(writer, replica.Protocol, 1)
	_, err := c.Node(writer).Put(ctx, key, []byte("v"), node.WriteOptions{W: 2})
	if left := c.PendingLosses(writer, replica.Protocol); left != 0 {
		t.Fatalf("the coordinate answer was not lost (%d losses pending)", left)
	}
	if !errors.Is(err, node.ErrOutcomeUnknown) {
		t.Fatalf("put with a lost answer: err = %v, want ErrOutcomeUnknown", err)
	}
	versions := 0
	for _, i := range reps {
		rec, _, err := storeRecord(ctx, c, i, key)
		if err != nil {
			t.Fatal(err)
		}
		versions = max(versions, len(rec.Versions))
	}
	if versions != 1 {
		t.Fatalf("a replica holds %d versions of one put, want 1: the write was retried elsewhere", versions)
	}
	got, err := getValues(ctx, c, writer, key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "v" {
		t.Errorf("one put of \"v\" reads as %q", got)
	}
	if _, err := c.Node(writer).Delete(ctx, key, node.WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	if got, err := getValues(ctx, c, writer, key, 3); err != nil || len(got) != 0 {
		t.Errorf("after the delete the key reads %q, %v; want not found", got, err)
	}
}
