//go:build race

package ring_test

// raceEnabled: the race detector slows the ring's loops about tenfold and
// the ring runs no goroutines, so figure sweeps run a reduced set under it.
const raceEnabled = true
