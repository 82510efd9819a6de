package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/routing"
)

// ErrInvalidConfig: a Config or MembershipConfig was refused by Validate.
var ErrInvalidConfig = errors.New("sim: invalid config")

// MaxNodes bounds Config.Nodes: about 12 GiB of routers at one vnode.
const MaxNodes = 2_000_000

// Config describes one routing simulation.
type Config struct {
	// Nodes is the ring size at the start. Default 1000, at least 2, at
	// most MaxNodes.
	Nodes int
	// Lookups is the number of lookups of each measured phase (cold, warm,
	// and all churn periods together). Default 10,000.
	Lookups int
	// VNodes is the tokens per node. Default 1: a million-node ring with
	// 256 vnodes each would not fit one machine, and vnodes only multiply
	// the successor lists, not the hops.
	VNodes int
	// Replicas, Successors, CacheSize and Alpha configure every router as
	// routing.Config does. Defaults 3, 8, 1024, 3.
	Replicas, Successors, CacheSize, Alpha int
	// FixFingersPerRound configures every router's FixFingers. Default 1
	// (the routing default is 4): a million routers each doing four
	// lookups per period dominates a churn run's time.
	FixFingersPerRound int
	// Recursive runs every measured lookup in recursive mode.
	Recursive bool
	// Warm measures a second phase from WarmAskers random nodes whose caches
	// hold min(CacheSize, Nodes-1) random live peers, as a daemon's do once
	// gossip membership has called Observe for every member.
	Warm bool
	// WarmAskers is the number of warmed nodes. Default 100. The hops of a
	// lookup depend only on its asker's routing state and on the (cold)
	// peers it queries, so a sample of warm askers measures what every
	// warm node would see, at a fraction of the memory.
	WarmAskers int
	// ChurnCacheSize is the cache size of every router during the churn
	// phase. Default 1024, below CacheSize. Caches fill with every peer that asks or
	// answers, at about 200 bytes an entry: at a million nodes a full
	// 1024-entry cache each would need 200 GB, so large runs lower it.
	ChurnCacheSize int
	// Churn is the fraction of live nodes replaced in each period: killed
	// without warning, and as many new nodes joined through random live
	// ones. Default 0. 0.1 is the design target.
	Churn float64
	// Periods is the number of churn periods. Default 0; at least 1 with
	// Churn. Each period: replace nodes, advance the clock by Period, run
	// one Stabilize and one FixFingers round on every live node, then
	// Lookups/Periods lookups.
	Periods int
	// Period is the simulated stabilization period. Default 2s, the
	// routing default StabilizeInterval.
	Period time.Duration
	// Seed makes a run reproducible. Default 1.
	Seed uint64
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Nodes:              1000,
		Lookups:            10_000,
		VNodes:             1,
		Replicas:           3,
		Successors:         8,
		CacheSize:          16384,
		ChurnCacheSize:     1024,
		Alpha:              3,
		FixFingersPerRound: 1,
		WarmAskers:         100,
		Period:             2 * time.Second,
		Seed:               1,
	}
}

// Validate checks every field and the relations between them.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Nodes < 2 || c.Nodes > MaxNodes {
		bad("nodes %d must be in [2, %d]", c.Nodes, MaxNodes)
	}
	if c.Lookups < 1 {
		bad("lookups %d must be at least 1", c.Lookups)
	}
	if c.Churn < 0 || c.Churn > 0.5 || math.IsNaN(c.Churn) {
		bad("churn %v must be in [0, 0.5]", c.Churn)
	}
	if c.Periods < 0 || (c.Churn > 0 && c.Periods < 1) {
		bad("periods %d must be at least 1 with churn (0 without)", c.Periods)
	}
	if c.Period <= 0 {
		bad("period %v must be positive", c.Period)
	}
	if c.ChurnCacheSize < 0 {
		bad("churn cache size %d must not be negative", c.ChurnCacheSize)
	}
	if c.Warm && c.WarmAskers < 1 {
		bad("warm askers %d must be at least 1", c.WarmAskers)
	}
	if err := c.routing().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// routing is the configuration of every simulated router: no loop, serial
