//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

// dirLocked reports whether Badger's directory lock on dir is held. Where
// flock is unavailable it cannot probe and reports false; openError then
// returns Badger's message, which names the lock.
func dirLocked(string) bool { return false }
