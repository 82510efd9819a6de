package store

import (
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/dht"
)

// Stored form.
//
// A record under user key K is the Badger entry
//
//	key:       nsRecord || K
//	value:     dht.MarshalRecord(record)
//
// The namespace byte keeps user keys clear of Badger's reserved "!badger!"
// prefix, allows the empty key, and leaves room for store metadata under
// other namespace bytes. Byte order of user keys is preserved.
const (
	nsRecord byte = 'r'
	// badgerMaxKeySize is the longest key Badger accepts (txn.go).
	badgerMaxKeySize = 65000
	// MaxKeySize is the longest user key the store accepts, in bytes.
	MaxKeySize = badgerMaxKeySize - 1
)

// dataKey returns the Badger key of user key k, in a new slice.
func dataKey(k []byte) ([]byte, error) {
	if len(k) > MaxKeySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidKey, len(k), MaxKeySize)
	}
	b := make([]byte, 1+len(k))
	b[0] = nsRecord
	copy(b[1:], k)
	return b, nil
}

// userKey strips the namespace byte from a Badger key of the record space.
func userKey(bk []byte) []byte { return bk[1:] }

// scanBounds returns the Badger key range [lo, hi) for user keys
// [start, end); a nil end is the end of the record namespace. Keys longer
// than MaxKeySize cannot be stored, so bounds are not length-checked.
func scanBounds(start, end []byte) (lo, hi []byte) {
	lo = append([]byte{nsRecord}, start...)
	if end == nil {
		return lo, []byte{nsRecord + 1}
	}
	return lo, append([]byte{nsRecord}, end...)
}

// encodeRecord returns the stored value of rec.
func encodeRecord(rec dht.Record) ([]byte, error) {
	val, err := dht.MarshalRecord(rec)
	if err != nil {
		return nil, fmt.Errorf("store: encode record: %w", err)
	}
	if len(val) > dht.MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", dht.ErrRecordTooLarge, len(val), dht.MaxRecordSize)
	}
	return val, nil
}

// decodeRecord decodes the stored value of key. Any failure, including a
// length over dht.MaxRecordSize (which Put never writes), is corruption.
func decodeRecord(key, val []byte) (dht.Record, error) {
	rec, err := dht.UnmarshalRecord(val)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, dht.ErrCorruptRecord) {
		err = fmt.Errorf("%w: %w", dht.ErrCorruptRecord, err)
	}
	return dht.Record{}, fmt.Errorf("store: key %x: %w", key, err)
}
