package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Config tunes a Joiner. Start from DefaultConfig and change what you need;
// NewJoiner calls Validate.
type Config struct {
	// InitialBackoff is the wait after a peer's first failed dial. Default
	// 1s. Shorter finds a peer that is just starting sooner; longer spares a
	// peer that is overloaded.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between dials of one peer. Default 1m. It
	// bounds how long a node takes to notice that a dead bootstrap peer came
	// back; shorter costs more dials to peers that stay dead.
	MaxBackoff time.Duration
	// Multiplier grows the wait after each consecutive failure. Default 2.
	// Must be at least 1 (1 retries at a fixed InitialBackoff).
	Multiplier float64
	// Jitter is the fraction by which each wait is shortened at random: with
	// 0.2 a wait of d is drawn uniformly from [0.8·d, d]. Default 0.2, range
	// [0, 1). It keeps nodes that restarted together from dialling in
	// lockstep; 0 makes waits deterministic.
	Jitter float64
	// MaxAttempts is how many consecutive failed dials of a peer are made
	// before the joiner gives up on it until Reconnect or SetPeers names it
	// again. Default 0: retry forever, which suits bootstrap peers that may
	// be down for maintenance.
	MaxAttempts int
	// DialTimeout bounds one dial, including the dialer's protocol check.
	// Default 10s. Too short fails peers on slow links; too long delays the
	// next retry of an address that black-holes packets.
	DialTimeout time.Duration
	// Self is the local node's peer ID. A bootstrap entry naming it is
	// skipped, so every node of a cluster can share one bootstrap list.
	// Default "" (nothing skipped).
	Self peer.ID
	// Logger receives the joiner's logs. Default slog.Default(); nil means
	// slog.Default() too.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on each Config field.
func DefaultConfig() Config {
	return Config{
		InitialBackoff: time.Second,
		MaxBackoff:     time.Minute,
		Multiplier:     2,
		Jitter:         0.2,
		MaxAttempts:    0,
		DialTimeout:    10 * time.Second,
		Logger:         slog.Default(),
	}
}

// Validate reports every field that is out of range, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("bootstrap: config: "+format, args...))
	}
	if c.InitialBackoff <= 0 {
		bad("InitialBackoff must be positive, got %v", c.InitialBackoff)
	}
	if c.MaxBackoff < c.InitialBackoff {
		bad("MaxBackoff (%v) must be at least InitialBackoff (%v)", c.MaxBackoff, c.InitialBackoff)
	}
	if math.IsNaN(c.Multiplier) || c.Multiplier < 1 || math.IsInf(c.Multiplier, 0) {
		bad("Multiplier must be a finite number >= 1, got %v", c.Multiplier)
	}
	if math.IsNaN(c.Jitter) || c.Jitter < 0 || c.Jitter >= 1 {
		bad("Jitter must be in [0, 1), got %v", c.Jitter)
	}
	if c.MaxAttempts < 0 {
		bad("MaxAttempts must be >= 0 (0 = forever), got %d", c.MaxAttempts)
	}
	if c.DialTimeout <= 0 {
		bad("DialTimeout must be positive, got %v", c.DialTimeout)
	}
	return errors.Join(errs...)
}

// Backoff is the wait after the attempt-th consecutive failed dial
// (attempt >= 1; smaller values count as 1):
//
//	base = min(InitialBackoff · Multiplier^(attempt-1), MaxBackoff)
//	wait = base · (1 - Jitter·rnd)
//
// rnd is a uniform random number in [0, 1); values outside are clamped. The
// result never exceeds MaxBackoff, and jitter only shortens waits, so peers
// stuck at the cap still spread out. Backoff is pure: the caller supplies
// the randomness.
func Backoff(cfg Config, attempt int, rnd float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if math.IsNaN(rnd) || rnd < 0 {
		rnd = 0
	}
	if rnd > 1 {
		rnd = 1
	}
	maxD := float64(cfg.MaxBackoff)
	base := float64(cfg.InitialBackoff) * math.Pow(cfg.Multiplier, float64(attempt-1))
	if math.IsNaN(base) || base > maxD {
		base = maxD
	}
	wait := base * (1 - cfg.Jitter*rnd)
	switch {
	case wait >= maxD:
		return cfg.MaxBackoff // also avoids float rounding past MaxInt64
	case wait < 0:
		return 0
	}
	return time.Duration(wait)
}
