package routing

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

func TestLookupConverged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		nodes int
		zones int
	}{
		{"16 nodes", 16, 0},
		{"24 nodes 3 zones", 24, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.nodes, tc.zones, testConfig())
			c.joinAll(ctx, 3)
			for _, mode := range []struct {
				name string
				opts Options
			}{
				{"iterative", Options{Trace: true}},
				{"recursive", Options{Trace: true, Recursive: true}},
			} {
				t.Run(mode.name, func(t *testing.T) {
					st := c.checkLookups(ctx, 500, mode.opts, 1)
					t.Logf("%s: %v", mode.name, st)
					if st.failedHops != 0 {
						t.Errorf("%d failed hops on a healthy ring", st.failedHops)
					}
				})
			}
			for _, r := range c.routers {
				if n, bound := r.Size(), r.MaxSize(); n > bound {
					t.Errorf("%s: Size %d over bound %d", r.Self().ID, n, bound)
				}
			}
		})
	}
}

func TestLookupAfterKill(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		forget bool
	}{
		{"survivors forget", true},
		{"nobody told", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 24, 0, testConfig())
			c.joinAll(ctx, 3)
			for _, r := range c.routers[5:8] {
				c.kill(r.Self().ID, tc.forget)
			}
			// Right away, before any stabilization: the dead are skipped and
			// the owner is right, though an owner that was not told may
			// still list a dead replica.
			st := c.lookups(ctx, 300, Options{Trace: true}, 2, tc.forget)
			t.Logf("before stabilization: %v", st)
			if !tc.forget && st.failedHops == 0 {
				t.Errorf("no failed hop reported with 3 dead nodes nobody forgot")
			}
			c.stabilize(ctx, 2)
			st = c.checkLookups(ctx, 300, Options{Trace: true}, 3)
			t.Logf("after stabilization: %v", st)
			st = c.checkLookups(ctx, 200, Options{Trace: true, Recursive: true}, 4)
			t.Logf("recursive after stabilization: %v", st)
			if err := c.ownershipError(c.reference(), 500); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestStabilizeTakesOverDeadRanges(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 16, 0, testConfig())
	c.joinAll(ctx, 3)
	if err := c.ownershipError(c.reference(), 500); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	c.kill(c.routers[3].Self().ID, false)
	c.kill(c.routers[4].Self().ID, false)
	c.stabilize(ctx, 2)
	if err := c.ownershipError(c.reference(), 500); err != nil {
		t.Fatalf("after the kill and 2 rounds: %v", err)
	}
}

func TestColdAndWarm(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.VNodes = 1
	cfg.CacheSize = 0
	c := newCluster(t, 64, 0, cfg)
	c.joinAll(ctx, 4)

	st := c.checkLookups(ctx, 400, Options{}, 5)
	t.Logf("cold (CacheSize 0): %v", st)
	if st.mean() <= 1 {
		t.Errorf("cold mean hops %.2f, want > 1 on 64 nodes without a cache", st.mean())
	}
	for _, r := range c.routers {
		if n, bound := r.Size(), r.MaxSize(); n > bound {
			t.Errorf("Size %d over bound %d", n, bound)
		}
		if r.Size() != r.PinnedSize() {
			t.Errorf("CacheSize 0 but %d of %d peers are not pinned", r.Size()-r.PinnedSize(), r.Size())
		}
	}

	// A node that has observed everyone predicts exactly and needs one hop.
	ref := c.reference()
	var all []Peer
	for _, r := range c.routers {
		all = append(all, r.Self())
	}
	asker := c.routers[0]
	asker.SetCacheSize(128)
	asker.ObserveAll(all)
	if got := asker.Size(); got != len(all)-1 {
		t.Fatalf("warm Size %d, want %d", got, len(all)-1)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	for range 300 {
		pos := rng.Uint64()
		want := ref.PreferenceList(pos, cfg.Replicas)
		owner, replicas := asker.Predict(pos)
		if owner != want[0] || !slices.Equal(replicas, want) {
			t.Fatalf("Predict(%016x) = %s %v, want %v", pos, owner, replicas, want)
		}
		res, err := asker.Lookup(ctx, pos, Options{Trace: true})
		if err != nil {
			t.Fatal(err)
		}
		wantHops := 1
		if want[0] == asker.Self().ID {
			wantHops = 0
		}
		if res.Hops != wantHops || res.Owner.ID != want[0] {
			t.Fatalf("warm Lookup(%016x): owner %s in %d hops (path %v), want %s in %d",
				pos, res.Owner.ID, res.Hops, res.Path, want[0], wantHops)
		}
	}
	if m := asker.MeanHops(); m > 1 {
		t.Errorf("MeanHops %.2f after warm lookups, want <= 1", m)
	}
}

func TestStartLoopConverges(t *testing.T) {
	cfg := testConfig()
	cfg.StabilizeInterval = 10 * time.Millisecond
	c := newCluster(t, 12, 0, cfg)
	ctx := context.Background()
	for i, r := range c.routers[1:] {
		if err := r.Join(ctx, c.routers[i].Self()); err != nil {
			t.Fatal(err)
		}
	}
	ref := c.reference()
	waitFor(t, 20*time.Second, "every node to own exactly its reference arcs", func() bool {
		return c.ownershipError(ref, 200) == nil
	})
	c.checkLookups(ctx, 100, Options{}, 7)
	for _, r := range c.routers {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := r.Lookup(ctx, 1, Options{}); !errors.Is(err, dht.ErrClosed) {
			t.Fatalf("Lookup after Close: %v, want ErrClosed", err)
		}
	}
}

func TestLookupFailsWhenAlone(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3, 0, testConfig())
	c.joinAll(ctx, 1)
	asker := c.routers[0]
	for _, r := range c.routers[1:] {
		c.kill(r.Self().ID, false)
	}
	// Positions the asker does not own in its stale view fail: every
	// candidate is dead. After that it has forgotten them and owns all.
	var pos uint64
	for pos = 0; asker.IsOwner(pos); pos += 1 << 58 {
	}
	_, err := asker.Lookup(ctx, pos, Options{})
	if !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("Lookup with every peer dead: %v, want ErrLookupFailed", err)
	}
	if !asker.IsOwner(pos) {
		t.Errorf("after the failed lookup the asker still does not own %016x", pos)
	}
	if n := asker.Size(); n != 0 {
		t.Errorf("Size %d after every peer failed, want 0", n)
	}
}

func TestJoinErrors(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3, 0, testConfig())
	ghost := ringtest.PeerID(31337, 0) // no endpoint: unreachable
	for _, tc := range []struct {
		name string
		seed Peer
		want error
	}{
		{"self", c.routers[0].Self(), ErrInvalidPeer},
		{"no ID", Peer{Capacity: 1}, ErrInvalidPeer},
		{"NaN capacity", Peer{ID: ghost, Capacity: math.NaN()}, ErrInvalidPeer},
		{"unreachable", Peer{ID: ghost, Capacity: 1}, ErrJoinFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.routers[0].Join(ctx, tc.seed); !errors.Is(err, tc.want) {
				t.Fatalf("Join = %v, want %v", err, tc.want)
			}
		})
	}
	if n := c.routers[0].Size(); n != 0 {
		t.Errorf("after failed joins the router knows %d peers, want 0 (the ghost is forgotten)", n)
	}
}
