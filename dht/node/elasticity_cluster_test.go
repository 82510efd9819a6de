package node_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/replica"
)

// Cluster tests of elasticity: a node leaving (decommission) and a node
// joining a loaded cluster. Background anti-entropy is off in both
// (Maintenance.Interval = 0), so data can only move through the transfer
// under test: the leaver's drain, the joiner's bootstrap.

// noBackgroundRepair turns off the anti-entropy loop on every node.
func noBackgroundRepair(_ int, cfg *node.Config) { cfg.Maintenance.Interval = 0 }

// load writes nkeys keys with W=2 through the up slots in turn and waits
// until each is on all three of its natural replicas (the third write
// finishes in the background). It returns the keys and values.
func load(t *testing.T, c *dhttest.Cluster, prefix string, nkeys int) map[string][]string {
	t.Helper()
	ctx := opCtx(t)
	live := c.Live()
	want := map[string][]string{}
	for k, key := range keys(prefix, nkeys, uint64(nkeys)) {
		val := fmt.Sprintf("v%d", k)
		if _, err := c.Node(live[k%len(live)]).Put(ctx, key, []byte(val), node.WriteOptions{W: 2}); err != nil {
			t.Fatalf("load %q: %v", key, err)
		}
		want[string(key)] = []string{val}
	}
	dhttest.WaitFor(t, safety, "every loaded key to be on its three replicas", func() error {
		return checkStores(ctx, c, want)
	})
	return want
}

// TestClusterLeave: a node that leaves hands its data off: once Leave
// returns, every key is on all three of its replicas in the ring without
// the leaver (read from their stores), every remaining node lists the
// leaver as left, and every key reads back with R=2 through every
// remaining node.
func TestClusterLeave(t *testing.T) {
	const n, leaver = 5, 2
	nkeys := 200
	if testing.Short() {
		nkeys = 60
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 13, Config: noBackgroundRepair})
	ctx := opCtx(t)
	want := load(t, c, "leave", nkeys)
	held, err := c.Node(leaver).KeyCount(ctx)
	if err != nil || held == 0 {
		t.Fatalf("the leaver holds %d keys (%v); the test needs some", held, err)
	}

	if err := c.Node(leaver).Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if why := c.Node(leaver).NotReady(); why == "" {
		t.Error("the node reports ready after leaving")
	}
	c.Kill(leaver) // the process exits after a leave
	rest := c.Live()
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatalf("after the leave, a new replica lacks a key the leaver held: %v", err)
	}
	dhttest.WaitFor(t, healBound(memberCfg(), n), "every remaining node to list the leaver as left", func() error {
		for _, i := range rest {
			if st := c.StateOf(i, leaver); st != dht.StateLeft {
				return fmt.Errorf("slot %d lists the leaver as %v", i, st)
			}
		}
		return nil
	})
	if err := checkReads(ctx, c, rest, 2, want); err != nil {
		t.Fatalf("after the leave: %v", err)
	}
}

// TestClusterJoin: a node joining a loaded cluster becomes Normal only
// after it pulled its arcs: every record it stores arrived while it was
// still joining, and once Normal it holds every key it replicates on the
// new ring; every key then reads back through it with R=2.
func TestClusterJoin(t *testing.T) {
	const n = 4
	nkeys := 500
	if testing.Short() {
		nkeys = 150
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 14, Config: noBackgroundRepair})
	ctx := opCtx(t)
	want := load(t, c, "join", nkeys)

	j := c.Add()
	var mu sync.Mutex
	early, late := 0, []string(nil)
	c.Store(j).OnWrite(func(sk []byte) {
		_, key, ok := replica.ParseDataKey(sk)
		if !ok {
			return
		}
		// Before Start has published the node it is still starting, and
		// a joining node starts Joining.
		nd := c.Node(j)
		ready := nd != nil && nd.NotReady() == ""
		mu.Lock()
		defer mu.Unlock()
		if ready {
			late = append(late, string(key))
		} else {
			early++
		}
	})
	c.Start(j)
	d := c.WaitNodeNormal(j, safety)
	t.Logf("the joiner became Normal %v after Join returned", d)

	c.Store(j).OnWrite(nil) // reads below may repair: no longer the join's writes
	mu.Lock()
	t.Logf("the joiner stored %d records while joining, %d after", early, len(late))
	if len(late) > 0 {
		t.Errorf("the joiner stored %d records after it became Normal, e.g. %q: it served before its data arrived", len(late), late[0])
	}
	mu.Unlock()
	if err := checkJoinerHolds(ctx, c, j, want); err != nil {
		t.Fatal(err)
	}
	if err := checkReads(ctx, c, []int{j}, 2, want); err != nil {
		t.Fatalf("reading through the joiner: %v", err)
	}
}

// checkJoinerHolds returns nil when slot j's store holds, with its value,
// every key of want that j replicates on the ring of the up slots.
func checkJoinerHolds(ctx context.Context, c *dhttest.Cluster, j int, want map[string][]string) error {
	r := expectedRing(c, c.Live())
	owned := 0
	for key, vals := range want {
		if !slices.Contains(placementOf(r, []byte(key)).replicas, c.ID(j)) {
			continue
		}
		owned++
		rec, found, err := storeRecord(ctx, c, j, []byte(key))
		if err != nil || !found || fmt.Sprint(storedValues(c, rec)) != fmt.Sprint(vals) {
			return fmt.Errorf("the joiner, a replica of %q, holds %q (found %v, %v) once Normal, want %q",
				key, storedValues(c, rec), found, err, vals)
		}
	}
	if owned == 0 {
		return fmt.Errorf("the joiner replicates none of %d keys: nothing was checked", len(want))
	}
	return nil
}

// TestClusterElasticityUnderWrites: while three clients keep writing
// (W=2) through the other nodes, one node joins and then another leaves.
// Every acknowledged write then reads back with R=2 through every node,
// and once repaired is on all three of its replicas. (Background
// anti-entropy is on: writes coordinated by a node that has not yet heard
// of a join or leave reach the old replicas only, and repair moves them;
// see the report on Drain.)
func TestClusterElasticityUnderWrites(t *testing.T) {
	const n, leaver = 5, 4
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 15})
	ctx := opCtx(t)
	want := load(t, c, "elastic", 200)

	var mu sync.Mutex
	var stop atomic.Bool
	var wg sync.WaitGroup
	writers := []int{0, 1, 2}
	for _, w := range writers {
		nd := c.Node(w)
		wg.Go(func() {
			for k := 0; !stop.Load(); k++ {
				key := fmt.Sprintf("during-%d-%d", w, k)
				if _, err := nd.Put(ctx, []byte(key), []byte(key), node.WriteOptions{W: 2}); err == nil {
					mu.Lock()
					want[key] = []string{key}
					mu.Unlock()
				}
			}
		})
	}
	j := c.Add()
	c.Start(j)
	c.WaitNodeNormal(j, safety)
	err := c.Node(leaver).Leave(ctx)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.Kill(leaver)
	t.Logf("%d keys acknowledged", len(want))

	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("after the join and the leave: %v", err)
	}
	waitConverged(t, c, repairBound())
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatalf("after repair: %v", err)
	}
}
