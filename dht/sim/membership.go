package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/membership"
	"github.com/ringkv/ringkv/dht/memnet"
)

// MaxMembershipNodes bounds MembershipConfig.Nodes. Every member lists
// every member, so memory grows as Nodes² (about 300 bytes per pair: 3 GB
// at 3,000 nodes, 30 GB at 10,000).
const MaxMembershipNodes = 10_000

// MembershipConfig describes one failure-detection simulation.
type MembershipConfig struct {
	// Nodes is the cluster size. Default 1000; in [3, MaxMembershipNodes].
	Nodes int
	// Kill is how many random nodes are killed at once, without a word,
	// once the cluster has settled. Default 1; at most Nodes/2.
	Kill int
	// Settle is the simulated time the cluster runs after everyone joined,
	// before the kill, so the join updates have drained. Default 30s.
	Settle time.Duration
	// Horizon is the simulated time after the kill within which every
	// survivor must have declared every killed node dead. Default 3m.
	Horizon time.Duration
	// Tick is the simulated time between two Step calls of every node.
	// Default 100ms, the LAN gossip interval; detection times are measured
	// to this resolution.
	Tick time.Duration
	// Seed makes a run reproducible. Default 1.
	Seed uint64
}

// DefaultMembershipConfig returns the defaults documented on each field.
func DefaultMembershipConfig() MembershipConfig {
	return MembershipConfig{Nodes: 1000, Kill: 1, Settle: 30 * time.Second,
		Horizon: 3 * time.Minute, Tick: 100 * time.Millisecond, Seed: 1}
}

