package node

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/replica"
)

// WriteOptions tune one put or delete.
type WriteOptions struct {
	// W is the number of durable replica writes to wait for; 0 uses the
	// cluster default, and it is capped at N.
	W int
	// Context is the opaque causal context returned by a previous read
	// ("" for none). The write supersedes exactly the versions it names.
	Context string
	// TTL expires the key on every replica after this long; 0 means never.
	TTL time.Duration
}

// ReadOptions tune one get.
type ReadOptions struct {
	// R is the number of replica answers to wait for; 0 uses the cluster
	// default, and it is capped at N.
	R int
}

// MaxTTL is the longest TTL a put may carry (100 years).
const MaxTTL = replica.MaxTTL

// WriteResult reports an acknowledged put or delete.
type WriteResult struct {
	// Context is the causal context of the new version: pass it to the next
	// write of this key to supersede it.
	Context string
	// Acks is how many replicas wrote durably before the answer (>= W).
	Acks int
	// Hinted is how many of those were fallback nodes holding a hint for a
	// replica that was down.
	Hinted int
	// Coordinator is the replica that made the new version.
	Coordinator peer.ID
}

// ReadResult is the outcome of a get.
type ReadResult struct {
	// Siblings are the live concurrent versions; more than one means
	// concurrent writes that a later write with Context should resolve.
	Siblings []dht.Version
	// Context is the causal context covering every sibling.
	Context string
	// Answered is how many replicas answered before the result was built.
	Answered int
	// Hinted is how many of those were fallbacks standing in for a down
	// replica.
	Hinted int
	// ExpiresAt is when the last live sibling expires: zero if any of
	// them never does. Each sibling's own expiry is in its ExpiresAt.
	ExpiresAt time.Time
}

// Hop is one step of a lookup.
type Hop struct {
	Peer    peer.ID       `json:"peer"`
	Latency time.Duration `json:"latency_ns"`
	// Answer is "owner" when the peer answered with the replica set,
	// "closer" when it returned closer candidates, or "failed".
	Answer string `json:"answer"`
}

// Location is where a key lives and how it was found.
type Location struct {
	Key      []byte
	Position uint64
	Owner    peer.ID
	Replicas []peer.ID
	Hops     int
	Path     []Hop
}
