package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

// syncConfig is testConfig with SyncWrites, so with a commit log, whose
// segments are the smallest allowed so that a test rotates through several.
func syncConfig(t testing.TB) store.Config {
	cfg := testConfig(t)
	cfg.SyncWrites = true
	cfg.CommitLogSegmentSize = 64 << 10
	return cfg
}

func logSegments(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "commitlog", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func wantValue(t *testing.T, s *store.Badger, key, want string) {
	t.Helper()
	r, err := s.Get(context.Background(), []byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, want)
	}
	if got := recValue(r); got != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func wantMissing(t *testing.T, s *store.Badger, key string) {
	t.Helper()
	if _, err := s.Get(context.Background(), []byte(key)); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("Get(%q): %v, want ErrNotFound", key, err)
	}
}

// writesBadgerLost writes a first set of keys normally, then a second that
// reaches only the commit log, as when the machine crashes before Badger's
// unsynced writes reach the disk, and crashes the store.
func writesBadgerLost(t *testing.T, cfg store.Config) {
	t.Helper()
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		mustPut(t, s, fmt.Sprintf("a%03d", i), "durable-in-badger")
	}
	mustPut(t, s, "overwritten", "old")
	mustPut(t, s, "deleted", "old")
	s.LoseBadgerWritesForTest()
	// About 300 KiB: several 64 KiB segments of records Badger never saw.
	for i := range 600 {
		mustPut(t, s, fmt.Sprintf("b%03d", i), strings.Repeat("x", 400)+fmt.Sprint(i))
	}
	mustPut(t, s, "overwritten", "new")
	if err := s.Delete(context.Background(), []byte("deleted")); err != nil {
		t.Fatal(err)
	}
	if err := s.CrashForTest(); err != nil {
		t.Fatal(err)
	}
	if n := len(logSegments(t, cfg.Dir)); n < 4 {
		t.Fatalf("the lost writes span %d segments, want several", n)
	}
}

func checkAllWrites(t *testing.T, s *store.Badger) {
	t.Helper()
	for i := range 200 {
		wantValue(t, s, fmt.Sprintf("a%03d", i), "durable-in-badger")
	}
	for i := range 600 {
		wantValue(t, s, fmt.Sprintf("b%03d", i), strings.Repeat("x", 400)+fmt.Sprint(i))
	}
	wantValue(t, s, "overwritten", "new")
	wantMissing(t, s, "deleted")
}

func TestCommitLogReplaysWritesBadgerLost(t *testing.T) {
	cfg := syncConfig(t)
	writesBadgerLost(t, cfg)
	s := openStore(t, cfg)
	checkAllWrites(t, s)
	// The replayed records are checkpointed like any others: the log
	// shrinks back to the current segment and a spare.
	waitFor(t, 10*time.Second, "the replayed segments to be released", func() bool {
		return len(logSegments(t, cfg.Dir)) <= 2
	})
}

func TestCommitLogReplayedWithoutSyncWrites(t *testing.T) {
	cfg := syncConfig(t)
	writesBadgerLost(t, cfg)
	cfg.SyncWrites = false
	s := openStore(t, cfg)
	checkAllWrites(t, s)
	if _, err := os.Stat(filepath.Join(cfg.Dir, "commitlog")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the commit log is still there after an open without SyncWrites (%v): "+
			"a later open with SyncWrites would replay it over newer writes", err)
	}
}

func TestCommitLogTornRecordIsDropped(t *testing.T) {
	cfg := syncConfig(t)
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.LoseBadgerWritesForTest()
	mustPut(t, s, "k1", "first")
	mustPut(t, s, "k2", "second")
	if err := s.CrashForTest(); err != nil {
		t.Fatal(err)
	}
	segs := logSegments(t, cfg.Dir)
	last := segs[len(segs)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the second record short, as a crash during its write would.
	end := len(strings.TrimRight(string(data), "\x00"))
	if err := os.Truncate(last, int64(end-3)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	wantValue(t, s, "k1", "first")
	wantMissing(t, s, "k2")
	mustPut(t, s, "k3", "after the crash")
	wantValue(t, s, "k3", "after the crash")
}

func TestCommitLogCheckpointsBoundSegments(t *testing.T) {
	cfg := syncConfig(t)
	s := openStore(t, cfg)
	value := strings.Repeat("v", 1000)
	// About 2 MiB of records: 30 segments' worth.
	for i := range 2000 {
		mustPut(t, s, fmt.Sprintf("k%04d", i%500), value)
	}
	waitFor(t, 10*time.Second, "checkpoints to release the written segments", func() bool {
		return len(logSegments(t, cfg.Dir)) <= 2
	})
	for i := range 500 {
		wantValue(t, s, fmt.Sprintf("k%04d", i), value)
	}
}

func TestCommitLogCleanCloseLeavesNothingToReplay(t *testing.T) {
	cfg := syncConfig(t)
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := logSegments(t, cfg.Dir); len(segs) != 1 {
		t.Fatalf("after a clean close the log holds %v, want one spare segment", segs)
	}
	s, err = store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "k", "v1")
	// The spare is written over: a crash now replays only the new write.
	s.LoseBadgerWritesForTest()
	mustPut(t, s, "k", "v2")
	if err := s.CrashForTest(); err != nil {
		t.Fatal(err)
	}
	if segs := logSegments(t, cfg.Dir); len(segs) != 1 {
		t.Fatalf("the reopened store writes to %v, want the one spare segment", segs)
	}
	s = openStore(t, cfg)
	wantValue(t, s, "k", "v2")
}

func TestCommitLogWriteFailureFailsCommits(t *testing.T) {
	cfg := syncConfig(t)
	s := openStore(t, cfg)
	mustPut(t, s, "before", "v")
	s.BreakCommitLogForTest()
	for _, key := range []string{"k1", "k2"} {
		err := s.Put(context.Background(), []byte(key), rec("v"))
		if err == nil || !strings.Contains(err.Error(), "commit log cannot be written") {
			t.Fatalf("Put(%q) after the log broke: %v, want a commit-log error", key, err)
		}
		wantMissing(t, s, key)
	}
	wantValue(t, s, "before", "v")
}
