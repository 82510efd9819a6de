package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

// TestValueLogGCUnderCommitLog runs a real value-log GC in a store with a
// commit log. Badger moves the live values of the file it rewrites
// through its own unsynced write path, and the commit-log records that
// wrote them are long released, so the old file must outlive the moved
// values' fsync: while Badger's files cannot be synced the file stays,
// once they are it goes, and every value reads back, then and after a
// reopen.
func TestValueLogGCUnderCommitLog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes about 140 MiB")
	}
	cfg := testConfig(t)
	cfg.MemTableSize = 1 << 20
	cfg.NumLevelZeroTables = 1
	cfg.ValueThreshold = 512 // every value in the value log
	cfg.ValueLogFileSize = dht.MaxRecordSize + 1<<20
	cfg.GCInterval = 0 // the test runs the GC
	ctx := context.Background()

	// Fill a first value-log file and part of a second, then overwrite
	// most of the keys: the first file is then mostly garbage, with some
	// live values for the GC to move.
	const keys, overwritten = 70_000, 56_000
	value := func(round, i int) string { return fmt.Sprintf("r%d-%06d-", round, i) + strings.Repeat("v", 1000) }
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	putRange := func(round, n int) {
		t.Helper()
		const batch = 100
		for from := 0; from < n; from += batch {
			entries := make([]dht.Entry, 0, batch)
			for i := from; i < min(from+batch, n); i++ {
				entries = append(entries, dht.Entry{Key: gcKey(i), Record: rec(value(round, i))})
			}
			if err := s.PutBatch(ctx, entries); err != nil {
				t.Fatal(err)
			}
		}
	}
	putRange(1, keys)
	putRange(2, overwritten)
	if err := s.Close(); err != nil { // flushes the memtables into tables
		t.Fatal(err)
	}
	s, err = store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FlattenForTest(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.SyncWrites = true
	s = openStore(t, cfg)
	before := vlogFiles(t, cfg.Dir)
	if len(before) < 2 {
		t.Fatalf("value-log files %v, want at least two", before)
	}

	var failed atomic.Int64
	s.FailBadgerSyncForTest(errors.New("injected fsync failure"), &failed)
	done := make(chan error, 1)
	go func() { done <- s.RewriteValueLogForTest(ctx) }()
	waitFor(t, 30*time.Second, "the GC to try to sync the moved values", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the GC returned %v before the moved values were durable", err)
		default:
		}
		return failed.Load() > 0
	})
	if now := vlogFiles(t, cfg.Dir); len(now) < len(before) || now[0] != before[0] {
		t.Fatalf("value-log files %v while the moved values cannot be synced, want all of %v kept", now, before)
	}
	s.FailBadgerSyncForTest(nil, nil)
	if err := <-done; err != nil {
		t.Fatalf("value-log GC: %v, want a file rewritten", err)
	}
	if now := vlogFiles(t, cfg.Dir); len(now) > 0 && now[0] == before[0] {
		t.Fatalf("value-log files %v after the GC, want %s deleted", now, before[0])
	}

	check := func(s *store.Badger) {
		t.Helper()
		for i := range keys {
			round := 1
			if i < overwritten {
				round = 2
			}
			r, err := s.Get(ctx, gcKey(i))
			if err != nil {
				t.Fatalf("Get(%s): %v", gcKey(i), err)
			}
			if got, want := recValue(r), value(round, i); got != want {
				t.Fatalf("Get(%s) = %.12q..., want %.12q...", gcKey(i), got, want)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, cfg))
}

func gcKey(i int) []byte { return fmt.Appendf(nil, "gc%06d", i) }

// vlogFiles lists the store's value-log files, oldest first.
func vlogFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}
