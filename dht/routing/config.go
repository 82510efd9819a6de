package routing

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring"
)

// Protocol is the routing protocol: one FindRequest, one FindResponse.
const Protocol dht.Protocol = "/ringkv/route/1.0.0"

// Errors returned to callers; test with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate refused the configuration.
	ErrInvalidConfig = errors.New("routing: invalid config")
	// ErrInvalidPeer: the local peer given to New, or a seed, is not valid.
	ErrInvalidPeer = errors.New("routing: invalid peer")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("routing: already started")
	// ErrLookupFailed: the lookup ran out of candidates or hops without an
	// owner's answer.
	ErrLookupFailed = errors.New("routing: lookup failed")
	// ErrHopLimit: a recursive request reached its hop limit.
	ErrHopLimit = errors.New("routing: hop limit reached")
	// ErrJoinFailed: no peer answered any of the join's requests.
	ErrJoinFailed = errors.New("routing: join failed")
	// ErrRefused: a peer's message was malformed or over a bound.
	ErrRefused = errors.New("routing: message refused")
)

// Wire bounds. A remote PeerInfo over one of them is dropped and counted in
// ringkv_routing_refused_total; a message with more list entries than
// MaxWirePeers is refused whole. They are constants so that every node of a
// cluster agrees on them.
const (
	// MaxAddrs bounds the addresses of one peer.
	MaxAddrs = 16
	// MaxAddrLen bounds one address, in bytes.
	MaxAddrLen = 256
	// MaxZoneLen bounds a zone name, in bytes.
	MaxZoneLen = 64
	// MaxCapacity bounds a peer's capacity: it must be in (0, MaxCapacity].
	MaxCapacity = 64
	// MaxWirePeers bounds each list of peers in one message.
	MaxWirePeers = 64
	// MaxWireExclude bounds the excluded peers of one request.
	MaxWireExclude = 16
	// MaxWirePath bounds the hops of one recursive answer.
	MaxWirePath = 256
	// maxHopsLimit bounds Config.MaxHops, and a recursive request's ttl.
	maxHopsLimit = 64
)

// Config tunes one Router. Every node of a cluster must use the same VNodes
// and Replicas, or they disagree on owners and replica sets.
type Config struct {
	// VNodes is the number of ring tokens per unit of capacity. Default
	// ring.DefaultVNodes (256). Must match the ring every other component
	// uses. More tokens balance ownership but multiply the successor lists
	// (up to VNodes·Successors entries) and the cost of a local-ring rebuild.
	VNodes int
	// Replicas is N, the length of the replica set a directory node returns.
	// Default 3.
	Replicas int
	// Successors is r, the distinct successors kept after each own token.
	// Default 8. More survive more simultaneous failures of neighbours and
	// cover longer zone-aware preference walks, at VNodes·r peers of state.
	Successors int
	// Predecessors is p, the distinct predecessors kept before each own
	// token. Default 4. One is enough on a stable ring; more keep a node
	// from claiming a dead predecessor's neighbours' ranges (and from
	// losing a newcomer that arrives behind a dead predecessor) while a
	// cold node (CacheSize 0) has nothing else to fall back on. Costs
	// VNodes·p peers of state.
	Predecessors int
	// CacheSize bounds the LRU cache of recently seen peers (lookup answers,
	// incoming requests, gossip) beyond the successor lists, predecessors and
	// fingers. Default 16384; 0 keeps only the structural peers ("cold").
	// A cache that holds most of the cluster makes lookups one hop: in the
	// daemon, gossip membership fills it with every member, so clusters of
	// up to 16k nodes route in one hop and larger ones fall back to the
	// fingers from wherever the cache ends. Costs about 200 bytes plus the
	// peer's tokens per entry.
	CacheSize int
	// Alpha is the number of queries a lookup round sends in parallel, and
	// half the candidates an answer carries (K = 2·Alpha). Default 3. More
	// finds the owner in fewer rounds at more messages per lookup.
	Alpha int
	// MaxHops bounds a lookup's rounds (iterative) or forwards (recursive).
	// Default 32, at most 64.
	MaxHops int
	// QueryTimeout bounds one query of a lookup; a peer that does not answer
	// within it counts as failed and is forgotten. A recursive request gets
	// 4·QueryTimeout end to end. Default 1s.
	QueryTimeout time.Duration
	// StabilizeInterval is the time between two maintenance rounds (one
	// Stabilize, one FixFingers) of Start's loop. Default 2s; 0 disables the
	// loop, and the caller (the simulator) calls Stabilize and FixFingers.
	// Shorter repairs the ring sooner after churn, at 2·StabilizeTokensPerRound
	// + FixFingersPerRound requests per round.
	StabilizeInterval time.Duration
	// StabilizeTokensPerRound is how many own tokens one Stabilize round
	// refreshes, rotating through all of them. Default 16. With VNodes 256 a
	// token's neighbourhood is refreshed every 16 rounds.
	StabilizeTokensPerRound int
	// FixFingersPerRound is how many fingers one FixFingers round refreshes
	// by a lookup, rotating through the 64 (fingers inside the successor
	// list are exact and skipped). Default 4.
	FixFingersPerRound int
	// ForgetTimeout is how long a forgotten peer (dead, left, or found
	// unreachable) is ignored when other peers' answers still name it,
	// unless it contacts the node itself or Observe is called for it.
	// Default 30s. Shorter re-learns a peer that was only briefly cut off
	// sooner; longer keeps stale neighbours from re-planting a dead peer.
	// The last maxTombstones forgotten peers are remembered.
	ForgetTimeout time.Duration
	// SerialQueries sends the queries of a lookup round one after another
	// instead of in parallel goroutines. The round's answers are merged in the
	// same order either way; over an in-memory transport (the simulator) this
	// only saves goroutines. Default false.
	SerialQueries bool
	// Logger receives debug logs of refused input and of unreachable peers.
	// Default nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the ringkv_routing_* metrics. Default nil: no
	// metrics are kept at all (the simulator runs a million routers).
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		VNodes:                  ring.DefaultVNodes,
		Replicas:                3,
		Successors:              8,
		Predecessors:            4,
		CacheSize:               16384,
		Alpha:                   3,
		MaxHops:                 32,
		QueryTimeout:            time.Second,
		StabilizeInterval:       2 * time.Second,
		StabilizeTokensPerRound: 16,
		FixFingersPerRound:      4,
		ForgetTimeout:           30 * time.Second,
	}
}

