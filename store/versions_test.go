package store

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

func versionsTestConfig(t *testing.T) Config {
	cfg := DefaultConfig(t.TempDir())
	cfg.SyncWrites = false
	cfg.Logger = nil
	return cfg
}

func testRecord(value string) dht.Record {
	return dht.Record{
		Versions: []dht.Version{{Value: []byte(value), Dot: dht.Dot{Actor: 3, Counter: 1}, Timestamp: 1}},
		Context:  []dht.Dot{{Actor: 3, Counter: 1}},
	}
}

func valueOf(r dht.Record) string {
	if len(r.Versions) != 1 {
		return fmt.Sprintf("<%d versions>", len(r.Versions))
	}
	return string(r.Versions[0].Value)
}

func mustOpen(t *testing.T, cfg Config) *Badger {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Commit timestamps continue above what a previous run wrote, so a write
// after a restart replaces the value written before it.
func TestWritesAfterReopenWin(t *testing.T) {
	ctx := context.Background()
	cfg := versionsTestConfig(t)
	for i := range 4 {
		s := mustOpen(t, cfg)
		if i > 0 {
			got, err := s.Get(ctx, []byte("k"))
			if err != nil || valueOf(got) != fmt.Sprint("v", i-1) {
				t.Fatalf("run %d: Get = %q, %v; want v%d", i, valueOf(got), err, i-1)
			}
		}
		if err := s.Put(ctx, []byte("k"), testRecord(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A data dir written by Badger's default (unmanaged) mode, as stores were
// before managed timestamps, opens with its data, and new writes win.
func TestOpenUnmanagedStore(t *testing.T) {
	ctx := context.Background()
	cfg := versionsTestConfig(t)
	db, err := badger.Open(cfg.badgerOptions(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // several commits, so the old timestamps exceed 1
		m, err := setMutation([]byte("k"), testRecord(fmt.Sprint("old", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(txn *badger.Txn) error { return addMutations(txn, []mutation{m}) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, cfg)
	if got, err := s.Get(ctx, []byte("k")); err != nil || valueOf(got) != "old2" {
		t.Fatalf("Get = %q, %v; want old2", valueOf(got), err)
	}
	if err := s.Put(ctx, []byte("k"), testRecord("new")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, cfg)
	defer s.Close()
	if got, err := s.Get(ctx, []byte("k")); err != nil || valueOf(got) != "new" {
		t.Fatalf("Get after reopen = %q, %v; want new", valueOf(got), err)
	}
}

// While a scan reads its snapshot, the discard timestamp stays at it, so
// compaction keeps the versions the scan needs; once it ends, the next
// commit moves the discard timestamp to the newest commit.
func TestScanHoldsDiscardTimestamp(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, versionsTestConfig(t))
	defer s.Close()
	if err := s.Put(ctx, []byte("a"), testRecord("1")); err != nil {
		t.Fatal(err)
	}
	var pinned, during uint64
	err := s.Scan(ctx, nil, nil, func(key []byte, r dht.Record) error {
		pinned = s.vers.lastForTest()
		for i := range 3 {
			if err := s.Put(ctx, []byte("a"), testRecord(fmt.Sprint("n", i))); err != nil {
				return err
			}
		}
		during = s.vers.discardForTest()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if during != pinned {
		t.Fatalf("discard timestamp during the scan = %d, want the scan's snapshot %d", during, pinned)
	}
	if err := s.Put(ctx, []byte("b"), testRecord("1")); err != nil {
		t.Fatal(err)
	}
	if got, last := s.vers.discardForTest(), s.vers.lastForTest(); got != last || last != pinned+4 {
		t.Fatalf("after the scan: discard %d, last %d; want both %d", got, last, pinned+4)
	}
}

// A scan still sees its snapshot after every key it will visit was
// overwritten and compaction ran under it (a scan reading the newest
// versions would see the overwrites).
func TestScanSnapshotSurvivesCompaction(t *testing.T) {
	ctx := context.Background()
	cfg := versionsTestConfig(t)
	cfg.MemTableSize = 1 << 20
	cfg.NumLevelZeroTables = 1
	s := mustOpen(t, cfg)
	defer s.Close()
	const keys = 200
	key := func(i int) []byte { return fmt.Appendf(nil, "key-%04d", i) }
	for i := range keys {
		if err := s.Put(ctx, key(i), testRecord("old")); err != nil {
			t.Fatal(err)
		}
	}
	pad := strings.Repeat("p", 2000)
	seen, first := 0, true
	err := s.Scan(ctx, nil, nil, func(k []byte, r dht.Record) error {
		if valueOf(r) != "old" {
			return fmt.Errorf("scan saw %.12q... at %s, want its snapshot's value", valueOf(r), k)
		}
		seen++
		if !first {
			return nil
		}
		first = false
		// Overwrite every key, several memtables' worth, then flatten the
		// tree.
		for round := range 3 {
			for i := range keys {
				if err := s.Put(ctx, key(i), testRecord(fmt.Sprint("new", round, pad))); err != nil {
					return err
				}
			}
		}
		return s.db.Flatten(2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != keys {
		t.Fatalf("scan saw %d keys, want %d", seen, keys)
	}
}
