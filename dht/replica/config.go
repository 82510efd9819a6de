package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes replication. Every field has a default in DefaultConfig.
type Config struct {
	// Replicas is N, the copies of each key. Default 3.
	Replicas int
	// WriteQuorum is W, the durable replica writes a put waits for by
	// default. Default 2.
	WriteQuorum int
	// ReadQuorum is R, the replica answers a get waits for by default.
	// Default 2. W + R > N makes every read see the latest acknowledged
	// write while at most N - max(W, R) replicas are down.
	ReadQuorum int
	// LWW keeps only the latest sibling by timestamp (last writer wins)
	// instead of every concurrent version. Default false: concurrent
	// writes are never silently dropped.
	LWW bool
	// MaxSiblings refuses a write that would leave a key with more
	// siblings than this; the client must read and write with the context
	// to resolve them. Default 100.
	MaxSiblings int
	// RequestTimeout bounds one operation and each replica exchange in it
	// when the caller's context has no deadline. Default 5s.
	RequestTimeout time.Duration
	// RepairWait is how long a read keeps waiting, after answering, for the
	// replicas that had not answered, to repair them. Default 2s.
	RepairWait time.Duration
	// SpeculativeRead is how long a read waits for its first R replicas
	// before asking the others too. Default 20ms: far above a healthy
	// replica's answer on a LAN, far below a timeout.
	SpeculativeRead time.Duration
	// ReadRepairChance is the share of reads that ask every replica, not
	// just R, and repair those found stale. Default 0.1; anti-entropy
	// repairs the rest.
	ReadRepairChance float64
	// HintInterval is the period of hinted handoff: records held for a
	// replica that was down are sent to it once it is alive. Default 2s.
	HintInterval time.Duration
	// HintBatch bounds the hints delivered per target and round. Default 512.
	HintBatch int
	// HintMaxAge is how long after its newest write a hint is still
	// delivered; older hints are dropped. Default 30m. It must stay below
	// the tombstone grace (the node checks it), with room for clock skew:
	// a hint delivered after every replica purged the tombstone that
	// deleted one of its values would bring the value back (see
	// hints.go). A longer age keeps writes for replicas that are down
	// longer; once a hint is dropped, the other replicas' copies reach
	// the replica through anti-entropy.
	HintMaxAge time.Duration
	// MaxKeySize and MaxValueSize bound keys and values accepted from
	// peers, in bytes. Defaults MaxKeyLimit (32 KiB) and 16 MiB, at or
	// above any client limit.
	MaxKeySize   int
	MaxValueSize int
	// Coordinates reports whether this node may coordinate writes now:
	// false while it does not know the cluster's members, when its
	// preference lists cannot be trusted. A write forwarded to it then is
	// refused unseen, and the forwarding node moves on to the next
	// replica. Nil means always.
	Coordinates func() bool
	// Logger receives the engine's logs; remote-caused failures log at debug.
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil means none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Replicas:         3,
		WriteQuorum:      2,
		ReadQuorum:       2,
		MaxSiblings:      100,
		RequestTimeout:   5 * time.Second,
		RepairWait:       2 * time.Second,
		SpeculativeRead:  20 * time.Millisecond,
		ReadRepairChance: 0.1,
		HintInterval:     2 * time.Second,
		HintBatch:        512,
		HintMaxAge:       30 * time.Minute,
		MaxKeySize:       MaxKeyLimit,
		MaxValueSize:     16 << 20,
	}
}

// MaxKeyLimit is the largest key ringkv stores, in bytes: store keys add
// a kind, a position, a length and a peer ID to it, and must stay within
// the store's and the wire's bounds.
const MaxKeyLimit = 32 << 10

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("replica: invalid config")

// Validate checks each field and their relations.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Replicas < 1 || c.Replicas > 16:
		return bad("replicas %d out of range 1..16", c.Replicas)
	case c.WriteQuorum < 1 || c.WriteQuorum > c.Replicas:
		return bad("write quorum %d out of range 1..%d", c.WriteQuorum, c.Replicas)
	case c.ReadQuorum < 1 || c.ReadQuorum > c.Replicas:
		return bad("read quorum %d out of range 1..%d", c.ReadQuorum, c.Replicas)
	case c.MaxSiblings < 1:
		return bad("max siblings must be positive")
	case c.ReadRepairChance < 0 || c.ReadRepairChance > 1:
		return bad("read repair chance %v out of [0, 1]", c.ReadRepairChance)
	case c.RequestTimeout <= 0 || c.RepairWait < 0 || c.HintInterval <= 0 || c.SpeculativeRead <= 0 || c.HintMaxAge <= 0:
		return bad("timeouts and intervals must be positive")
	case c.HintBatch < 1:
		return bad("hint batch must be positive")
	case c.MaxKeySize < 1 || c.MaxKeySize > MaxKeyLimit || c.MaxValueSize < 1:
		return bad("key size limit must be 1..%d and the value size limit positive", MaxKeyLimit)
	}
	return nil
}
