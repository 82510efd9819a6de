package store

import (
	"context"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

// Test hooks: reach below the dht.Store surface without exporting Badger.

// PutRawForTest stores val as the raw stored bytes of key, bypassing the
// record codec, to simulate corruption on disk.
func (s *Badger) PutRawForTest(key, val []byte) error {
	bk, err := dataKey(key)
	if err != nil {
		return err
	}
	return s.submit(context.Background(), []mutation{{key: bk, value: val}})
}

// PutLegacyForTest stores val as the raw stored bytes of key with a
// Badger TTL (unix seconds), as releases that kept one expiry per record
// wrote it, and forgets that the store's TTLs were stripped, as in a data
// dir such a release left. It commits at the committer's next timestamp,
// so it must not run concurrently with other writes.
func (s *Badger) PutLegacyForTest(key, val []byte, expiresAt uint64) error {
	bk, err := dataKey(key)
	if err != nil {
		return err
	}
	txn := s.vers.newWrite()
	defer txn.Discard()
	if err := txn.SetEntry(&badger.Entry{Key: bk, Value: val, ExpiresAt: expiresAt}); err != nil {
		return opError("put", err)
	}
	if err := txn.Delete(metaTTLStripped); err != nil {
		return opError("put", err)
	}
	ts := s.vers.next()
	defer s.vers.committed(ts)
	return opError("put", txn.CommitAt(ts, nil))
}

// BadgerExpiresAtForTest returns the Badger TTL (unix seconds) on key's
// entry.
func (s *Badger) BadgerExpiresAtForTest(key []byte) (uint64, error) {
	bk, err := dataKey(key)
	if err != nil {
		return 0, err
	}
	var exp uint64
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(bk)
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		return nil
	})
	return exp, opError("get", err)
}

// PutDirectForTest writes like Put but in its own Badger transaction,
// bypassing the group committer: the baseline for BenchmarkPutParallel.
// Its commits take timestamps from their own counter, far above the
// committer's, and race each other, so a store it wrote to is only good
// for benchmarks.
func (s *Badger) PutDirectForTest(key []byte, rec dht.Record) error {
	m, err := setMutation(key, rec)
	if err != nil {
		return err
	}
	txn := s.vers.newWrite()
	defer txn.Discard()
	if err := addMutations(txn, []mutation{m}); err != nil {
		return opError("put", err)
	}
	return opError("put", txn.CommitAt(directTs.Add(1), nil))
}

// directTs is PutDirectForTest's commit timestamp counter.
var directTs = func() *atomic.Uint64 { var c atomic.Uint64; c.Store(1 << 40); return &c }()

// GCPassesForTest is the number of completed value-log GC passes.
func (s *Badger) GCPassesForTest() int64 { return s.gc.runs.Load() }

// lastForTest is the newest committed timestamp.
func (v *versions) lastForTest() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last
}

// discardForTest is the discard timestamp last given to Badger.
func (v *versions) discardForTest() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.discard
}

// LoseBadgerWritesForTest makes later commits reach the commit log but not
// Badger, as when the machine crashes before Badger's unsynced writes reach
// the disk, and stops the log's checkpoints, which would otherwise release
// those records. Only CrashForTest may follow the writes.
func (s *Badger) LoseBadgerWritesForTest() {
	s.clog.stopCheckpoints()
	s.commit.logOnly = true
}

// CrashForTest closes the store as a crash would leave its commit log: the
// segments stay for the next Open to replay.
func (s *Badger) CrashForTest() error { return s.close(false) }

// BreakCommitLogForTest closes the commit log's file under the committer,
// so that its next write fails.
func (s *Badger) BreakCommitLogForTest() { s.clog.f.Close() }

// FlattenForTest compacts Badger's tables into one level, which drops the
// versions overwritten below the discard timestamp and records how much of
// each value-log file they held (Badger's discard stats).
func (s *Badger) FlattenForTest() error { return s.db.Flatten(1) }

// RewriteValueLogForTest runs one value-log GC as the store's GC loop
// does: Badger rewrites one file, or answers badger.ErrNoRewrite.
func (s *Badger) RewriteValueLogForTest(ctx context.Context) error { return s.gc.rewriteOne(ctx) }

// FailBadgerSyncForTest makes the commit log's syncs of Badger's files
// fail with err, counting the failed calls in calls; a nil err restores
// them.
func (s *Badger) FailBadgerSyncForTest(err error, calls *atomic.Int64) {
	s.clog.durMu.Lock()
	defer s.clog.durMu.Unlock()
	if err == nil {
		s.clog.syncBadgerFn = syncBadger
		return
	}
	s.clog.syncBadgerFn = func(string, uint32) (uint32, error) {
		calls.Add(1)
		return 0, err
	}
}
