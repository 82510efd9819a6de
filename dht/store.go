package dht

import "context"

// Store is the durable, ordered map from byte keys to records that one node
// keeps. The dht layer chooses the key layout (it prefixes keys by kind and
// ring position so that a ring range is a key range); the store treats keys
// as opaque bytes ordered bytewise.
//
// Implementations must be safe for concurrent use. A Put or Delete that
// returns nil is durable to the degree the store is configured for (fsync
// before return when syncing is on). Records whose ExpiresAt has passed are
// invisible to Get and Scan and are reclaimed in the background.
type Store interface {
	// Get returns the record stored under key, or ErrNotFound.
	Get(ctx context.Context, key []byte) (Record, error)
	// Put stores rec under key, replacing what was there.
	Put(ctx context.Context, key []byte, rec Record) error
	// PutBatch stores many records atomically with one commit.
	PutBatch(ctx context.Context, entries []Entry) error
	// PutEach stores each entry as Put would, each atomic on its own, all
	// handed to the store at once so that they share commits; errs[i] is
	// entry i's result.
	PutEach(ctx context.Context, entries []Entry) (errs []error)
	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key []byte) error
	// Scan calls fn for each live record with start <= key < end, in key
	// order. A nil end means no upper bound. The key and record passed to fn
	// are valid only during the call. Returning an error from fn stops the
	// scan and Scan returns that error.
	Scan(ctx context.Context, start, end []byte, fn func(key []byte, rec Record) error) error
	// Count returns the number of live records whose key starts with prefix.
	Count(ctx context.Context, prefix []byte) (int64, error)
	// Size returns the bytes the store occupies on disk.
	Size() int64
}

// Entry is one key and record of a PutBatch.
type Entry struct {
	Key    []byte
	Record Record
}
