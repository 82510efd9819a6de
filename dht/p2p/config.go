package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by this package besides the dht sentinels (dht.ErrUnreachable,
// dht.ErrMessageTooLarge, dht.ErrClosed, *dht.RemoteError). Callers test for
// them with errors.Is.
var (
	// ErrInvalidConfig: a Config field is out of range; New refuses it.
	ErrInvalidConfig = errors.New("p2p: invalid config")
	// ErrBadResponse: the peer answered with bytes that are not a valid
	// response frame or do not decode into the response message. It is
	// always wrapped together with dht.ErrUnreachable: the peer did not give
	// a usable answer.
	ErrBadResponse = errors.New("p2p: malformed response")
)

// Bounds on Config.MaxMessageSize.
const (
	minMessageSize = 1 << 10 // an error message must fit
	maxMessageSize = 1 << 30 // a uvarint length of a sane frame
)

// Config tunes a Transport. Start from DefaultConfig and change what you need;
// New calls Validate.
type Config struct {
	// MaxMessageSize bounds one encoded request or response, in bytes.
	// Default 4 MiB: values are at most 1 MiB, and a record with several
	// siblings of maximum-size values plus its causal context is larger
	// than one value. Lengths are checked before any buffer is allocated,
	// so a peer cannot make a node allocate more than this per stream. A
	// request over the limit fails locally with dht.ErrMessageTooLarge
	// before anything is sent. Raise it together on every node: a response
	// over the caller's limit fails the call. Range 1 KiB to 1 GiB.
	MaxMessageSize int
	// DialTimeout bounds connecting to a peer that is not connected yet.
	// The Call's ctx deadline wins when it is sooner; a later one (or none)
	// does not extend the dial, so a long call (a range transfer) does not
	// spend its budget on an address that does not answer. Default 5s: long
	// enough for a TLS/Noise handshake over a slow WAN link, short enough
	// that a dead peer does not stall a quorum for long.
	DialTimeout time.Duration
	// CallTimeout bounds one exchange (connect, write, read) when the Call's
	// ctx has no deadline, and bounds every handler run on the server side
	// (the wire carries no deadline). Default 10s. Lower it to fail over to
	// other replicas faster; raise it for handlers that stream big ranges.
	CallTimeout time.Duration
	// IdleTimeout is the server side's patience: a stream with no request
	// for this long is closed. Default 60s. It frees resources held for
	// clients that went away without closing; it must exceed
	// PoolIdleTimeout so clients usually drop idle streams first. Enforced
	// through stream read deadlines, so only on transports that support
	// them (TCP, QUIC; not mocknet).
	IdleTimeout time.Duration
	// PoolIdleTimeout is the client side's patience: a pooled stream unused
	// for this long is closed instead of reused. Default 30s; must be less
	// than IdleTimeout (of the peers too), so a reused stream is rarely one
	// the server is closing at the same moment. When that race happens
	// anyway the call is retried once on a fresh stream.
	PoolIdleTimeout time.Duration
	// MaxIdleStreams caps idle pooled streams per (peer, protocol). Default
	// 32; a Call never waits for a pooled stream, it opens a new one when
	// none is idle, so this bounds only what is kept between calls. 0
	// disables reuse: one stream per request (slower, 2-4x fewer round trips
	// per second; kept for comparison and debugging).
	MaxIdleStreams int
	// Logger receives debug logs of remote-caused failures (bad frames,
	// handler panics, retries) with stable keys peer, protocol, op, err.
	// Default slog.Default(); nil discards.
	Logger *slog.Logger
	// Registerer receives the ringkv_p2p_* metrics. Default nil: no metrics.
	// Several Transports may share one registry: they then share the series
	// (wrap the registerer with prometheus.WrapRegistererWith to keep them
	// apart).
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		MaxMessageSize:  4 << 20,
		DialTimeout:     5 * time.Second,
		CallTimeout:     10 * time.Second,
		IdleTimeout:     60 * time.Second,
		PoolIdleTimeout: 30 * time.Second,
		MaxIdleStreams:  32,
		Logger:          slog.Default(),
	}
}

// Validate reports the first field out of range, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.MaxMessageSize < minMessageSize || c.MaxMessageSize > maxMessageSize:
		return fmt.Errorf("%w: MaxMessageSize %d out of [%d, %d]",
			ErrInvalidConfig, c.MaxMessageSize, minMessageSize, maxMessageSize)
	case c.DialTimeout <= 0:
		return fmt.Errorf("%w: DialTimeout %v must be positive", ErrInvalidConfig, c.DialTimeout)
	case c.CallTimeout <= 0:
		return fmt.Errorf("%w: CallTimeout %v must be positive", ErrInvalidConfig, c.CallTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("%w: IdleTimeout %v must be positive", ErrInvalidConfig, c.IdleTimeout)
	case c.PoolIdleTimeout <= 0:
		return fmt.Errorf("%w: PoolIdleTimeout %v must be positive", ErrInvalidConfig, c.PoolIdleTimeout)
	case c.PoolIdleTimeout >= c.IdleTimeout:
		return fmt.Errorf("%w: PoolIdleTimeout %v must be less than IdleTimeout %v",
			ErrInvalidConfig, c.PoolIdleTimeout, c.IdleTimeout)
	case c.MaxIdleStreams < 0:
		return fmt.Errorf("%w: MaxIdleStreams %d must not be negative", ErrInvalidConfig, c.MaxIdleStreams)
	}
	return nil
}
