package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht/antientropy"
	"github.com/ringkv/ringkv/dht/membership"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/routing"
)

// Config assembles the node's parts. DefaultConfig fills every field.
type Config struct {
	// Zone is this node's failure domain; Capacity weights its ring share.
	Zone     string
	Capacity float64
	// VNodes is the tokens per unit of capacity. Every node of a cluster
	// must use the same value (members with other token counts are
	// refused). Default ring.DefaultVNodes.
	VNodes int
	// Replicas, WriteQuorum and ReadQuorum are N, W and R; LWW selects
	// last-writer-wins conflict resolution.
	Replicas    int
	WriteQuorum int
	ReadQuorum  int
	LWW         bool
	// Join says the node will join an existing cluster through seeds. A
	// node that never completed a join then starts Joining (see New).
	Join bool
	// Peers says the node has peers to learn the cluster's members from
	// even without Join: the members it saved when it last ran. A node
	// that restarts with Join or Peers serves no client request and
	// coordinates no write until it has merged a complete member list from
	// a peer, or RejoinWait has passed (see NotReady).
	Peers bool
	// RejoinWait bounds that wait for a node whose peers do not answer;
	// 0 serves at once. Default 30s; LocalConfig 5s.
	RejoinWait time.Duration
	// Membership, Routing and Replica tune the parts; the fields above
	// override the matching fields in them.
	Membership membership.Config
	Routing    routing.Config
	Replica    replica.Config
	// Maintenance tunes anti-entropy, transfers and tombstone collection.
	Maintenance MaintenanceConfig
	// StorageReportInterval is how often the node gossips its storage use.
	// Default 10s.
	StorageReportInterval time.Duration
	// JoinSettle is how long a joining node waits, once it has announced
	// itself, before it pulls its data and turns Normal: long enough for
	// gossip to tell every member (Cassandra's ring delay). A member that
	// knows of the join sends writes to the joiner as a pending replica; one
	// that has not heard of it writes the old replicas only, and if the
	// joiner already serves reads those writes can be missed. Gossip reaches
	// 1,000 nodes in about 7 rounds of 100 ms with LAN timings. Default 2s;
	// 0 skips the wait.
	JoinSettle time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultConfig returns a single standard node's defaults with LAN timings.
func DefaultConfig() Config {
	return Config{
		Capacity:              1,
		VNodes:                ring.DefaultVNodes,
		Replicas:              3,
		WriteQuorum:           2,
		ReadQuorum:            2,
		Membership:            membership.DefaultLANConfig(),
		Routing:               routing.DefaultConfig(),
		Replica:               replica.DefaultConfig(),
		Maintenance:           DefaultMaintenanceConfig(),
		StorageReportInterval: 10 * time.Second,
		JoinSettle:            2 * time.Second,
		RejoinWait:            30 * time.Second,
	}
}

// LocalConfig returns DefaultConfig with timings for clusters on one
// machine: fast failure detection (membership.DefaultLocalConfig), fast
// handoff, anti-entropy every 10s, and deleted and expired keys collected
// after a minute (hints dropped after half of that).
func LocalConfig() Config {
	c := DefaultConfig()
	c.Membership = membership.DefaultLocalConfig()
	c.Replica.HintInterval = 500 * time.Millisecond
	c.Maintenance = antientropy.LocalConfig()
	c.Replica.HintMaxAge = c.Maintenance.TombstoneGrace / 2
	// Every round scans what the node holds: on one machine running several
	// nodes, a round every few seconds would take the CPU the nodes serve
	// with. Repair runs one on demand.
	c.Maintenance.Interval = 10 * time.Second
	c.StorageReportInterval = time.Second
	c.JoinSettle = 300 * time.Millisecond
	c.RejoinWait = 5 * time.Second
	return c
}

// ErrConfig marks an invalid node configuration.
var ErrConfig = errors.New("node: invalid config")

// resolve applies the top-level fields to the parts and validates.
func (c Config) resolve() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RejoinWait < 0 {
		return c, fmt.Errorf("%w: rejoin wait %v is negative", ErrConfig, c.RejoinWait)
	}
	if c.Capacity <= 0 || c.Capacity > 64 {
		return c, fmt.Errorf("%w: capacity %v out of (0, 64]", ErrConfig, c.Capacity)
	}
	if c.VNodes <= 0 {
		c.VNodes = ring.DefaultVNodes
	}
	vn := c.VNodes
	c.Membership.Tokens = func(id peerID, capacity float64) (int, uint64) {
		return tokenDigest(id, capacity, vn)
	}
	c.Membership.Logger = c.Logger.With("component", "membership")
	c.Membership.Registerer = c.Registerer
	c.Routing.VNodes = c.VNodes
	c.Routing.Replicas = c.Replicas
	c.Routing.Logger = c.Logger.With("component", "routing")
	c.Routing.Registerer = c.Registerer
	c.Replica.Replicas, c.Replica.WriteQuorum, c.Replica.ReadQuorum, c.Replica.LWW = c.Replicas, c.WriteQuorum, c.ReadQuorum, c.LWW
	c.Maintenance.LWW = c.LWW
	if c.Replica.HintMaxAge >= c.Maintenance.TombstoneGrace {
		return c, fmt.Errorf("%w: hint max age %v must be below the tombstone grace %v, or a late hint could bring back a purged key",
			ErrConfig, c.Replica.HintMaxAge, c.Maintenance.TombstoneGrace)
	}
	c.Replica.Logger = c.Logger.With("component", "replica")
	c.Replica.Registerer = c.Registerer
	if err := c.Membership.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := c.Routing.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := c.Replica.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return c, c.Maintenance.Validate()
}
