package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
)

// A randomized history test: clients write through random nodes while
// nodes crash, restart and are partitioned; once the faults end and the
// cluster has converged, no acknowledged write may be missing.

// history records what clients attempted and what was acknowledged.
type history struct {
	mu sync.Mutex
	// once: keys written once; the value is acknowledged or unknown.
	once map[string]onceWrite
	// chains: keys updated in sequence, each write with the context of a
	// read just before it.
	chains map[string]*chain
	errs   map[string]int // error kinds seen, for the log
}

type onceWrite struct {
	value string
	acked bool
}

// chain is the writes of one chain key: for each value written, the
// sibling values of the read whose context it was written with (which it
// supersedes), and whether it was acknowledged.
type chain struct {
	supersedes map[string][]string
	acked      map[string]bool
}

// covers returns every value v supersedes, directly or through the values
// it superseded.
func (ch *chain) covers(v string, seen map[string]bool) {
	for _, s := range ch.supersedes[v] {
		if !seen[s] {
			seen[s] = true
			ch.covers(s, seen)
		}
	}
}

func newHistory() *history {
	return &history{once: map[string]onceWrite{}, chains: map[string]*chain{}, errs: map[string]int{}}
}

// outcome classifies a write's error: nil is acknowledged; a quorum error,
// a lost coordinator answer, unavailability or a timeout leave the outcome
// unknown. Anything else is
// returned as unexpected.
func (h *history) outcome(err error) (acked bool, unexpected error) {
	var qe *node.QuorumError
	kind := "ok"
	switch {
	case err == nil:
		acked = true
	case errors.As(err, &qe):
		kind = "quorum"
	case errors.Is(err, node.ErrOutcomeUnknown):
		kind = "answer_lost"
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, dht.ErrUnreachable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, dht.ErrClosed):
		kind = "unavailable"
	default:
		kind = "other"
		unexpected = err
	}
	h.mu.Lock()
	h.errs[kind]++
	h.mu.Unlock()
	return acked, unexpected
}

// chaosClient runs ops writes through random up nodes: new keys written
// once, and steps of the chain keys. It signals half after half of them.
func chaosClient(t *testing.T, c *dhttest.Cluster, h *history, r *rand.Rand, name string, ops int, half chan<- struct{}) {
	for op := range ops {
		if op == ops/2 {
			half <- struct{}{}
		}
		if t.Context().Err() != nil {
			return // the test failed and is cleaning up
		}
		live := c.Live()
		n := c.Node(live[r.IntN(len(live))])
		if n == nil {
			continue // killed since Live
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if r.IntN(4) > 0 {
			key, val := fmt.Sprintf("once-%s-%d", name, op), fmt.Sprintf("v-%s-%d", name, op)
			_, err := n.Put(ctx, []byte(key), []byte(val), node.WriteOptions{W: 2})
			acked, bad := h.outcome(err)
			if bad != nil {
				t.Errorf("put %q: unexpected error: %v", key, bad)
			}
			h.mu.Lock()
			h.once[key] = onceWrite{value: val, acked: acked}
			h.mu.Unlock()
		} else {
			chaosChainStep(ctx, t, h, n, fmt.Sprintf("chain-%d", r.IntN(4)), fmt.Sprintf("c-%s-%d", name, op))
		}
		cancel()
	}
}

// chaosChainStep reads key and writes val with the read's context.
func chaosChainStep(ctx context.Context, t *testing.T, h *history, n *node.Node, key, val string) {
	res, err := n.Get(ctx, []byte(key), node.ReadOptions{R: 2})
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		return // no context to write with: skip the step
	}
	h.mu.Lock()
	ch := h.chains[key]
	if ch == nil {
		ch = &chain{supersedes: map[string][]string{}, acked: map[string]bool{}}
		h.chains[key] = ch
	}
	ch.supersedes[val] = liveValues(res.Siblings)
	h.mu.Unlock()
	_, err = n.Put(ctx, []byte(key), []byte(val), node.WriteOptions{W: 2, Context: res.Context})
	acked, bad := h.outcome(err)
	if bad != nil {
		t.Errorf("chain put %q: unexpected error: %v", key, bad)
	}
	if acked {
		h.mu.Lock()
		ch.acked[val] = true
		h.mu.Unlock()
	}
}

// chaosFault applies one random fault and returns its description.
func chaosFault(c *dhttest.Cluster, r *rand.Rand, n int) string {
	live := c.Live()
	var down []int
	for i := range n {
		if !c.Up(i) {
			down = append(down, i)
		}
	}
	switch k := r.IntN(6); {
	case k <= 1 && len(live) > 3:
		v := live[r.IntN(len(live))]
		c.Kill(v)
		return fmt.Sprintf("kill %d", v)
	case k == 2 && len(down) > 0:
		v := down[r.IntN(len(down))]
		c.Heal() // a restarted node must reach a live one to rejoin
		c.Restart(v)
		return fmt.Sprintf("heal, restart %d", v)
	case k <= 4:
		perm := r.Perm(n)
		cut := 1 + r.IntN(n-1)
		c.Partition(perm[:cut])
		return fmt.Sprintf("partition %v | rest", perm[:cut])
	default:
		c.Heal()
		return "heal"
	}
}

