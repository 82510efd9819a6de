package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

func cacheRecord(value string) *dht.Record {
	r := testRecord(value)
	return &r
}

func TestRecordCacheCopies(t *testing.T) {
	c := newRecordCache(1 << 20)
	key := []byte("rk")
	c.set(key, cacheRecord("v"))
	got, ok := c.get(key)
	if !ok || valueOf(got) != "v" {
		t.Fatalf("get = %q, %v; want v", valueOf(got), ok)
	}
	got.Versions[0].Value[0] = 'X'
	got.Context[0].Counter = 99
	again, _ := c.get(key)
	if valueOf(again) != "v" || again.Context[0].Counter != 1 {
		t.Fatalf("changing a returned record changed the cache: %+v", again)
	}
	c.drop(key)
	if _, ok := c.get(key); ok {
		t.Fatal("dropped key still cached")
	}
}

func TestRecordCacheEvictsByBytes(t *testing.T) {
	const size = 128 << 10 // 8 KiB per shard, about 24 entries
	c := newRecordCache(size)
	value := strings.Repeat("x", 100)
	for i := range 2000 {
		c.set(fmt.Appendf(nil, "k%d", i), cacheRecord(value))
	}
	held, total := 0, 0
	for i := range c.shards {
		s := &c.shards[i]
		if s.used > s.limit {
			t.Fatalf("shard %d holds %d bytes, limit %d", i, s.used, s.limit)
		}
		held += len(s.m)
		total += s.used
	}
	if held == 0 || held >= 2000 || total > size {
		t.Fatalf("holds %d entries, %d bytes; want some but not all, within %d bytes", held, total, size)
	}
	// The newest key of each shard survives; the oldest was evicted.
	if _, ok := c.get([]byte("k1999")); !ok {
		t.Fatal("newest key evicted")
	}
	if _, ok := c.get([]byte("k0")); ok {
		t.Fatal("oldest key still cached")
	}
}

func TestRecordCacheSkipsLargeAndDisabled(t *testing.T) {
	c := newRecordCache(16 << 10) // 1 KiB per shard: records over 64 bytes are skipped
	big := testRecord(strings.Repeat("x", 200))
	if _, ok := c.cacheable([]byte("big"), big); ok {
		t.Fatal("a record over a sixteenth of a shard is cacheable")
	}
	c.set([]byte("big"), &big)
	if _, ok := c.get([]byte("big")); ok {
		t.Fatal("a record over a sixteenth of a shard was cached")
	}
	off := newRecordCache(0)
	off.set([]byte("k"), cacheRecord("v"))
	if _, ok := off.get([]byte("k")); ok {
		t.Fatal("a disabled cache returned a record")
	}
}

// Each writer owns its keys and writes increasing values; once a Put
// returned, no Get may return an older value, whether it is answered
// from the cache or from Badger. A small cache makes both happen.
func TestStoreCacheNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	cfg := versionsTestConfig(t)
	cfg.RecordCacheSize = 256 << 10
	s := mustOpen(t, cfg)
	defer s.Close()
	const writers, keys, rounds = 4, 20, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for k := range keys {
					key := fmt.Appendf(nil, "w%d-k%d", w, k)
					if err := s.Put(ctx, key, testRecord(fmt.Sprintf("%04d", r))); err != nil {
						errs <- err
						return
					}
					got, err := s.Get(ctx, key)
					if err != nil || valueOf(got) != fmt.Sprintf("%04d", r) {
						errs <- fmt.Errorf("%s after writing round %d: %q, %v", key, r, valueOf(got), err)
						return
					}
					if k%3 == 0 {
						if err := s.Delete(ctx, key); err != nil {
							errs <- err
							return
						}
						if _, err := s.Get(ctx, key); err != dht.ErrNotFound {
							errs <- fmt.Errorf("%s after delete: err %v, want ErrNotFound", key, err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hits, misses := s.CacheStats()
	if hits == 0 || misses == 0 {
		t.Fatalf("cache hits %d, misses %d: the test should exercise both paths", hits, misses)
	}
}

// TestGetDuringCommitSeesIt reads a cached key between the Badger commit
// that rewrites it and the cache update after that commit: Badger already
// answers any reader with the new record, so Get must too, or a reader
// that got the new record from Badger could next get the old one.
func TestGetDuringCommitSeesIt(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, versionsTestConfig(t))
	defer s.Close()
	key := []byte("K")
	if err := s.Put(ctx, key, testRecord("old")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.cache.get(mustDataKey(t, key)); !ok {
		t.Fatal("a written key is not cached")
	}
	var inBadger, got string
	s.commit.afterCommit = func() { // runs on the committer, before finish
		var rec dht.Record
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(mustDataKey(t, key))
			if err != nil {
				return err
			}
			return item.Value(func(v []byte) (err error) {
				rec, err = decodeRecord(key, v)
				return err
			})
		})
		if err != nil {
			t.Errorf("Badger read during the commit: %v", err)
		}
		inBadger = valueOf(rec)
		r, err := s.Get(ctx, key)
		if err != nil {
			t.Errorf("Get during the commit: %v", err)
		}
		got = valueOf(r)
	}
	if err := s.Put(ctx, key, testRecord("new")); err != nil {
		t.Fatal(err)
	}
	if inBadger != "new" || got != "new" {
		t.Fatalf("between commit and cache update Badger holds %q and Get returns %q; want both new", inBadger, got)
	}
	if r, err := s.Get(ctx, key); err != nil || valueOf(r) != "new" {
		t.Fatalf("Get after the commit = %q, %v; want new", valueOf(r), err)
	}
}

func mustDataKey(t *testing.T, key []byte) []byte {
	t.Helper()
	bk, err := dataKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return bk
}
