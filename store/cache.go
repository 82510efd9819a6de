package store

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

// Record cache.
//
// Every write of a replica reads the key first (read, merge, write), and
// so does every version a coordinator makes; a read answers from the
// store too. Those reads find the record in Badger's memtable or tables
// and decode it, which was a sixth of a replica's CPU under a write load.
// The cache keeps the decoded records of recently written keys.
//
// Only the committer fills it: before each commit it drops the keys the
// commit writes, after it stores the records the commit wrote, in commit
// order. A read never fills it. So an entry is always the newest
// committed record of its key, and a key that is not cached is read from
// Badger, which has the same newest record or, while its commit is under
// way, that commit's; eviction only costs a decode. Reads of a key never
// go back in time, even during its commit. Get hands out a copy, so
// callers may modify what they get.
//
// Size is bounded by bytes, shard by shard, least recently used first.
// Records above a sixteenth of a shard are never cached.

// cacheShards is the number of independently locked shards.
const cacheShards = 16

// cacheEntryOverhead approximates the bytes an entry costs beyond its
// key and record contents (map slot, list element, slice headers).
const cacheEntryOverhead = 160

type recordCache struct {
	shards       [cacheShards]cacheShard
	hits, misses atomic.Int64
}

type cacheShard struct {
	mu    sync.Mutex
	limit int                      // bytes; 0 disables the shard
	used  int                      // bytes held; guarded by mu
	m     map[string]*list.Element // guarded by mu
	lru   list.List                // of *cacheEntry, most recent first; guarded by mu
}

type cacheEntry struct {
	key  string
	rec  dht.Record
	cost int
}

// newRecordCache returns a cache holding up to size bytes; 0 disables it
// (every call is a cheap no-op).
func newRecordCache(size int64) *recordCache {
	c := &recordCache{}
	for i := range c.shards {
		c.shards[i].limit = int(size / cacheShards)
		c.shards[i].m = map[string]*list.Element{}
	}
	return c
}

func (c *recordCache) shard(key []byte) *cacheShard {
	return &c.shards[xxhash.Sum64(key)%cacheShards]
}

// get returns a copy of the cached record of the Badger key.
func (c *recordCache) get(key []byte) (dht.Record, bool) {
	s := c.shard(key)
	if s.limit == 0 {
		return dht.Record{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.m[string(key)]
	if !ok {
		c.misses.Add(1)
		return dht.Record{}, false
	}
	c.hits.Add(1)
	s.lru.MoveToFront(el)
	return cloneRecord(el.Value.(*cacheEntry).rec), true
}

// cacheable returns a copy of rec to cache under key later, or false when
// the cache is off or rec is too large for it.
func (c *recordCache) cacheable(key []byte, rec dht.Record) (*dht.Record, bool) {
	s := c.shard(key)
	if recordCost(key, rec) > s.limit/16 {
		return nil, false
	}
	cp := cloneRecord(rec)
	return &cp, true
}

// set caches rec, which the cache now owns, as the newest record of the
// Badger key.
func (c *recordCache) set(key []byte, rec *dht.Record) {
	s := c.shard(key)
	if s.limit == 0 {
		return
	}
	cost := recordCost(key, *rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(string(key))
	if cost > s.limit/16 {
		return
	}
	e := &cacheEntry{key: string(key), rec: *rec, cost: cost}
	s.m[e.key] = s.lru.PushFront(e)
	s.used += cost
	for s.used > s.limit {
		s.removeLocked(s.lru.Back().Value.(*cacheEntry).key)
	}
}

// drop forgets the Badger key.
func (c *recordCache) drop(key []byte) {
	s := c.shard(key)
	if s.limit == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(string(key))
}

func (s *cacheShard) removeLocked(key string) {
	el, ok := s.m[key]
	if !ok {
		return
	}
	s.used -= el.Value.(*cacheEntry).cost
	s.lru.Remove(el)
	delete(s.m, key)
}

// recordCost is the bytes an entry for rec under key is counted for.
func recordCost(key []byte, rec dht.Record) int {
	n := cacheEntryOverhead + len(key) + 16*len(rec.Context)
	for _, v := range rec.Versions {
		n += 48 + len(v.Value)
	}
	return n
}

// cloneRecord copies rec deeply: the copy shares no memory with rec.
func cloneRecord(rec dht.Record) dht.Record {
	var out dht.Record
	if len(rec.Context) > 0 {
		out.Context = append([]dht.Dot(nil), rec.Context...)
	}
	if len(rec.Versions) > 0 {
		out.Versions = make([]dht.Version, len(rec.Versions))
		for i, v := range rec.Versions {
			out.Versions[i] = v
			if v.Value != nil {
				out.Versions[i].Value = append([]byte(nil), v.Value...)
			}
		}
	}
	return out
}
