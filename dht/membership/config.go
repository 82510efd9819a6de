package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Wire bounds: a message that carries more is refused whole. They are
// constants, not Config, so that every node of a cluster agrees on them.
const (
	// MaxWireUpdates bounds the updates of one SWIM message.
	MaxWireUpdates = 1024
	// MaxWireMembers bounds the members of one push-pull message.
	MaxWireMembers = 100_000
	// MaxAddrs bounds the addresses of one member.
	MaxAddrs = 16
	// MaxAddrLen bounds one address, in bytes.
	MaxAddrLen = 256
	// MaxZoneLen bounds a zone name, in bytes.
	MaxZoneLen = 64
	// MaxCapacity bounds a member's capacity; it must be in (0, MaxCapacity].
	MaxCapacity = 64
)

// Config tunes the protocol. Every node of a cluster should run the same
// timings and the same Tokens function. Timings follow SWIM: the suspicion
// timeout and the retransmit count grow with log10 of the cluster size.
type Config struct {
	// ProbeInterval is the time between two probes of one node. Default 500ms
	// (LAN). Shorter detects failures sooner at the cost of N pings per
	// interval across the cluster. It also scales the suspicion timeout.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct ping may take before indirect probes
	// start. Default 200ms (LAN): above a LAN round trip under load, below
	// ProbeInterval so indirect probes fit in the same interval.
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to ping a target that
	// missed its direct ping. Default 3. More makes a false suspicion through
	// one bad path less likely at the cost of more messages.
	IndirectChecks int
	// SuspicionMult sets the minimum suspicion timeout:
	// SuspicionMult × max(1, log10(N)) × ProbeInterval. It is reached once
	// SuspicionMult-2 other members confirmed the suspicion (Lifeguard).
	// Default 3 (LAN: 2.5s at N = 50). Larger means fewer false deaths and
	// slower detection.
	SuspicionMult int
	// SuspicionMaxTimeoutMult sets the maximum suspicion timeout, used while
	// nobody confirms a suspicion, as a multiple of the minimum. Default 6.
	// Larger gives an overloaded suspect more time to refute.
	SuspicionMaxTimeoutMult int
	// RetransmitMult sets how many times one update is piggybacked or pushed:
	// RetransmitMult × ceil(log10(N+1)). Default 4. Larger makes an update
	// more likely to reach everyone, at the cost of message size.
	RetransmitMult int
	// GossipInterval is the time between two gossip pushes of queued updates
	// to GossipNodes random members. Default 100ms. Shorter spreads updates
	// sooner with more, smaller messages. Nothing is sent while the queue is
	// empty.
	GossipInterval time.Duration
	// GossipNodes is the number of random members each gossip push goes to.
	// Default 3.
	GossipNodes int
	// GossipToTheDeadTime is how long a member that was declared dead still
	// receives gossip, so a falsely declared node learns it and refutes.
	// Default 30s (LAN).
	GossipToTheDeadTime time.Duration
	// PushPullInterval is the time between two full state exchanges with one
	// random live member (plus one attempt at a random dead member, which
	// heals partitions). Default 30s (LAN). Shorter converges sooner at the
	// cost of O(N) bytes per exchange; 0 is not allowed.
	PushPullInterval time.Duration
	// DeadReapTimeout is how long dead and left members stay listed (and in
	// push-pull state) before they are forgotten. Default 1h. It must exceed
	// the time a partition or a restart may take, or a node that returns
	// with an old incarnation is not recognised as having been dead.
	DeadReapTimeout time.Duration
	// AwarenessMaxMultiplier caps the local health multiplier (Lifeguard):
	// a node that misses acks and nacks scales its probe timeout and interval
	// by up to this factor, so a slow node does not accuse healthy ones.
	// Default 8; 1 disables it.
	AwarenessMaxMultiplier int
	// StorageReportInterval is the minimum time between two gossiped storage
	// reports of the local node (each bumps its incarnation). Default 10s.
	StorageReportInterval time.Duration
	// MaxUpdatesPerMessage bounds the updates piggybacked on one message
	// sent. Default 64; at most MaxWireUpdates. Larger spreads bursts faster
	// with bigger messages.
	MaxUpdatesPerMessage int
	// Tokens derives a member's ring tokens from its ID and capacity and
	// returns their count and digest; members whose gossiped token_count and
	// token_digest differ are refused. Default nil: no check, and the local
	// node gossips zeros. The node plugs in dht/ring's derivation.
	Tokens func(id peer.ID, capacity float64) (count int, digest uint64)
	// Manual makes Start register the handlers without starting loops: the
	// caller drives the protocol with Step and the Clock (simulator,
	// deterministic tests). Default false.
	Manual bool
	// SerialProbes sends indirect probes and gossip pushes one after
	// another instead of in parallel, which makes a Manual run over memnet
	// reproducible. Default false.
	SerialProbes bool
	// Seed seeds the random choices (probe order, gossip targets). Default 0:
	// a random seed.
	Seed uint64
	// StartIncomplete marks a node whose member list is not the cluster's
	// when it starts: a node joining, or one restarting with peers to ask.
	// It becomes Complete once it merges the list of a peer whose own list
	// is complete, or when MarkComplete is called. Default false: the node
	// founds its cluster, and its list is complete from the start.
	StartIncomplete bool
	// Logger receives debug logs of refused input and state changes.
	// Default nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the ringkv_membership_* metrics. Default nil: the
	// metrics are kept but not registered.
	Registerer prometheus.Registerer
}

