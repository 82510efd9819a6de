package store

import (
	"context"

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

// BadgerExpiresAtForTest returns the Badger TTL (unix seconds) on key's entry.
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
func (s *Badger) PutDirectForTest(key []byte, rec dht.Record) error {
	m, err := setMutation(key, rec)
	if err != nil {
		return err
	}
	return opError("put", s.db.Update(func(txn *badger.Txn) error {
		return addMutations(txn, []mutation{m})
	}))
}

// GCPassesForTest is the number of completed value-log GC passes.
func (s *Badger) GCPassesForTest() int64 { return s.gc.runs.Load() }

// CommitStatsForTest returns how many Badger commits the group committer
// made and how many requests they carried.
func (s *Badger) CommitStatsForTest() (commits, requests int64) {
	return s.commit.commits.Load(), s.commit.requests.Load()
}
