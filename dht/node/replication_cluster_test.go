package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Cluster tests of replication and consistency: N=3, W=2, R=2 unless a
// test says otherwise.

// TestClusterKillOneReplica: with one of 5 nodes down, every W=2 put
// succeeds and reads back with R=2 through every survivor; once the node
// restarts, every node's hints drain to 0 within handoffBound, and after
// a Repair on each node every arc's replicas report equal Merkle roots.
func TestClusterKillOneReplica(t *testing.T) {
	const n, victim = 5, 4
	nkeys := 100
	if testing.Short() {
		nkeys = 40
	}
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 5})
	ctx := opCtx(t)
	c.Kill(victim)
	live := c.Live()

	// The first half of the writes runs before the survivors notice the
	// crash (the replica writes fail and fall back), the second half after
	// they declared it dead (the fallbacks are chosen up front).
	want := map[string][]string{}
	for k, key := range keys("kill1", nkeys, 5) {
		if k == nkeys/2 {
			waitDead(t, c, live, victim)
		}
		via := live[k%len(live)]
		val := fmt.Sprintf("v%d", k)
		res, err := c.Node(via).Put(ctx, key, []byte(val), node.WriteOptions{W: 2})
		if err != nil {
			t.Fatalf("put %q via slot %d with slot %d down: %v", key, via, victim, err)
		}
		if res.Acks < 2 {
			t.Fatalf("put %q acknowledged with %d acks, want >= 2", key, res.Acks)
		}
		want[string(key)] = []string{val}
	}
	if err := checkReads(ctx, c, live, 2, want); err != nil {
		t.Fatalf("reading back with one node down: %v", err)
	}
	hints := totalHints(ctx, c)
	if hints == 0 {
		t.Fatalf("no node holds a hint for the down node after %d writes", nkeys)
	}

	c.Restart(victim)
	hb := handoffBound(hints)
	d := dhttest.WaitFor(t, hb, fmt.Sprintf("%d hints to drain (bound %v)", hints, hb), func() error {
		if h := totalHints(ctx, c); h != 0 {
			return fmt.Errorf("%d hints left", h)
		}
		return nil
	})
	t.Logf("%d hints drained %v after the restart (bound %v)", hints, d, hb)
	rb := repairBound()
	d = waitConverged(t, c, rb)
	t.Logf("replicas converged after repair in %v (bound %v)", d, rb)
	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("reading back after the restart: %v", err)
	}
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatal(err)
	}
}

// waitDead waits until every observer sees every victim dead, within the
// detection bound.
func waitDead(t *testing.T, c *dhttest.Cluster, observers []int, victims ...int) {
	t.Helper()
	n := c.N()
	dhttest.WaitFor(t, detectionBound(memberCfg(), n), fmt.Sprintf("slots %v to be declared dead", victims), func() error {
		for _, i := range observers {
			for _, v := range victims {
				if st := c.StateOf(i, v); st != dht.StateDead {
					return fmt.Errorf("slot %d sees slot %d as %v", i, v, st)
				}
			}
		}
		return nil
	})
}

// repairBound bounds convergence by explicit repair once handoff is done:
// one Repair pass over every node merges every pair of replicas both
// ways; a few passes are allowed (background read repair and handoff may
// interleave), each bounded by the anti-entropy CallTimeout per peer.
func repairBound() time.Duration {
	return slack * 3 * dhttest.NodeConfig().Maintenance.CallTimeout
}