// queries, no logs, no metrics.
func (c Config) routing() routing.Config {
	rc := routing.DefaultConfig()
	rc.VNodes = c.VNodes
	rc.Replicas = c.Replicas
	rc.Successors = c.Successors
	rc.CacheSize = c.CacheSize
	rc.Alpha = c.Alpha
	rc.FixFingersPerRound = c.FixFingersPerRound
	rc.StabilizeInterval = 0
	rc.SerialQueries = true
	rc.Logger = discard
	return rc
}

// Report is the outcome of Run. Hops are defined as routing.Result.Hops;
// rates are fractions in [0, 1].
type Report struct {
	Nodes   int `json:"nodes"`
	Lookups int `json:"lookups"`
	VNodes  int `json:"vnodes"`
	Cache   int `json:"cache_size"`
	// HalfLog2N is Chord's expected path length, ½·log2 Nodes, the target
	// of MeanHopsCold.
	HalfLog2N    float64 `json:"half_log2_n"`
	MeanHopsCold float64 `json:"mean_hops_cold"`
	P99HopsCold  int     `json:"p99_hops_cold"`
	// MessagesPerLookup is the mean number of routing requests per cold
	// lookup, the asker's and any forwarding.
	MessagesPerLookup float64 `json:"messages_per_lookup"`
	MeanHopsWarm      float64 `json:"mean_hops_warm,omitempty"`
	P99HopsWarm       int     `json:"p99_hops_warm,omitempty"`
	// SuccessRate: lookups that got an owner's answer; CorrectRate: those
	// whose owner was the global ring's. Over the cold and warm phases.
	SuccessRate float64 `json:"success_rate"`
	CorrectRate float64 `json:"correct_rate"`
	// Churn phase: lookups, and the same rates measured after each period.
	ChurnLookups     int     `json:"churn_lookups,omitempty"`
	ChurnSuccessRate float64 `json:"churn_success_rate,omitempty"`
	ChurnCorrectRate float64 `json:"churn_correct_rate,omitempty"`
	MeanHopsChurn    float64 `json:"mean_hops_churn,omitempty"`
	JoinFailures     int     `json:"join_failures,omitempty"`
	// Routing table sizes (routing.Router.Size) over the live nodes at the
	// end, excluding warm askers, and the bound routing documents.
	MeanTableSize float64 `json:"mean_table_size"`
	MaxTableSize  int     `json:"max_table_size"`
	TableBound    int     `json:"table_bound"`
	// BuildSeconds is the wall time of the converged start; Seconds of the
	// whole run. MaxRSSBytes is the process's peak resident set so far.
	BuildSeconds float64 `json:"build_seconds"`
	Seconds      float64 `json:"seconds"`
	MaxRSSBytes  int64   `json:"max_rss_bytes"`
}

// Clock is a simulated clock: it moves only when Advance is called. It is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the simulated time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// epoch is where simulated clocks start.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// PeerID returns the simulated ID of node i of a run seeded with seed: a
// SHA2-256 multihash of both, the form of an RSA-keyed libp2p peer ID.
// It costs one hash, where deriving an Ed25519 key (ringtest.PeerID) costs
// twenty times more, which matters at a million nodes.
func PeerID(seed uint64, i int) peer.ID {
	var in [26]byte
	copy(in[:], "ringkv/sim")
	binary.BigEndian.PutUint64(in[10:], seed)
	binary.BigEndian.PutUint64(in[18:], uint64(i))
	sum := sha256.Sum256(in[:])
	b := make([]byte, 0, 2+len(sum))
	b = append(b, 0x12, 0x20) // multihash: sha2-256, 32 bytes
	return peer.ID(append(b, sum[:]...))
}

// halfLog2 is ½·log2 n.
func halfLog2(n int) float64 { return math.Log2(float64(n)) / 2 }

// tokenCount is the tokens of a capacity-1 node.
func (c Config) tokenCount() int { return ring.TokenCount(1, c.VNodes) }
