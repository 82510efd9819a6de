package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Releases that kept one expiry per record stored a record with an expiry
// under Badger's TTL, so that Badger hid and reclaimed it when it passed,
// context and all. Records now carry their expiry per version and the dht
// layer collects expired ones, so the first Open under this release
// rewrites every such record without the TTL (its bytes unchanged: decoding
// gives the record-wide expiry to its value versions) and records that it
// did, under a key outside the record namespace. Records whose TTL passed
// before the upgrade are already hidden by Badger and stay so.

// nsMeta is the namespace byte of the store's own metadata.
const nsMeta byte = 'm'

// metaTTLStripped marks a store whose Badger TTLs have been removed.
var metaTTLStripped = []byte{nsMeta, 't', 't', 'l'}

// stripBatch is how many records one rewrite commit carries.
const stripBatch = 1024

// stripBadgerTTLs rewrites, once per store, every record stored with a
// Badger TTL without it. It returns how many it rewrote.
func (s *Badger) stripBadgerTTLs(ctx context.Context) (int, error) {
	done := false
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(metaTTLStripped)
		done = err == nil
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		return err
	})
	if err != nil || done {
		return 0, opError("read migration mark", err)
	}
	n := 0
	for from := []byte{nsRecord}; from != nil; {
		var muts []mutation
		if from, muts, err = s.ttlPage(from); err != nil {
			return n, opError("find records with a TTL", err)
		}
		if len(muts) > 0 {
			if err := s.submit(ctx, muts); err != nil {
				return n, fmt.Errorf("store: rewrite records without their TTL: %w", err)
			}
			n += len(muts)
		}
	}
	return n, s.submit(ctx, []mutation{{key: metaTTLStripped, value: []byte{1}}})
}

// ttlPage reads up to stripBatch records with a Badger TTL from from on,
// as mutations that store them again without it, and returns where the
// next page starts (nil at the end of the record namespace).
func (s *Badger) ttlPage(from []byte) (next []byte, muts []mutation, err error) {
	txn, done := s.vers.snapshot()
	defer done()
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte{nsRecord}
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(from); it.Valid(); it.Next() {
		item := it.Item()
		if item.ExpiresAt() == 0 {
			continue
		}
		if len(muts) == stripBatch {
			return item.KeyCopy(nil), muts, nil
		}
		val, err := item.ValueCopy(nil)
		if err != nil {
			return nil, nil, err
		}
		muts = append(muts, mutation{key: item.KeyCopy(nil), value: val})
	}
	return nil, muts, nil
}
