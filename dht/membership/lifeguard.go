package membership

import (
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Lifeguard's two refinements of SWIM: suspicion timeouts that shrink with
// independent confirmations, and local health awareness.

// suspicion is the Lifeguard timer of one suspected member. It starts at max
// and shrinks toward min, on a log scale, as up to k independent members
// confirm the suspicion. It is plain data driven by the Clock: the owner
// checks deadline against now.
type suspicion struct {
	k        int           // confirmations that bring the timeout to min
	n        int           // confirmations so far
	min, max time.Duration // timeout bounds
	start    time.Time
	deadline time.Time
	// confirmed holds who suspected; the first suspector is not counted.
	confirmed map[peer.ID]struct{}
}

func newSuspicion(from peer.ID, k int, min, max time.Duration, now time.Time) *suspicion {
	s := &suspicion{k: k, min: min, max: max, start: now, confirmed: map[peer.ID]struct{}{from: {}}}
	timeout := max
	if k < 1 {
		timeout = min
	}
	s.deadline = now.Add(timeout)
	return s
}

// confirm counts an independent suspicion by from and reports whether it was
// new (and so worth passing on).
func (s *suspicion) confirm(from peer.ID) bool {
	if s.n >= s.k {
		return false
	}
	if _, ok := s.confirmed[from]; ok {
		return false
	}
	s.confirmed[from] = struct{}{}
	s.n++
	s.deadline = s.start.Add(suspicionTotal(s.n, s.k, s.min, s.max))
	return true
}

// suspicionTotal is the timeout after n of k confirmations:
// max - (max-min)·log(n+1)/log(k+1), at least min.
func suspicionTotal(n, k int, min, max time.Duration) time.Duration {
	if k < 1 {
		return min
	}
	frac := math.Log(float64(n)+1) / math.Log(float64(k)+1)
	raw := time.Duration(float64(max) - frac*float64(max-min))
	if raw < min {
		return min
	}
	return raw
}

// suspicionTimeout is the minimum suspicion timeout for a cluster of n:
// mult × max(1, log10(n)) × interval.
func suspicionTimeout(mult, n int, interval time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(mult) * scale * float64(interval))
}

// adjustHealthLocked applies a Lifeguard health delta: +1 per missed ack or
// nack and per refutation, -1 per successful probe, within
// [0, AwarenessMaxMultiplier-1].
func (m *Memberlist) adjustHealthLocked(delta int) {
	m.health = min(max(m.health+delta, 0), m.cfg.AwarenessMaxMultiplier-1)
	m.met.health.Set(float64(m.health))
}

// scaleLocked stretches a probe duration by the health multiplier.
func (m *Memberlist) scaleLocked(d time.Duration) time.Duration {
	return d * time.Duration(m.health+1)
}