// TestClusterChaos: three clients write through random nodes (W=2) while
// one fault per round strikes: a crash, a restart, a partition or a heal.
// Afterwards the cluster is healed, every node restarted, hints drained
// and every arc repaired; then, read through every node with R=2:
//   - every acknowledged write-once key has its value, and a write of
//     unknown outcome has its value or is absent;
//   - every chain key (each write with the context of a read) reads as
//     values that were written, and each acknowledged value is among them
//     or superseded (through the reads' contexts) by one of them.
//
// Each seed is a different fault schedule, logged as it runs.
func TestClusterChaos(t *testing.T) {
	seeds := []uint64{16, 17, 18, 19}
	rounds, ops := 16, 16
	if testing.Short() {
		seeds, rounds, ops = seeds[:1], 6, 10
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { testChaos(t, seed, rounds, ops) })
	}
}

func testChaos(t *testing.T, seed uint64, rounds, ops int) {
	const n, clients = 5, 3
	c := dhttest.New(t, dhttest.Options{N: n, Seed: seed})
	h := newHistory()
	rngs := make([]*rand.Rand, clients)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	faults := rand.New(rand.NewPCG(seed, 99))
	for round := range rounds {
		half := make(chan struct{}, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() { chaosClient(t, c, h, rngs[i], fmt.Sprintf("%d.%d", round, i), ops, half) })
		}
		for range clients {
			<-half
		}
		start := time.Now()
		fault := chaosFault(c, faults, n)
		t.Logf("round %d: %s (%v)", round, fault, time.Since(start))
		wg.Wait()
	}
	t.Logf("write outcomes: %v", h.errs)

	c.Heal()
	for i := range n {
		if !c.Up(i) {
			c.Restart(i)
		}
	}
	dNormal := c.WaitNormal(healBound(memberCfg(), n))
	ctx := opCtx(t)
	hints := totalHints(ctx, c)
	dHints := dhttest.WaitFor(t, handoffBound(max(hints, 1)), "hints to drain", func() error {
		if hn := totalHints(ctx, c); hn != 0 {
			return fmt.Errorf("%d hints left", hn)
		}
		return nil
	})
	dRepair := waitConverged(t, c, repairBound())
	t.Logf("after the faults: Normal everywhere in %v, %d hints drained in %v, converged in %v", dNormal, hints, dHints, dRepair)
	start := time.Now()
	if err := checkHistory(ctx, c, h); err != nil {
		t.Fatal(err)
	}
	t.Logf("history checked in %v", time.Since(start))
}

// checkHistory reads every key of h through every node and checks it
// against what was acknowledged.
func checkHistory(ctx context.Context, c *dhttest.Cluster, h *history) error {
	acked, unknown := 0, 0
	for key, w := range h.once {
		for _, i := range c.Live() {
			got, err := getValues(ctx, c, i, []byte(key), 2)
			if err != nil {
				return fmt.Errorf("slot %d: get %q: %w", i, key, err)
			}
			// One write retried after a lost answer can become two
			// siblings of one value (TestClusterLostCoordinateResponse);
			// this test checks that nothing is lost, so it compares the
			// distinct values.
			got = slices.Compact(got)
			switch {
			case w.acked && !slices.Equal(got, []string{w.value}):
				return fmt.Errorf("slot %d: acknowledged %q = %q reads as %q", i, key, w.value, got)
			case !w.acked && got != nil && !slices.Equal(got, []string{w.value}):
				return fmt.Errorf("slot %d: %q (unknown outcome, value %q) reads as %q", i, key, w.value, got)
			}
		}
		if w.acked {
			acked++
		} else {
			unknown++
		}
	}
	for key, ch := range h.chains {
		for _, i := range c.Live() {
			got, err := getValues(ctx, c, i, []byte(key), 2)
			if err != nil {
				return fmt.Errorf("slot %d: get %q: %w", i, key, err)
			}
			present := map[string]bool{}
			for _, v := range got {
				if _, ok := ch.supersedes[v]; !ok {
					return fmt.Errorf("slot %d: chain %q reads as %q: %q was never written", i, key, got, v)
				}
				present[v] = true
				ch.covers(v, present)
			}
			for v := range ch.acked {
				if !present[v] {
					return fmt.Errorf("slot %d: chain %q reads as %q: acknowledged %q is neither a sibling nor superseded by one",
						i, key, got, v)
				}
			}
		}
	}
	if acked == 0 {
		return errors.New("no write was acknowledged: nothing was checked")
	}
	return nil
}