// checkStores returns nil when each key of want is held, with exactly
// want's live values, by every one of its natural replicas on the ring of
// the up slots, read straight from their stores. A key whose want is empty
// must have no live value there (a tombstone or no record).
func checkStores(ctx context.Context, c *dhttest.Cluster, want map[string][]string) error {
	r := expectedRing(c, c.Live())
	for key, vals := range want {
		wantVals := slices.Clone(vals)
		slices.Sort(wantVals)
		for _, i := range slotsOf(c, placementOf(r, []byte(key)).replicas) {
			rec, found, err := storeRecord(ctx, c, i, []byte(key))
			if err != nil {
				return err
			}
			got := storedValues(c, rec)
			if len(wantVals) == 0 && len(got) == 0 {
				continue // deleted: a tombstone or an expired value, or collected
			}
			if !found || !slices.Equal(got, wantVals) {
				return fmt.Errorf("replica slot %d holds %q (found %v) for %q, want %q", i, got, found, key, wantVals)
			}
		}
	}
	return nil
}

// TestClusterTwoReplicasDown: with two of a key's three replicas down,
// W=2 puts either succeed through the sloppy quorum with a hint
// (Hinted > 0: only one natural replica is up) or fail with a
// *node.QuorumError; once both replicas return and hints and repair have
// run, every acknowledged write is on all three replicas and reads back
// through every node.
func TestClusterTwoReplicasDown(t *testing.T) {
	const n = 5
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 6})
	ctx := opCtx(t)
	chosen := []byte("chosen-key")
	loc, err := c.Node(0).Locate(ctx, chosen, node.LocateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := slotsOf(c, loc.Replicas)
	// More keys with the same replica set, found on the expected ring.
	same := [][]byte{chosen}
	full := expectedRing(c, c.Live())
	for _, k := range keys("same", 2000, 6) {
		if len(same) == 10 {
			break
		}
		if slices.Equal(placementOf(full, k).replicas, loc.Replicas) {
			same = append(same, k)
		}
	}
	down := replicas[:2]
	for _, v := range down {
		c.Kill(v)
	}
	live := c.Live()

	want := map[string][]string{}
	refused := 0
	for k, key := range same {
		if k == len(same)/2 { // as in TestClusterKillOneReplica
			waitDead(t, c, live, down...)
		}
		via := live[k%len(live)]
		val := fmt.Sprintf("v%d", k)
		res, err := c.Node(via).Put(ctx, key, []byte(val), node.WriteOptions{W: 2})
		var qe *node.QuorumError
		switch {
		case err == nil && res.Hinted == 0:
			t.Errorf("put %q via slot %d: acknowledged with %d acks and no hint while 2 of its 3 replicas are down", key, via, res.Acks)
		case err == nil:
			want[string(key)] = []string{val}
		case errors.As(err, &qe):
			refused++
		default:
			t.Fatalf("put %q via slot %d: %v, want success with a hint or a QuorumError", key, via, err)
		}
	}
	t.Logf("%d puts acknowledged through the sloppy quorum, %d refused", len(want), refused)
	if len(want) == 0 {
		t.Fatal("no put was acknowledged: nothing to check")
	}

	for _, v := range down {
		c.Restart(v)
	}
	hints := max(totalHints(ctx, c), 1)
	dhttest.WaitFor(t, handoffBound(hints), "hints to drain", func() error {
		if h := totalHints(ctx, c); h != 0 {
			return fmt.Errorf("%d hints left", h)
		}
		return nil
	})
	waitConverged(t, c, repairBound())
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatalf("an acknowledged write is missing on a replica: %v", err)
	}
	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("an acknowledged write does not read back: %v", err)
	}
}

// TestClusterConcurrentBlindWrites: blind puts (no context) of one key
// from every node at once all succeed and the next read returns every
// value as a sibling; a put with that read's context collapses them into
// one value, which every node then reads.
func TestClusterConcurrentBlindWrites(t *testing.T) {
	const n = 4
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 7})
	ctx := opCtx(t)
	key := []byte("contended")
	var vals []string
	for i := range n {
		vals = append(vals, fmt.Sprintf("from-%d", i))
	}
	putAll(t, c, key, vals, node.WriteOptions{})

	res, err := c.Node(0).Get(ctx, key, node.ReadOptions{R: 2})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got := liveValues(res.Siblings); !slices.Equal(got, vals) {
		t.Fatalf("siblings after concurrent blind puts = %q, want every value %q", got, vals)
	}
	if _, err := c.Node(1).Put(ctx, key, []byte("resolved"), node.WriteOptions{Context: res.Context}); err != nil {
		t.Fatalf("resolving put: %v", err)
	}
	if err := checkReads(ctx, c, c.Live(), 2, map[string][]string{string(key): {"resolved"}}); err != nil {
		t.Fatalf("after the resolving put: %v", err)
	}
}

