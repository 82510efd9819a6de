package store

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ringkv/ringkv/dht"
)

// Stored form.
//
// A record under user key K is the Badger entry
//
//	key:       nsRecord || K
//	value:     dht.MarshalRecord(record)
//	expiresAt: ceil(record.ExpiresAt / 1e9) unix seconds, 0 for never
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

// encodeRecord returns the stored value of rec and its Badger expiry.
func encodeRecord(rec dht.Record) (val []byte, expiresAt uint64, err error) {
	val, err = dht.MarshalRecord(rec)
	if err != nil {
		return nil, 0, fmt.Errorf("store: encode record: %w", err)
	}
	if len(val) > dht.MaxRecordSize {
		return nil, 0, fmt.Errorf("%w: %d bytes, limit %d", dht.ErrRecordTooLarge, len(val), dht.MaxRecordSize)
	}
	return val, badgerExpiry(rec.ExpiresAt), nil
}

// badgerExpired reports whether Badger's TTL for rec has passed by the
// system clock, as Badger decides it, so that a cached record vanishes
// when Badger's copy does.
func badgerExpired(rec dht.Record) bool {
	exp := badgerExpiry(rec.ExpiresAt)
	return exp != 0 && exp <= uint64(time.Now().Unix())
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

// badgerExpiry converts a record expiry in unix nanoseconds to Badger's unix
// seconds, rounding up so that Badger never drops a record before the store
// itself hides it. 0 stays 0 (never); an expiry at or before the epoch
// becomes 1, which Badger treats as long past.
func badgerExpiry(ns int64) uint64 {
	switch {
	case ns == 0:
		return 0
	case ns < 0:
		return 1
	}
	sec := uint64(ns / int64(time.Second))
	if ns%int64(time.Second) != 0 {
		sec++
	}
	return sec
}

// expiry is what a Badger expiry in seconds says about a record at a time.
type expiry uint8

const (
	expiryLive    expiry = iota // the record has not expired
	expiryExpired               // the record has expired
	expiryUnsure                // the expiry falls in the current second: decode to tell
)

// classifyExpiry decides from a Badger expiry alone (keys-only iteration)
// whether a record is live at now. The exact nanosecond expiry lies in
// ((sec-1)·1e9, sec·1e9], so only the second before sec is ambiguous.
func classifyExpiry(sec uint64, now time.Time) expiry {
	if sec == 0 {
		return expiryLive
	}
	if sec > math.MaxInt64/uint64(time.Second) {
		return expiryLive // beyond year 2262: int64 nanoseconds cannot reach it
	}
	hi := int64(sec) * int64(time.Second)
	n := now.UnixNano()
	switch {
	case n >= hi:
		return expiryExpired
	case n <= hi-int64(time.Second):
		return expiryLive
	}
	return expiryUnsure
}