// Validate checks every field.
func (c MembershipConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Nodes < 3 || c.Nodes > MaxMembershipNodes {
		bad("nodes %d must be in [3, %d]", c.Nodes, MaxMembershipNodes)
	}
	if c.Kill < 1 || c.Kill > c.Nodes/2 {
		bad("kill %d must be in [1, nodes/2 = %d]", c.Kill, c.Nodes/2)
	}
	if c.Settle < 0 || c.Horizon <= 0 || c.Tick <= 0 {
		bad("settle %v, horizon %v and tick %v must be positive", c.Settle, c.Horizon, c.Tick)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// MembershipReport is the outcome of RunMembership. Times are simulated.
type MembershipReport struct {
	Nodes  int `json:"nodes"`
	Killed int `json:"killed"`
	// FirstDetectSeconds: from the kill until the first survivor declared
	// a killed node dead, averaged over the killed nodes.
	FirstDetectSeconds float64 `json:"first_detect_seconds"`
	// DetectMeanSeconds, DetectMaxSeconds: from the kill until a survivor
	// declared a killed node dead, over every (survivor, killed) pair.
	DetectMeanSeconds float64 `json:"detect_mean_seconds"`
	DetectMaxSeconds  float64 `json:"detect_max_seconds"`
	// Undetected: (survivor, killed) pairs still not declared dead at the
	// horizon.
	Undetected int `json:"undetected"`
	// FalsePositives: (survivor, live member) pairs where the survivor
	// declared a live member dead, from the start of the settle period.
	FalsePositives int `json:"false_positives"`
	// Messages: SWIM and push-pull requests from the kill until the last
	// detection; per live node and simulated second.
	Messages           uint64  `json:"messages"`
	MessagesPerNodeSec float64 `json:"messages_per_node_second"`
	SimulatedSeconds   float64 `json:"simulated_seconds"`
	Seconds            float64 `json:"seconds"`
	MaxRSSBytes        int64   `json:"max_rss_bytes"`
}

// mcluster is the simulated membership cluster of one RunMembership.
type mcluster struct {
	cfg   MembershipConfig
	clk   *Clock
	net   *memnet.Network
	ids   []peer.ID
	mls   []*membership.Memberlist
	alive []bool

	mu       sync.Mutex
	killedAt time.Time
	killed   map[peer.ID]int     // killed node -> index in detect
	detect   [][]time.Duration   // [killed][observer]; -1 until detected
	pending  int                 // undetected pairs
	falsePos map[[2]peer.ID]bool // (observer, member)
	watching bool
}

// RunMembership runs real membership.Memberlist instances (DefaultLANConfig
// timings, Manual, SerialProbes) over an in-memory network under a
// simulated clock: all join, the cluster settles, Kill nodes die at once,
// and every live node Steps every Tick until every survivor has declared
// every killed node dead or the horizon passes.
func RunMembership(ctx context.Context, cfg MembershipConfig, progress func(string)) (MembershipReport, error) {
	if err := cfg.Validate(); err != nil {
		return MembershipReport{}, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	start := time.Now()
	c := &mcluster{cfg: cfg, clk: NewClock(epoch), net: memnet.New(memnet.Options{Clone: false}),
		killed: make(map[peer.ID]int), falsePos: make(map[[2]peer.ID]bool)}
	if err := c.build(ctx, progress); err != nil {
		return MembershipReport{}, err
	}
	c.watching = true
	if err := c.run(ctx, cfg.Settle, nil); err != nil {
		return MembershipReport{}, err
	}
	progress(fmt.Sprintf("settled for %v; killing %d", cfg.Settle, cfg.Kill))
	c.kill(rand.New(rand.NewPCG(cfg.Seed, 77)))
	calls := c.messages()
	simStart := c.clk.Now()
	err := c.run(ctx, cfg.Horizon, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.pending == 0
	})
	if err != nil {
		return MembershipReport{}, err
	}
	rep := c.report()
	rep.Messages = c.messages() - calls
	window := c.clk.Now().Sub(simStart).Seconds()
	rep.MessagesPerNodeSec = float64(rep.Messages) / float64(cfg.Nodes-cfg.Kill) / max(window, 1e-9)
	rep.SimulatedSeconds = c.clk.Now().Sub(epoch).Seconds()
	rep.Seconds = time.Since(start).Seconds()
	rep.MaxRSSBytes = maxRSS()
	for _, ml := range c.mls {
		_ = ml.Close()
	}
	return rep, nil
}

// build starts every member and joins it through node 0, twice: the first
// pass teaches node 0 everyone, the second teaches everyone node 0's list.
func (c *mcluster) build(ctx context.Context, progress func(string)) error {
	n := c.cfg.Nodes
	lan := membership.DefaultLANConfig()
	lan.Manual, lan.SerialProbes, lan.Logger = true, true, discard
	c.ids = make([]peer.ID, n)
	c.mls = make([]*membership.Memberlist, n)
	c.alive = make([]bool, n)
	for i := range n {
		c.ids[i] = PeerID(c.cfg.Seed, i)
		mc := lan
		mc.Seed = c.cfg.Seed*1_000_003 + uint64(i) + 1
		ml, err := membership.New(mc, dht.Member{ID: c.ids[i], Capacity: 1},
			quietEndpoint{c.net.Endpoint(c.ids[i])}, c.clk)
		if err != nil {
			return err
		}
		if err := ml.Start(ctx); err != nil {
			return err
		}
		ml.Subscribe(c.observer(c.ids[i]))
		c.mls[i], c.alive[i] = ml, true
	}
	for pass := range 2 {
		for i := 1; i < n; i++ {
			if _, err := c.mls[i].Join(ctx, []peer.ID{c.ids[0]}); err != nil {
				return fmt.Errorf("join pass %d, node %d: %w", pass+1, i, err)
			}
		}
		progress(fmt.Sprintf("join pass %d: %d nodes", pass+1, n))
	}
	return ctx.Err()
}

// observer returns the event callback of observer id.
func (c *mcluster) observer(id peer.ID) func(membership.Event) {
	return func(ev membership.Event) {
		if ev.Member.State != dht.StateDead {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.watching {
			return
		}
		k, dead := c.killed[ev.Member.ID]
		if !dead {
			c.falsePos[[2]peer.ID{id, ev.Member.ID}] = true
			return
		}
		obs := c.index(id)
		if c.detect[k][obs] < 0 {
			c.detect[k][obs] = c.clk.Now().Sub(c.killedAt)
			c.pending--
		}
	}
}

// index returns a node's index; ids are few enough to search only on the
// rare dead event.
func (c *mcluster) index(id peer.ID) int {
	for i, x := range c.ids {
		if x == id {
			return i
		}
	}
	return -1
}

// kill kills cfg.Kill random nodes at the current simulated time.
func (c *mcluster) kill(rng *rand.Rand) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killedAt = c.clk.Now()
	for _, i := range rng.Perm(c.cfg.Nodes)[:c.cfg.Kill] {
		c.net.Kill(c.ids[i])
		c.alive[i] = false
		c.killed[c.ids[i]] = len(c.detect)
		row := make([]time.Duration, c.cfg.Nodes)
		for j := range row {
			row[j] = -1
		}
		c.detect = append(c.detect, row)
	}
	c.pending = c.cfg.Kill * (c.cfg.Nodes - c.cfg.Kill)
}

// run steps every live node every Tick for d of simulated time, or until
// done reports true.
func (c *mcluster) run(ctx context.Context, d time.Duration, done func() bool) error {
	end := c.clk.Now().Add(d)
	for c.clk.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.clk.Advance(c.cfg.Tick)
		for i, ml := range c.mls {
			if c.alive[i] {
				ml.Step(ctx)
			}
		}
		if done != nil && done() {
			return nil
		}
	}
	return nil
}

func (c *mcluster) messages() uint64 {
	return c.net.ProtocolCalls(membership.ProtocolSWIM) + c.net.ProtocolCalls(membership.ProtocolPushPull)
}

// report summarises the detections.
func (c *mcluster) report() MembershipReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := MembershipReport{Nodes: c.cfg.Nodes, Killed: c.cfg.Kill, FalsePositives: len(c.falsePos)}
	var sum time.Duration
	var firstSum time.Duration
	n := 0
	for _, row := range c.detect {
		first := time.Duration(-1)
		for obs, d := range row {
			if !c.alive[obs] {
				continue
			}
			if d < 0 {
				rep.Undetected++
				continue
			}
			sum += d
			n++
			rep.DetectMaxSeconds = max(rep.DetectMaxSeconds, d.Seconds())
			if first < 0 || d < first {
				first = d
			}
		}
		firstSum += max(first, 0)
	}
	if n > 0 {
		rep.DetectMeanSeconds = (sum / time.Duration(n)).Seconds()
	}
	rep.FirstDetectSeconds = (firstSum / time.Duration(len(c.detect))).Seconds()
	return rep
}