// Validate checks every field and the relations between them.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.VNodes < 1 || c.VNodes > ring.MaxTokens {
		bad("VNodes %d must be in [1, %d]", c.VNodes, ring.MaxTokens)
	}
	if c.Replicas < 1 || c.Replicas > MaxWirePeers {
		bad("Replicas %d must be in [1, %d]", c.Replicas, MaxWirePeers)
	}
	if c.Successors < 1 || c.Successors > MaxWirePeers/2 {
		bad("Successors %d must be in [1, %d]", c.Successors, MaxWirePeers/2)
	}
	if c.Successors < c.Replicas-1 {
		bad("Successors %d must be at least Replicas-1 (%d) so an owner knows its replica set",
			c.Successors, c.Replicas-1)
	}
	if c.Predecessors < 1 || c.Predecessors > MaxWirePeers/2 {
		bad("Predecessors %d must be in [1, %d]", c.Predecessors, MaxWirePeers/2)
	}
	if c.CacheSize < 0 {
		bad("CacheSize %d must not be negative", c.CacheSize)
	}
	if c.Alpha < 1 || 2*c.Alpha > MaxWirePeers {
		bad("Alpha %d must be in [1, %d]", c.Alpha, MaxWirePeers/2)
	}
	if c.MaxHops < 1 || c.MaxHops > maxHopsLimit {
		bad("MaxHops %d must be in [1, %d]", c.MaxHops, maxHopsLimit)
	}
	if c.QueryTimeout <= 0 {
		bad("QueryTimeout %v must be positive", c.QueryTimeout)
	}
	if c.StabilizeInterval < 0 {
		bad("StabilizeInterval %v must not be negative (0 disables the loop)", c.StabilizeInterval)
	}
	if c.StabilizeTokensPerRound < 1 {
		bad("StabilizeTokensPerRound %d must be at least 1", c.StabilizeTokensPerRound)
	}
	if c.FixFingersPerRound < 0 || c.FixFingersPerRound > 64 {
		bad("FixFingersPerRound %d must be in [0, 64]", c.FixFingersPerRound)
	}
	if c.ForgetTimeout < 0 {
		bad("ForgetTimeout %v must not be negative", c.ForgetTimeout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// candidates is K, the candidates one "closer" answer carries.
func (c Config) candidates() int { return 2 * c.Alpha }

// MaxSize returns the bound on Size for a node holding ownTokens tokens:
// ownTokens·(Successors+Predecessors) successor- and predecessor-list
// entries, 64 fingers and CacheSize cached peers. Between two rebuilds of the local
// ring up to 32 more observed peers may wait to be sorted in (Size sorts
// them in first).
func (c Config) MaxSize(ownTokens int) int {
	return ownTokens*(c.Successors+c.Predecessors) + 64 + c.CacheSize
}