// DefaultLANConfig returns timings for a LAN: a killed node is declared dead
// by every member within about 5s at N = 50, while an overloaded but live
// node has several seconds to refute a suspicion.
func DefaultLANConfig() Config {
	return Config{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            200 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 6,
		RetransmitMult:          4,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             3,
		GossipToTheDeadTime:     30 * time.Second,
		PushPullInterval:        30 * time.Second,
		DeadReapTimeout:         time.Hour,
		AwarenessMaxMultiplier:  8,
		StorageReportInterval:   10 * time.Second,
		MaxUpdatesPerMessage:    64,
	}
}

// DefaultLocalConfig returns fast timings for tests on one machine: 100ms
// probes, 30ms gossip, 1s push-pull.
func DefaultLocalConfig() Config {
	c := DefaultLANConfig()
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.SuspicionMult = 4
	c.GossipInterval = 30 * time.Millisecond
	c.GossipToTheDeadTime = 5 * time.Second
	c.PushPullInterval = time.Second
	c.DeadReapTimeout = time.Minute
	c.StorageReportInterval = 200 * time.Millisecond
	return c
}

// Validate checks every field and the relations between them.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.ProbeInterval <= 0 {
		bad("ProbeInterval %v must be positive", c.ProbeInterval)
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout >= c.ProbeInterval {
		bad("ProbeTimeout %v must be positive and below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.IndirectChecks < 0 {
		bad("IndirectChecks %d must not be negative", c.IndirectChecks)
	}
	if c.SuspicionMult < 1 {
		bad("SuspicionMult %d must be at least 1", c.SuspicionMult)
	}
	if c.SuspicionMaxTimeoutMult < 1 {
		bad("SuspicionMaxTimeoutMult %d must be at least 1", c.SuspicionMaxTimeoutMult)
	}
	if c.RetransmitMult < 1 {
		bad("RetransmitMult %d must be at least 1", c.RetransmitMult)
	}
	if c.GossipInterval <= 0 || c.GossipInterval > c.ProbeInterval {
		bad("GossipInterval %v must be positive and at most ProbeInterval %v", c.GossipInterval, c.ProbeInterval)
	}
	if c.GossipNodes < 1 {
		bad("GossipNodes %d must be at least 1", c.GossipNodes)
	}
	if c.GossipToTheDeadTime < 0 {
		bad("GossipToTheDeadTime %v must not be negative", c.GossipToTheDeadTime)
	}
	if c.PushPullInterval < c.ProbeInterval {
		bad("PushPullInterval %v must be at least ProbeInterval %v", c.PushPullInterval, c.ProbeInterval)
	}
	if c.DeadReapTimeout < c.PushPullInterval || c.DeadReapTimeout < c.GossipToTheDeadTime {
		bad("DeadReapTimeout %v must be at least PushPullInterval %v and GossipToTheDeadTime %v",
			c.DeadReapTimeout, c.PushPullInterval, c.GossipToTheDeadTime)
	}
	if c.AwarenessMaxMultiplier < 1 {
		bad("AwarenessMaxMultiplier %d must be at least 1", c.AwarenessMaxMultiplier)
	}
	if c.StorageReportInterval <= 0 {
		bad("StorageReportInterval %v must be positive", c.StorageReportInterval)
	}
	if c.MaxUpdatesPerMessage < 1 || c.MaxUpdatesPerMessage > MaxWireUpdates {
		bad("MaxUpdatesPerMessage %d must be in [1, %d]", c.MaxUpdatesPerMessage, MaxWireUpdates)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}