// putAll puts vals[i] under key through slot i, all at once (released
// together), and fails the test if any put fails.
func putAll(t *testing.T, c *dhttest.Cluster, key []byte, vals []string, o node.WriteOptions) {
	t.Helper()
	ctx := opCtx(t)
	start := make(chan struct{})
	errs := make([]error, len(vals))
	var wg sync.WaitGroup
	for i, v := range vals {
		n := c.Node(i)
		wg.Go(func() {
			<-start
			_, errs[i] = n.Put(ctx, key, []byte(v), o)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent puts: %v", err)
	}
}

// TestClusterLWW: in last-writer-wins mode, concurrent blind puts of one
// key read as one value, the one with the latest timestamp. The three
// writers are the key's natural replicas, so each coordinates its own
// write with its own clock; their clocks are skewed by a minute each, so
// the latest timestamp is known: the most advanced clock's. The replicas
// keep the concurrent writes (merges never drop a sibling, so that they
// converge whatever the order), and the next write, stamped after every
// version its coordinator holds, leaves one version on every replica, even
// through the replica whose clock is the furthest behind.
func TestClusterLWW(t *testing.T) {
	const n = 4
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 8, Config: func(_ int, cfg *node.Config) { cfg.LWW = true }})
	ctx := opCtx(t)
	key := []byte("lww-key")
	loc, err := c.Node(0).Locate(ctx, key, node.LocateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writers := slotsOf(c, loc.Replicas)
	for k, i := range writers {
		c.SetSkew(i, time.Duration(k)*time.Minute)
	}
	latest := fmt.Sprintf("from-%d", writers[len(writers)-1])

	start := make(chan struct{})
	errs := make([]error, len(writers))
	var wg sync.WaitGroup
	for k, i := range writers {
		nd := c.Node(i)
		wg.Go(func() {
			<-start
			_, errs[k] = nd.Put(ctx, key, fmt.Appendf(nil, "from-%d", i), node.WriteOptions{})
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent puts: %v", err)
	}
	want := map[string][]string{string(key): {latest}}
	if err := checkReads(ctx, c, c.Live(), 2, want); err != nil {
		t.Fatalf("LWW read: %v", err)
	}
	waitConverged(t, c, repairBound())
	if err := checkReads(ctx, c, c.Live(), 3, want); err != nil {
		t.Fatalf("LWW read after repair: %v", err)
	}

	behind := writers[0] // its clock is two minutes behind the latest write's
	if _, err := c.Node(behind).Put(ctx, key, []byte("final"), node.WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, repairBound())
	want = map[string][]string{string(key): {"final"}}
	if err := checkReads(ctx, c, c.Live(), 3, want); err != nil {
		t.Fatalf("LWW read after a write from the clock behind: %v", err)
	}
	if err := checkStores(ctx, c, want); err != nil {
		t.Fatalf("LWW replicas: %v", err)
	}
	for _, i := range writers {
		rec, _, err := storeRecord(ctx, c, i, key)
		if err != nil || len(rec.Versions) != 1 {
			t.Errorf("replica slot %d keeps %d versions (%v) after the next write, want 1", i, len(rec.Versions), err)
		}
	}
}

// TestClusterTTL: a key put with a TTL is on its three replicas until it
// expires; then it reads as not found through every node, every replica
// keeps it as a dead record (context and all, as a tombstone), and once
// the tombstone grace has passed collection removes it from every store.
// A key without TTL stays. Expiry is driven by advancing the cluster's
// clock, and once more by the wall clock with a short TTL.
func TestClusterTTL(t *testing.T) {
	t.Run("advanced clock", func(t *testing.T) {
		const ttl = 10 * time.Minute
		c := dhttest.New(t, dhttest.Options{N: 4, Seed: 11})
		ctx := opCtx(t)
		key, keep := []byte("expiring"), []byte("lasting")
		before := c.Clock().Now()
		if _, err := c.Node(0).Put(ctx, key, []byte("v"), node.WriteOptions{W: 3, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node(1).Put(ctx, keep, []byte("v"), node.WriteOptions{W: 3}); err != nil {
			t.Fatal(err)
		}
		res, err := c.Node(2).Get(ctx, key, node.ReadOptions{R: 3})
		if err != nil {
			t.Fatalf("get before expiry: %v", err)
		}
		if exp := before.Add(ttl); res.ExpiresAt.Before(exp) || res.ExpiresAt.After(c.Clock().Now().Add(ttl)) {
			t.Errorf("ExpiresAt = %v, want put time + %v (%v)", res.ExpiresAt, ttl, exp)
		}
		if err := checkStores(ctx, c, map[string][]string{string(key): {"v"}, string(keep): {"v"}}); err != nil {
			t.Fatalf("before expiry: %v", err)
		}

		c.Clock().Advance(ttl + time.Second)
		if err := checkExpired(ctx, c, key); err != nil {
			t.Fatal(err)
		}
		if err := checkReads(ctx, c, c.Live(), 2, map[string][]string{string(keep): {"v"}}); err != nil {
			t.Fatalf("key without TTL after the advance: %v", err)
		}
		waitCollected(t, c, key)
		if err := checkReads(ctx, c, c.Live(), 2, map[string][]string{string(key): nil, string(keep): {"v"}}); err != nil {
			t.Fatalf("after collection: %v", err)
		}
	})
	t.Run("wall clock", func(t *testing.T) {
		const ttl = time.Second
		c := dhttest.New(t, dhttest.Options{N: 4, Seed: 12})
		ctx := opCtx(t)
		key := []byte("expiring")
		if _, err := c.Node(0).Put(ctx, key, []byte("v"), node.WriteOptions{W: 3, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		dhttest.WaitFor(t, ttl+safety, "the key to expire on every replica", func() error {
			return checkExpired(ctx, c, key)
		})
	})
}

// TestClusterTTLOverwriteMissedReplica: a put with a TTL overwrites a
// value, and one replica misses the overwrite (its store is set back to
// the old record while it is down, as if the write had never reached
// it). The TTL runs out before it returns with the old value. The expired
// write's context still covers the old value on the two others, so reads
// through every node find nothing, and repair hands the third the dead
// record instead of spreading the old value; collection then removes the
// key everywhere. Background anti-entropy is off, so that the returning
// replica still holds the old value when the reads begin.
func TestClusterTTLOverwriteMissedReplica(t *testing.T) {
	const ttl = 10 * time.Minute
	c := dhttest.New(t, dhttest.Options{N: 3, Seed: 13, Config: func(_ int, cfg *node.Config) { cfg.Maintenance.Interval = 0 }})
	ctx := opCtx(t)
	key := []byte("overwritten")
	read := putEverywhere(t, c, key, "old")
	old, _, err := storeRecord(ctx, c, 2, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(0).Put(ctx, key, []byte("new"), node.WriteOptions{W: 3, TTL: ttl, Context: read.Context}); err != nil {
		t.Fatal(err)
	}
	c.Kill(2)
	if err := c.Store(2).Put(ctx, replica.DataKey(ring.KeyPos(key), key), old); err != nil {
		t.Fatal(err)
	}
	c.Clock().Advance(ttl + time.Second)
	c.Restart(2)
	c.WaitNormal(healBound(memberCfg(), 3))
	if got, found, err := storeRecord(ctx, c, 2, key); err != nil || !found || !slices.Equal(storedValues(c, got), []string{"old"}) {
		t.Fatalf("the returning replica holds %q (found %v, %v), want the old value", storedValues(c, got), found, err)
	}
	for _, r := range []int{2, 3} {
		if err := checkReads(ctx, c, c.Live(), r, map[string][]string{string(key): nil}); err != nil {
			t.Fatalf("reads once the stale replica is back: %v", err)
		}
	}
	waitConverged(t, c, repairBound())
	for i := range c.N() {
		got, found, err := storeRecord(ctx, c, i, key)
		if err != nil || !found || len(storedValues(c, got)) != 0 {
			t.Fatalf("slot %d holds %q (found %v, %v) after repair, want the dead record", i, storedValues(c, got), found, err)
		}
	}
	waitCollected(t, c, key)
}

// TestClusterTombstoneAndTTLSibling: a delete concurrent with a TTL write
// (the delete's context predates the write) leaves both as siblings; the
// TTL value reads until it expires, then the key reads as deleted, and
// collection removes the record from every replica after the grace.
func TestClusterTombstoneAndTTLSibling(t *testing.T) {
	const ttl = 10 * time.Minute
	c := dhttest.New(t, dhttest.Options{N: 4, Seed: 14})
	ctx := opCtx(t)
	key := []byte("deleted-and-expiring")
	read := putEverywhere(t, c, key, "a")
	if _, err := c.Node(1).Put(ctx, key, []byte("b"), node.WriteOptions{W: 3, TTL: ttl, Context: read.Context}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(2).Delete(ctx, key, node.WriteOptions{W: 3, Context: read.Context}); err != nil {
		t.Fatal(err)
	}
	if err := checkReads(ctx, c, c.Live(), 2, map[string][]string{string(key): {"b"}}); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	c.Clock().Advance(ttl + time.Second)
	if err := checkExpired(ctx, c, key); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, c, key)
}

// putEverywhere puts value on all three replicas of key through slot 0
// and returns a read of it.
func putEverywhere(t *testing.T, c *dhttest.Cluster, key []byte, value string) node.ReadResult {
	t.Helper()
	ctx := opCtx(t)
	if _, err := c.Node(0).Put(ctx, key, []byte(value), node.WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	read, err := c.Node(0).Get(ctx, key, node.ReadOptions{R: 3})
	if err != nil {
		t.Fatal(err)
	}
	return read
}

// checkExpired returns nil when no store holds a live version of key and
// every up node reads it as not found with R=2 and R=3.
func checkExpired(ctx context.Context, c *dhttest.Cluster, key []byte) error {
	for _, i := range c.Live() {
		if rec, _, err := storeRecord(ctx, c, i, key); err != nil || len(storedValues(c, rec)) > 0 {
			return fmt.Errorf("slot %d's store still holds %q live: %v", i, storedValues(c, rec), err)
		}
	}
	for _, r := range []int{2, 3} {
		if err := checkReads(ctx, c, c.Live(), r, map[string][]string{string(key): nil}); err != nil {
			return err
		}
	}
	return nil
}

// waitCollected advances the cluster's clock past the tombstone grace and
// waits until repair rounds have removed key from every store.
func waitCollected(t *testing.T, c *dhttest.Cluster, key []byte) {
	t.Helper()
	ctx := opCtx(t)
	c.Clock().Advance(dhttest.NodeConfig().Maintenance.TombstoneGrace + time.Second)
	dhttest.WaitFor(t, repairBound(), "the expired record to be collected from every replica", func() error {
		if err := repairAll(ctx, c); err != nil {
			return err
		}
		for _, i := range c.Live() {
			if _, found, err := storeRecord(ctx, c, i, key); err != nil || found {
				return fmt.Errorf("slot %d still holds a record of %q (%v)", i, key, err)
			}
		}
		return nil
	})
}
