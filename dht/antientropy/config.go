package antientropy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht/merkle"
)

// Errors returned by this package. Callers test for them with errors.Is.
var (
	// ErrConfig: a Config field is out of range.
	ErrConfig = errors.New("antientropy: invalid config")
	// ErrBadRequest: a peer sent a sync request that breaks the protocol
	// or its bounds; it is refused and counted.
	ErrBadRequest = errors.New("antientropy: bad request")
	// ErrBadResponse: a peer answered a sync request with a message that
	// does not match the request.
	ErrBadResponse = errors.New("antientropy: bad response")
	// ErrIncomplete: a round, bootstrap or drain could not exchange every
	// range (a peer failed or no live replica was there to take the data);
	// what did complete is kept, and running it again resumes.
	ErrIncomplete = errors.New("antientropy: incomplete")
	// ErrClosed: the syncer was used after Close.
	ErrClosed = errors.New("antientropy: closed")
)

// Config tunes anti-entropy, range transfers and tombstone collection.
// DefaultConfig fills every field; New calls Validate.
type Config struct {
	// Interval is the period of background anti-entropy rounds (each pair
	// of replicas compared once per interval, plus ownership handoff and
	// tombstone collection). Default 1m; 0 disables the loop, leaving
	// Round to the caller. Shorter intervals repair divergence sooner at
	// the cost of scanning every local record once per interval.
	Interval time.Duration
	// Depth is the deepest Merkle tree built over one arc: 2^Depth leaf
	// buckets. Each arc's depth is chosen from its local item count (about
	// 16 keys per bucket), capped here. Default 10 (merkle.DefaultDepth),
	// range 0..16. Deeper trees narrow a difference to fewer keys at the
	// cost of one more round trip per level and 16 bytes per bucket.
	Depth int
	// RateBytes bounds the sync bytes this node sends and receives as a
	// requester, per second (requests and answers, records included).
	// Default 32 MiB/s. It keeps repair and transfers from starving client
	// traffic; a lower rate makes them take longer.
	RateBytes int
	// BatchKeys bounds the keys listed, fetched or pushed in one message.
	// Default 1024. Larger batches mean fewer round trips and larger
	// messages.
	BatchKeys int
	// BatchBytes bounds the record bytes fetched or pushed in one message
	// (a single larger record still goes alone). Default 1 MiB; keep it
	// well under the transport's maximum message size (dht/p2p: 4 MiB).
	BatchBytes int
	// TombstoneGrace is how long a tombstone is kept after the delete that
	// wrote it before it may be collected, once every replica holds it.
	// Default 1h. It bounds how long a stale copy held outside the replica
	// set (a hint, a node that left) may linger without resurrecting the
	// key; longer keeps deleted keys around longer.
	TombstoneGrace time.Duration
	// LWW says the cluster resolves conflicts by last writer wins, so a key
	// whose latest version is dead is deleted even if older siblings are
	// not. The node sets it from its own mode. Default false.
	LWW bool
	// CallTimeout bounds one sync exchange with a peer. Default 10s, the
	// dht/p2p server's handler bound.
	CallTimeout time.Duration
	// MaxKeySize bounds keys accepted from peers, in bytes. Default 64 KiB
	// (the replica engine's default).
	MaxKeySize int
	// TreeCacheBuckets bounds the leaf buckets of the trees the responder
	// keeps between a peer's Roots request and its Level requests (about
	// 24 bytes per bucket). Default 1<<20. 0 disables the cache: every
	// Level request rebuilds its tree from the store.
	TreeCacheBuckets int
	// TreeCacheTTL is how long a cached tree answers Level requests.
	// Default 30s; a peer's walk takes a few round trips.
	TreeCacheTTL time.Duration
	// ServeConcurrency bounds the sync requests this node answers at once;
	// further requests wait. Default 4. It bounds the CPU and store scans
	// that peers can make a node spend on their repairs.
	ServeConcurrency int
	// Logger receives the syncer's logs; remote-caused failures log at
	// debug. nil discards.
	Logger *slog.Logger
	// Registerer receives the ringkv_antientropy_* metrics; nil means none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Interval:         time.Minute,
		Depth:            merkle.DefaultDepth,
		RateBytes:        32 << 20,
		BatchKeys:        1024,
		BatchBytes:       1 << 20,
		TombstoneGrace:   time.Hour,
		CallTimeout:      10 * time.Second,
		MaxKeySize:       64 << 10,
		TreeCacheBuckets: 1 << 20,
		TreeCacheTTL:     30 * time.Second,
		ServeConcurrency: 4,
	}
}

// LocalConfig returns fast timings for clusters on one machine and for
// tests: rounds every 2s and tombstones collected after a minute.
func LocalConfig() Config {
	c := DefaultConfig()
	c.Interval = 2 * time.Second
	c.TombstoneGrace = time.Minute
	c.CallTimeout = 5 * time.Second
	c.TreeCacheTTL = 10 * time.Second
	return c
}

// Validate checks each field and their relations.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Interval < 0:
		return bad("interval %v is negative", c.Interval)
	case c.Depth < 0 || c.Depth > merkle.MaxDepth:
		return bad("depth %d out of range 0..%d", c.Depth, merkle.MaxDepth)
	case c.RateBytes < 1:
		return bad("rate %d bytes/s must be positive", c.RateBytes)
	case c.BatchKeys < 1 || c.BatchKeys > maxBatchKeys:
		return bad("batch keys %d out of range 1..%d", c.BatchKeys, maxBatchKeys)
	case c.BatchBytes < 1<<10:
		return bad("batch bytes %d below 1 KiB", c.BatchBytes)
	case c.TombstoneGrace <= 0:
		return bad("tombstone grace %v must be positive", c.TombstoneGrace)
	case c.CallTimeout <= 0:
		return bad("call timeout %v must be positive", c.CallTimeout)
	case c.MaxKeySize < 1:
		return bad("max key size %d must be positive", c.MaxKeySize)
	case c.TreeCacheBuckets < 0:
		return bad("tree cache buckets %d is negative", c.TreeCacheBuckets)
	case c.TreeCacheTTL < 0:
		return bad("tree cache ttl %v is negative", c.TreeCacheTTL)
	case c.ServeConcurrency < 1:
		return bad("serve concurrency %d must be positive", c.ServeConcurrency)
	}
	return nil
}

// Protocol bounds, applied to requests from peers whatever their Config.
const (
	// maxBatchKeys bounds the keys in one Keys page, Fetch or Push.
	maxBatchKeys = 1 << 14
	// maxArcs bounds the arcs in one Roots request; each costs the
	// responder a store scan and a tree.
	maxArcs = 1024
	// maxLevelIndexes bounds the node indexes in one Level request
	// (8 bytes of answer each).
	maxLevelIndexes = 1 << 15
	// maxLevelQueries bounds the queries in one Level request.
	maxLevelQueries = maxArcs
	// maxSpans bounds the spans in one Keys request.
	maxSpans = 1 << 14
	// maxRecordVersions and maxRecordContext bound a pushed record, like
	// the replica engine's checks (4x its defaults).
	maxRecordVersions = 400
	maxRecordContext  = 4000
	// bucketKeys is the number of keys per leaf bucket that a tree's
	// depth aims at.
	bucketKeys = 16
)
