package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
)

// lastUpConfig is a one-node daemon on loopback with LAN timings: a dead
// member is reaped after an hour.
func lastUpConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.API = "127.0.0.1:0"
	cfg.Replicas, cfg.WriteQuorum, cfg.ReadQuorum = 1, 1, 1
	return cfg
}

// startStop starts a daemon on cfg whose clock runs ahead by offset, and
// stops it again; it returns Start's error.
func startStop(t *testing.T, cfg Config, offset time.Duration, opts ...Option) error {
	t.Helper()
	opts = append([]Option{
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithClock(dht.OffsetClock{Base: dht.SystemClock{}, Offset: offset}),
	}, opts...)
	d, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		return err
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return nil
}

func readLastUp(t *testing.T, dir string) time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, LastUpFile))
	if err != nil {
		t.Fatal(err)
	}
	last, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s holds %q: %v", LastUpFile, b, err)
	}
	return last
}

// TestLastUp: a daemon records when it was last up, and refuses to start
// on its data dir once that is longer ago than a dead member is kept,
// changing nothing, unless allowed to.
func TestLastUp(t *testing.T) {
	cfg := lastUpConfig(t)
	before := time.Now()
	if err := startStop(t, cfg, 0); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if last := readLastUp(t, cfg.DataDir); last.Before(before) || last.After(time.Now()) {
		t.Fatalf("last up %v, want between %v and now", last, before)
	}

	// Two hours later (the clock runs ahead): refused.
	saved, err := os.ReadFile(filepath.Join(cfg.DataDir, LastUpFile))
	if err != nil {
		t.Fatal(err)
	}
	err = startStop(t, cfg, 2*time.Hour)
	if !errors.Is(err, ErrStaleDataDir) || !strings.Contains(err.Error(), "--allow-stale-rejoin") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("start two hours later: %v, want a one-line ErrStaleDataDir naming --allow-stale-rejoin", err)
	}
	if now, _ := os.ReadFile(filepath.Join(cfg.DataDir, LastUpFile)); string(now) != string(saved) {
		t.Fatalf("the refused start rewrote %s: %q, was %q", LastUpFile, now, saved)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, APIFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start left an api file (%v)", err)
	}

	// Within the hour: starts, and records the later time.
	if err := startStop(t, cfg, 50*time.Minute); err != nil {
		t.Fatalf("start 50 minutes later: %v", err)
	}
	if last := readLastUp(t, cfg.DataDir); last.Before(before.Add(50 * time.Minute)) {
		t.Fatalf("last up %v after a start 50 minutes later, want at least %v", last, before.Add(50*time.Minute))
	}

	// Allowed: starts however stale.
	if err := startStop(t, cfg, 5*time.Hour, AllowStaleRejoin()); err != nil {
		t.Fatalf("start five hours later with AllowStaleRejoin: %v", err)
	}
}

// TestLastUpEmptyStore: a data dir whose store directory is empty holds
// nothing to bring back, however long ago it was up.
func TestLastUpEmptyStore(t *testing.T) {
	cfg := lastUpConfig(t)
	if err := startStop(t, cfg, 0); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(cfg.DataDir, StoreDir)
	if err := os.RemoveAll(store); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := startStop(t, cfg, 3*time.Hour); err != nil {
		t.Fatalf("start on an emptied store three hours later: %v", err)
	}
}

// TestLastUpUnreadable: a last-up file that does not hold a time stops
// the start with a message saying what to do.
func TestLastUpUnreadable(t *testing.T) {
	cfg := lastUpConfig(t)
	if err := startStop(t, cfg, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, LastUpFile), []byte("yesterday\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := startStop(t, cfg, 0)
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), `"yesterday", not a time`) {
		t.Fatalf("start with a garbled %s: %v", LastUpFile, err)
	}
}
