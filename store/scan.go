package store

import (
	"bytes"
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

const (
	// scanPrefetch is how many values a Scan iterator reads ahead.
	scanPrefetch = 64
	// ctxCheckEvery is how many keys a Scan or Count visits between checks
	// of its context.
	ctxCheckEvery = 256
)

// errStopScan carries a callback's error out of Badger's View untouched.
type errStopScan struct{ err error }

func (e *errStopScan) Error() string { return e.err.Error() }

// Scan calls fn for each record with start <= key < end, in bytewise
// key order; a nil end means no upper bound, a nil start means from the
// first key. The key and record are valid only during the call. An error
// from fn stops the scan and is returned as is. The scan reads one snapshot:
// writes that commit during it are not seen. fn may call the store's other
// methods, but not Close.
func (s *Badger) Scan(ctx context.Context, start, end []byte, fn func(key []byte, rec dht.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	if !s.gate.enter() {
		return errUseAfterClose
	}
	defer s.gate.exit()
	lo, hi := scanBounds(start, end)
	txn, done := s.vers.snapshot()
	err := s.scan(ctx, txn, lo, hi, end == nil, fn)
	done()
	var stop *errStopScan
	switch {
	case err == nil:
		return nil
	case errors.As(err, &stop):
		return stop.err
	case errors.Is(err, dht.ErrCorruptRecord), errors.Is(err, ctx.Err()):
		return err
	}
	return opError("scan", err)
}

// scan iterates txn over [lo, hi), handing the records to fn.
func (s *Badger) scan(ctx context.Context, txn *badger.Txn, lo, hi []byte, open bool, fn func([]byte, dht.Record) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchSize = scanPrefetch
	opts.Prefix = iterPrefix(lo, hi, open)
	it := txn.NewIterator(opts)
	defer it.Close()
	n := 0
	for it.Seek(lo); it.Valid(); it.Next() {
		item := it.Item()
		if bytes.Compare(item.Key(), hi) >= 0 {
			return nil
		}
		if n++; n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := s.visit(item, fn); err != nil {
			return err
		}
	}
	return nil
}

// visit decodes one item and hands it to fn.
func (s *Badger) visit(item *badger.Item, fn func([]byte, dht.Record) error) error {
	key := userKey(item.Key())
	var rec dht.Record
	err := item.Value(func(v []byte) error {
		var err error
		rec, err = decodeRecord(key, v)
		return err
	})
	if err != nil {
		return err
	}
	if err := fn(key, rec); err != nil {
		return &errStopScan{err: err}
	}
	return nil
}

// Count returns the number of records whose key starts with prefix. It
// iterates keys only.
func (s *Badger) Count(ctx context.Context, prefix []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !s.gate.enter() {
		return 0, errUseAfterClose
	}
	defer s.gate.exit()
	bp := append([]byte{nsRecord}, prefix...)
	var count int64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = bp
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if count++; count%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return count, nil
	case errors.Is(err, ctx.Err()):
		return 0, err
	}
	return 0, opError("count", err)
}

// iterPrefix is the prefix every Badger key in [lo, hi) shares: the record
// namespace when unbounded, else the longest common prefix of lo and hi (any
// key between two keys shares their common prefix). Badger uses an
// iterator's prefix to skip tables that cannot hold it.
func iterPrefix(lo, hi []byte, unbounded bool) []byte {
	if unbounded {
		return []byte{nsRecord}
	}
	return commonPrefix(lo, hi)
}

// commonPrefix returns the longest common prefix of a and b, as a new slice.
func commonPrefix(a, b []byte) []byte {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return bytes.Clone(a[:n])
}
