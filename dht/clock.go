package dht

import "time"

// Clock tells the time. Components take one so tests and the simulator can
// drive time themselves.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// OffsetClock is a clock shifted by a fixed offset, for fault injection.
type OffsetClock struct {
	Base   Clock
	Offset time.Duration
}

// Now returns the base clock's time plus the offset.
func (c OffsetClock) Now() time.Time { return c.Base.Now().Add(c.Offset) }
