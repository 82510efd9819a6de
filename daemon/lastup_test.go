package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

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
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), `does not hold a time ("yesterday")`) {
		t.Fatalf("start with a garbled %s: %v", LastUpFile, err)
	}
}

// movableClock is the system clock shifted by an offset that can change.
type movableClock struct{ offset atomic.Int64 }

func (c *movableClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// lockedBuffer collects a daemon's log lines from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLastUpRefreshed: a running node alone in its cluster refreshes its
// last-up time every lastUpInterval (6s with local timings) and when it
// stops, so a node that ran past the reap timeout restarts at once.
func TestLastUpRefreshed(t *testing.T) {
	cfg := lastUpConfig(t)
	cfg.Timing = "local"
	clock := &movableClock{}
	d, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock.offset.Store(int64(time.Hour))
	waitUntil(t, 20*time.Second, "the running daemon to refresh its last-up time", func() bool {
		return !readLastUp(t, cfg.DataDir).Before(start.Add(time.Hour))
	})
	clock.offset.Store(int64(2 * time.Hour))
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := readLastUp(t, cfg.DataDir); last.Before(start.Add(2 * time.Hour)) {
		t.Fatalf("last up %v after a stop two hours on, want at least %v", last, start.Add(2*time.Hour))
	}
	if err := startStop(t, cfg, 2*time.Hour); err != nil {
		t.Fatalf("restart right after the stop: %v", err)
	}
}

// TestLastUpInTouch: the time is refreshed while another member is live,
// or while the node is alone, and not once every member it knows (or knew:
// they may have been reaped) is dead.
func TestLastUpInTouch(t *testing.T) {
	self, other := peer.ID("self"), peer.ID("other")
	me := dht.Member{ID: self, State: dht.StateNormal}
	for _, tc := range []struct {
		name        string
		expectPeers bool
		lists       [][]dht.Member // member lists seen in turn; the last decides
		want        bool
	}{
		{"alone", false, [][]dht.Member{{me}}, true},
		{"peer live", true, [][]dht.Member{{me, {ID: other, State: dht.StateNormal}}}, true},
		{"peer suspect", true, [][]dht.Member{{me, {ID: other, State: dht.StateSuspect}}}, true},
		{"peer dead", true, [][]dht.Member{{me, {ID: other, State: dht.StateDead}}}, false},
		{"peer left", false, [][]dht.Member{{me, {ID: other, State: dht.StateLeft}}}, false},
		{"peer reaped", false, [][]dht.Member{{me, {ID: other, State: dht.StateNormal}}, {me}}, false},
		{"bootstrap peers not reached yet", true, [][]dht.Member{{me}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &lastUp{expectPeers: tc.expectPeers}
			var got bool
			for _, members := range tc.lists {
				got = u.inTouch(self, members)
			}
			if got != tc.want {
				t.Fatalf("inTouch = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLastUpInTheFuture: a last-up time ahead of the clock (the clock was
// set back) lets the daemon start, with a warning to check the clock.
func TestLastUpInTheFuture(t *testing.T) {
	cfg := lastUpConfig(t)
	if err := startStop(t, cfg, time.Hour); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	d, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start an hour before the last-up time: %v", err)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "check the clock") {
		t.Fatalf("no warning to check the clock in the log:\n%s", logs.String())
	}
}

func waitUntil(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
