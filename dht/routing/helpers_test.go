package routing

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// testConfig is a small, fast configuration: 16 vnodes, no loop.
func testConfig() Config {
	c := DefaultConfig()
	c.VNodes = 16
	c.StabilizeInterval = 0
	c.Logger = slog.New(slog.DiscardHandler)
	return c
}

// cluster is a set of routers over one memnet network with cloning on.
type cluster struct {
	t       testing.TB
	net     *memnet.Network
	cfg     Config
	routers []*Router
	byID    map[peer.ID]*Router
	dead    map[peer.ID]bool
}

// newCluster makes n started routers, in zones z0..z(zones-1) round-robin
// (zones 0: no zones), that know nobody yet.
func newCluster(t testing.TB, n, zones int, cfg Config) *cluster {
	t.Helper()
	c := &cluster{t: t, net: memnet.New(memnet.DefaultOptions()), cfg: cfg,
		byID: make(map[peer.ID]*Router), dead: make(map[peer.ID]bool)}
	for _, node := range ringtest.Nodes(uint64(n)*7919+uint64(zones), n, zones) {
		c.add(node, cfg)
	}
	return c
}

// add starts one more router for node, with cfg.
func (c *cluster) add(node ring.Node, cfg Config) *Router {
	c.t.Helper()
	ep := c.net.Endpoint(node.ID)
	r, err := New(cfg, Peer{ID: node.ID, Zone: node.Zone, Capacity: node.Capacity}, ep, dht.SystemClock{})
	if err != nil {
		c.t.Fatalf("New: %v", err)
	}
	if err := r.Start(context.Background()); err != nil {
		c.t.Fatalf("Start: %v", err)
	}
	c.t.Cleanup(func() { _ = r.Close() })
	c.routers = append(c.routers, r)
	c.byID[node.ID] = r
	return r
}

// joinAll joins routers one by one, each through a random earlier one, and
// runs rounds Stabilize rounds on every router after all joined.
func (c *cluster) joinAll(ctx context.Context, rounds int) {
	c.t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for i, r := range c.routers[1:] {
		seed := c.routers[rng.IntN(i+1)]
		if err := r.Join(ctx, seed.Self()); err != nil {
			c.t.Fatalf("join %d: %v", i+1, err)
		}
	}
	c.stabilize(ctx, rounds)
}

// stabilize runs rounds rounds of Stabilize and FixFingers on every live
// router.
func (c *cluster) stabilize(ctx context.Context, rounds int) {
	c.t.Helper()
	for range rounds {
		for _, r := range c.live() {
			if err := r.Stabilize(ctx); err != nil {
				c.t.Fatalf("stabilize: %v", err)
			}
			_ = r.FixFingers(ctx)
		}
	}
}

// kill makes id unreachable; with forget, every survivor forgets it as
// membership would make it.
func (c *cluster) kill(id peer.ID, forget bool) {
	c.net.Kill(id)
	c.dead[id] = true
	if forget {
		for _, r := range c.live() {
			r.Forget(id)
		}
	}
}

func (c *cluster) live() []*Router {
	var out []*Router
	for _, r := range c.routers {
		if !c.dead[r.Self().ID] {
			out = append(out, r)
		}
	}
	return out
}

// reference is the global ring of the live routers.
func (c *cluster) reference() *ring.Ring {
	var nodes []ring.Node
	for _, r := range c.live() {
		p := r.Self()
		nodes = append(nodes, ring.Node{ID: p.ID, Zone: p.Zone, Capacity: p.Capacity})
	}
	return ring.New(nodes, c.cfg.VNodes)
}

// hopStats summarises lookup hops.
type hopStats struct {
	n, sum, max int
	failedHops  int
}

func (h *hopStats) add(res Result) {
	h.n++
	h.sum += res.Hops
	h.max = max(h.max, res.Hops)
	for _, hop := range res.Path {
		if hop.Answer == AnswerFailed {
			h.failedHops++
		}
	}
}

func (h hopStats) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.n)
}

func (h hopStats) String() string {
	return fmt.Sprintf("%d lookups, mean hops %.2f, max %d, failed hops %d", h.n, h.mean(), h.max, h.failedHops)
}

// checkLookups looks up count random positions from random live routers
// and compares owner and replica set with the reference ring.
func (c *cluster) checkLookups(ctx context.Context, count int, opts Options, seed uint64) hopStats {
	c.t.Helper()
	return c.lookups(ctx, count, opts, seed, true)
}

// lookups looks up count random positions from random live routers; with
// strict, owner and replica set must match the reference ring, else only
// the owner must.
func (c *cluster) lookups(ctx context.Context, count int, opts Options, seed uint64, strict bool) hopStats {
	c.t.Helper()
	ref := c.reference()
	live := c.live()
	rng := rand.New(rand.NewPCG(seed, 99))
	var st hopStats
	for range count {
		r := live[rng.IntN(len(live))]
		pos := rng.Uint64()
		res, err := r.Lookup(ctx, pos, opts)
		if err != nil {
			c.t.Fatalf("lookup %016x from %s: %v (path %v; dead %v)", pos, r.Self().ID, err, res.Path, c.dead)
		}
		want := ref.PreferenceList(pos, c.cfg.Replicas)
		if got := ids(res.Replicas); (strict && !slices.Equal(got, want)) || res.Owner.ID != want[0] {
			c.t.Fatalf("lookup %016x from %s: owner %s replicas %v, want %v (path %v)",
				pos, r.Self().ID, res.Owner.ID, got, want, res.Path)
		}
		st.add(res)
	}
	return st
}

func ids(ps []Peer) []peer.ID {
	out := make([]peer.ID, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// waitFor polls cond every few milliseconds until it holds or timeout
// passes, and fails the test then.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ownershipError checks that the live routers' ownership claims partition
// the ring as ref does: each owns both ends of each of its reference arcs,
// and each of samples random positions is claimed by its reference owner
// alone.
func (c *cluster) ownershipError(ref *ring.Ring, samples int) error {
	live := c.live()
	for _, r := range live {
		for _, tok := range ref.TokensOf(r.Self().ID) {
			if !r.IsOwner(tok) || !r.IsOwner(ref.Predecessor(tok)+1) {
				return fmt.Errorf("%s does not own its arc ending %016x", r.Self().ID, tok)
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(samples), 17))
	for range samples {
		pos := rng.Uint64()
		_, want, _ := ref.Successor(pos)
		for _, r := range live {
			if r.IsOwner(pos) != (r.Self().ID == want) {
				return fmt.Errorf("%s: IsOwner(%016x) = %v, reference owner %s", r.Self().ID, pos, r.IsOwner(pos), want)
			}
		}
	}
	return nil
}
