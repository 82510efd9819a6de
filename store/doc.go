// Package store keeps one node's records on disk in Badger, behind the
// dht.Store interface that the dht layer declares. Only the daemon imports
// it; Badger's types and errors never leave it.
//
// # Model
//
// The store is an ordered map from byte keys to dht.Record values:
//
//   - Keys are opaque and ordered bytewise (0x00 first, 0xff last). The dht
//     layer lays keys out so that a ring range is a key range, and reads it
//     back with Scan(start, end) and Count(prefix). Keys may be empty and
//     up to MaxKeySize bytes.
//   - Records are stored in their wire form (dht.MarshalRecord), so a
//     record read back is exactly the record written, and bytes that do not
//     decode are reported as dht.ErrCorruptRecord instead of a panic.
//   - Expiry is the dht layer's: an expired version is part of its record
//     until the dht layer deletes the record, as a tombstone is. Records
//     written by releases that gave them Badger's TTL still vanish when it
//     passes, as Badger hides them itself.
//   - Durability: with Config.SyncWrites (the default), a Put, PutBatch or
//     Delete that returns nil is in the store's commit log and fdatasynced
//     (see commitlog.go); Badger runs without syncs of its own, and Open
//     replays the log over whatever of Badger's state a machine crash lost.
//     Concurrent writes share one commit and one fdatasync (group commit,
//     see commit.go). A PutBatch is atomic, also across crashes. A write
//     that failed after it reached the log (Badger refused it) may be there
//     after a restart, as a write whose context ended may.
//   - Deletes remove the key outright; the dht layer's tombstones are
//     ordinary records.
//
// # Contract
//
// Open takes the data directory's lock; a second Open of the same directory,
// in this process or another, fails with ErrLocked, and a directory this
// user cannot use fails with ErrUnreadable. All methods are safe for
// concurrent use and honour their context: a write whose context ends while
// it waits returns the context's error and may still be committed. After
// Close every method fails with ErrClosed (which also matches dht.ErrClosed).
// Close waits for calls in progress, so it must not be called from a Scan
// callback.
//
// Background work: Badger flushes and compacts on its own goroutines; the
// store adds a group committer, the commit log's checkpoints and a
// value-log GC loop (Config.GCInterval). Badger's log lines go to
// Config.Logger, at debug except its warnings and errors.
//
// Memory: DefaultConfig shrinks Badger's buffers and caches for a daemon
// that shares its host. An empty store open and idle adds about 2 MiB to the
// process's RSS; under sustained writes expect roughly NumMemtables ×
// MemTableSize plus the two caches.
package store
