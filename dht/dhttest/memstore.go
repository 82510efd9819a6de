package dhttest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ringkv/ringkv/dht"
)

var _ dht.Store = (*MemStore)(nil)

// scanChunk is how many entries Scan copies under the lock at a time. fn
// runs without the lock, so it may write to the store it scans.
const scanChunk = 128

// scribble overwrites the key buffer Scan handed to fn once fn returns, so
// a caller that keeps the key past the call (the contract forbids it, as
// Badger reuses its buffers) sees garbage instead of passing by luck.
const scribble = 0xEE

// MemStore is an in-memory dht.Store: keys in bytewise order in a sorted
// slice, each record kept in its encoded form (dht.MarshalRecord), so
// callers never share memory with the store and Size is what a disk store
// would hold before compression. It is safe for concurrent use.
//
// A Cluster keeps one MemStore per slot across restarts, as a data
// directory outlives its process.
type MemStore struct {
	mu      sync.RWMutex
	entries []memEntry // sorted by key, unique; guarded by mu
	size    int64      // sum of len(key)+len(val) over entries; guarded by mu

	hookMu  sync.RWMutex
	onWrite func(key []byte) // guarded by hookMu
}

// memEntry is one stored record. Entries are immutable once stored: a Put
// replaces the entry, so a chunk copied by Scan stays valid.
type memEntry struct {
	key string
	val []byte // dht.MarshalRecord of the record
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{} }

// OnWrite registers fn to be called with the key of every record put or
// deleted, after the write, outside the store's lock; nil removes it.
// Tests use it to observe when data arrives (e.g. during a join).
func (s *MemStore) OnWrite(fn func(key []byte)) {
	s.hookMu.Lock()
	s.onWrite = fn
	s.hookMu.Unlock()
}

func (s *MemStore) wrote(key []byte) {
	s.hookMu.RLock()
	fn := s.onWrite
	s.hookMu.RUnlock()
	if fn != nil {
		fn(bytes.Clone(key))
	}
}

// findLocked returns the index of the first entry with key >= k and
// whether it is k.
func (s *MemStore) findLocked(k string) (int, bool) {
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].key >= k })
	return i, i < len(s.entries) && s.entries[i].key == k
}

// Get returns the record under key, or dht.ErrNotFound when there is none.
func (s *MemStore) Get(ctx context.Context, key []byte) (dht.Record, error) {
	if err := ctx.Err(); err != nil {
		return dht.Record{}, err
	}
	s.mu.RLock()
	i, ok := s.findLocked(string(key))
	var e memEntry
	if ok {
		e = s.entries[i]
	}
	s.mu.RUnlock()
	if !ok {
		return dht.Record{}, dht.ErrNotFound
	}
	return decode(e)
}

func decode(e memEntry) (dht.Record, error) {
	rec, err := dht.UnmarshalRecord(e.val)
	if err != nil {
		return dht.Record{}, fmt.Errorf("dhttest: memstore key %q: %w", e.key, err)
	}
	return rec, nil
}

func encode(key []byte, rec dht.Record) (memEntry, error) {
	if len(key) == 0 {
		return memEntry{}, fmt.Errorf("dhttest: memstore: empty key")
	}
	val, err := dht.MarshalRecord(rec)
	if err != nil {
		return memEntry{}, fmt.Errorf("dhttest: memstore key %q: %w", key, err)
	}
	if len(val) > dht.MaxRecordSize {
		return memEntry{}, fmt.Errorf("%w: %d bytes", dht.ErrRecordTooLarge, len(val))
	}
	return memEntry{key: string(key), val: val}, nil
}

// Put stores rec under key, replacing what was there.
func (s *MemStore) Put(ctx context.Context, key []byte, rec dht.Record) error {
	return s.PutBatch(ctx, []dht.Entry{{Key: key, Record: rec}})
}

// PutEach stores each entry as Put does.
func (s *MemStore) PutEach(ctx context.Context, entries []dht.Entry) []error {
	errs := make([]error, len(entries))
	for i, e := range entries {
		errs[i] = s.Put(ctx, e.Key, e.Record)
	}
	return errs
}

// PutBatch stores every entry or, when one does not encode, none. Like
// the Badger store, whose commit goes on when the caller stops waiting,
// it reports ctx's error if ctx ended during the write (a write hook may
// end it), although the write happened.
func (s *MemStore) PutBatch(ctx context.Context, entries []dht.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	enc := make([]memEntry, len(entries))
	for i, e := range entries {
		me, err := encode(e.Key, e.Record)
		if err != nil {
			return err
		}
		enc[i] = me
	}
	s.mu.Lock()
	for _, e := range enc {
		s.putLocked(e)
	}
	s.mu.Unlock()
	for _, e := range entries {
		s.wrote(e.Key)
	}
	return ctx.Err()
}

func (s *MemStore) putLocked(e memEntry) {
	i, ok := s.findLocked(e.key)
	if ok {
		old := s.entries[i]
		s.size -= int64(len(old.key) + len(old.val))
		s.entries[i] = e
	} else {
		s.entries = append(s.entries, memEntry{})
		copy(s.entries[i+1:], s.entries[i:])
		s.entries[i] = e
	}
	s.size += int64(len(e.key) + len(e.val))
}

// Delete removes key; deleting an absent key is not an error.
func (s *MemStore) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.deleteLocked(string(key))
	s.mu.Unlock()
	s.wrote(key)
	return nil
}

func (s *MemStore) deleteLocked(k string) {
	i, ok := s.findLocked(k)
	if !ok {
		return
	}
	old := s.entries[i]
	s.size -= int64(len(old.key) + len(old.val))
	s.entries = append(s.entries[:i], s.entries[i+1:]...)
}

// Scan calls fn for each record with start <= key < end in key order
// (nil end: no upper bound). It copies a chunk of entries under the lock
// and calls fn without it, so fn may write to the store; a write made
// during the scan is seen if it lands in a chunk not yet copied. The key
// passed to fn is overwritten after fn returns.
func (s *MemStore) Scan(ctx context.Context, start, end []byte, fn func(key []byte, rec dht.Record) error) error {
	from := string(start)
	inclusive := true
	buf := make([]memEntry, 0, scanChunk)
	var keyBuf []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = s.chunk(buf[:0], from, inclusive, end)
		if len(buf) == 0 {
			return nil
		}
		for _, e := range buf {
			rec, err := decode(e)
			if err != nil {
				return err
			}
			keyBuf = append(keyBuf[:0], e.key...)
			err = fn(keyBuf, rec)
			for i := range keyBuf {
				keyBuf[i] = scribble
			}
			if err != nil {
				return err
			}
		}
		from, inclusive = buf[len(buf)-1].key, false
	}
}

// chunk appends to dst up to scanChunk entries with key >= from (> from
// when !inclusive) and key < end.
func (s *MemStore) chunk(dst []memEntry, from string, inclusive bool, end []byte) []memEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.findLocked(from)
	if ok && !inclusive {
		i++
	}
	for ; i < len(s.entries) && len(dst) < scanChunk; i++ {
		if end != nil && s.entries[i].key >= string(end) {
			break
		}
		dst = append(dst, s.entries[i])
	}
	return dst
}

// Count returns the number of records whose key starts with prefix.
func (s *MemStore) Count(ctx context.Context, prefix []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p := string(prefix)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	i, _ := s.findLocked(p)
	for ; i < len(s.entries) && strings.HasPrefix(s.entries[i].key, p); i++ {
		n++
	}
	return n, nil
}

// Size returns the bytes held: the sum of every stored key and encoded
// record.
func (s *MemStore) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.size
}

// Len returns the number of stored records.
func (s *MemStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.entries)
}
