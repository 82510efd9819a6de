package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// fakeDialer fails each peer a scripted number of times, then connects.
type fakeDialer struct {
	mu      sync.Mutex
	fails   map[peer.ID]int  // failures left; negative fails forever
	block   map[peer.ID]bool // block until ctx ends
	calls   map[peer.ID]int
	lastCtx map[peer.ID]bool // whether the last call's ctx had a deadline

	stopped   atomic.Bool  // set by the test once no call may happen
	lateCalls atomic.Int32 // calls made while stopped
	inFlight  atomic.Int32 // calls not yet returned
}

func newFakeDialer() *fakeDialer {
	return &fakeDialer{
		fails:   make(map[peer.ID]int),
		block:   make(map[peer.ID]bool),
		calls:   make(map[peer.ID]int),
		lastCtx: make(map[peer.ID]bool),
	}
}

func (d *fakeDialer) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if d.stopped.Load() {
		d.lateCalls.Add(1)
	}
	d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	d.mu.Lock()
	d.calls[ai.ID]++
	_, hasDeadline := ctx.Deadline()
	d.lastCtx[ai.ID] = hasDeadline
	block := d.block[ai.ID]
	left := d.fails[ai.ID]
	if left > 0 {
		d.fails[ai.ID] = left - 1
	}
	d.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if left != 0 {
		return fmt.Errorf("dial %s: connection refused", ai.ID.ShortString())
	}
	return nil
}

func (d *fakeDialer) set(id peer.ID, fails int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fails[id] = fails
}

func (d *fakeDialer) callsTo(id peer.ID) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[id]
}

// eventually polls cond every millisecond until it holds or a generous
// bound passes; it fails the test in the latter case.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fastConfig retries within milliseconds so tests finish quickly.
func fastConfig() Config {
	cfg := DefaultConfig()
	cfg.InitialBackoff = time.Millisecond
	cfg.MaxBackoff = 4 * time.Millisecond
	cfg.DialTimeout = time.Minute
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func testPeer(t *testing.T, seed uint64) peer.AddrInfo {
	t.Helper()
	return peer.AddrInfo{
		ID:    testID(t, seed),
		Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/7600", seed%250+1))},
	}
}

func statusOf(t *testing.T, j *Joiner, id peer.ID) PeerStatus {
	t.Helper()
	for _, st := range j.Status() {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("peer %s not in Status", id)
	return PeerStatus{}
}

func startJoiner(t *testing.T, cfg Config, d Dialer, peers ...peer.AddrInfo) *Joiner {
	t.Helper()
	j, err := NewJoiner(cfg, d, peers)
	if err != nil {
		t.Fatalf("NewJoiner: %v", err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestJoinerRetriesThenConnects(t *testing.T) {
	for _, fails := range []int{0, 1, 5} {
		t.Run(fmt.Sprintf("fails=%d", fails), func(t *testing.T) {
			d := newFakeDialer()
			a := testPeer(t, 1)
			d.set(a.ID, fails)
			j := startJoiner(t, fastConfig(), d, a)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := j.WaitConnected(ctx, 1); err != nil {
				t.Fatalf("WaitConnected: %v", err)
			}
			st := statusOf(t, j, a.ID)
			want := PeerStatus{ID: a.ID, Connected: true, Attempts: fails + 1}
			if st.Connected != want.Connected || st.Attempts != want.Attempts || st.Failures != 0 ||
				st.LastError != "" || !st.NextRetry.IsZero() || st.GaveUp {
				t.Errorf("Status = %+v, want connected after %d attempts", st, want.Attempts)
			}
			if len(st.Addrs) != 1 || st.Addrs[0] != a.Addrs[0].String() {
				t.Errorf("Status.Addrs = %v, want [%s]", st.Addrs, a.Addrs[0])
			}
			if got := d.callsTo(a.ID); got != fails+1 {
				t.Errorf("dialer saw %d calls, want %d", got, fails+1)
			}
		})
	}
}

func TestJoinerStatusWhileFailing(t *testing.T) {
	d := newFakeDialer()
	a := testPeer(t, 1)
	d.set(a.ID, -1)
	cfg := fastConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour // one dial, then a long wait
	j := startJoiner(t, cfg, d, a)

	eventually(t, "first failure recorded", func() bool { return statusOf(t, j, a.ID).Failures == 1 })
	st := statusOf(t, j, a.ID)
	if st.Connected || st.Attempts != 1 || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("Status = %+v, want one failed attempt with its error", st)
	}
	if until := time.Until(st.NextRetry); until < 30*time.Minute || until > time.Hour {
		t.Errorf("NextRetry in %v, want within (30m, 1h] of now", until)
	}
	d.mu.Lock()
	hasDeadline := d.lastCtx[a.ID]
	d.mu.Unlock()
	if !hasDeadline {
		t.Error("dial ctx carries no deadline; DialTimeout not applied")
	}
}

func TestJoinerCloseStopsRetries(t *testing.T) {
	d := newFakeDialer()
	failing, blocked := testPeer(t, 1), testPeer(t, 2)
	d.set(failing.ID, -1)
	d.block[blocked.ID] = true
	cfg := fastConfig()
	j, err := NewJoiner(cfg, d, []peer.AddrInfo{failing, blocked})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retries under way", func() bool {
		return d.callsTo(failing.ID) >= 3 && d.callsTo(blocked.ID) == 1
	})

	waitErr := make(chan error, 1)
	go func() { waitErr <- j.WaitConnected(context.Background(), 2) }()

	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d.stopped.Store(true)
	if n := d.inFlight.Load(); n != 0 {
		t.Errorf("%d dials still in flight after Close", n)
	}
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Errorf("WaitConnected after Close = %v, want ErrClosed", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := j.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	j.Reconnect(failing.ID)
	j.SetPeers([]peer.AddrInfo{failing, testPeer(t, 3)})
	if n := d.lateCalls.Load(); n != 0 {
		t.Errorf("dialer called %d times after Close", n)
	}
}

func TestJoinerParentContextStops(t *testing.T) {
	d := newFakeDialer()
	a := testPeer(t, 1)
	d.block[a.ID] = true
	j, err := NewJoiner(fastConfig(), d, []peer.AddrInfo{a})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dial started", func() bool { return d.callsTo(a.ID) == 1 })
	cancel()
	eventually(t, "dial abandoned", func() bool { return d.inFlight.Load() == 0 })
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := d.callsTo(a.ID); got != 1 {
		t.Errorf("dialer saw %d calls, want 1 (no retry after the parent ctx ended)", got)
	}
}

func TestJoinerMaxAttempts(t *testing.T) {
	d := newFakeDialer()
	a, b := testPeer(t, 1), testPeer(t, 2)
	d.set(a.ID, -1)
	cfg := fastConfig()
	cfg.MaxAttempts = 3
	j := startJoiner(t, cfg, d, a, b)

	eventually(t, "give up", func() bool { return statusOf(t, j, a.ID).GaveUp })
	st := statusOf(t, j, a.ID)
	if st.Attempts != 3 || st.Failures != 3 || st.Connected || !st.NextRetry.IsZero() {
		t.Errorf("Status after giving up = %+v, want 3 attempts, no retry", st)
	}
	if got := d.callsTo(a.ID); got != 3 {
		t.Errorf("dialer saw %d calls, want exactly MaxAttempts=3", got)
	}
	// b never fails; a's limit does not touch it.
	eventually(t, "b connected", func() bool { return statusOf(t, j, b.ID).Connected })

	// Reconnect revives a peer that gave up, with a fresh budget.
	j.Reconnect(a.ID)
	eventually(t, "second give-up", func() bool {
		st := statusOf(t, j, a.ID)
		return st.GaveUp && st.Attempts == 6
	})
	// So does naming it again in SetPeers, and this time it connects.
	d.set(a.ID, 0)
	j.SetPeers([]peer.AddrInfo{a, b})
	eventually(t, "a connected", func() bool { return statusOf(t, j, a.ID).Connected })
	if got := d.callsTo(a.ID); got != 7 {
		t.Errorf("dialer saw %d calls, want 7", got)
	}
}

func TestJoinerSetPeers(t *testing.T) {
	d := newFakeDialer()
	self, a, b, c := testPeer(t, 9), testPeer(t, 1), testPeer(t, 2), testPeer(t, 3)
	d.set(b.ID, -1)
	cfg := fastConfig()
	cfg.Self = self.ID
	j := startJoiner(t, cfg, d, a, b, self)

	if got := len(j.Status()); got != 2 {
		t.Fatalf("Status has %d peers, want 2 (self skipped)", got)
	}
	eventually(t, "b retrying", func() bool { return d.callsTo(b.ID) >= 2 })

	// Replace b by c; give a a second address.
	a2 := peer.AddrInfo{ID: a.ID, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/10.9.9.9/udp/7600/quic-v1")}}
	j.SetPeers([]peer.AddrInfo{c, a, a2, {ID: ""}, self})
	frozen := d.callsTo(b.ID)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.WaitConnected(ctx, 2); err != nil {
		t.Fatalf("WaitConnected(2): %v", err)
	}
	sts := j.Status()
	if len(sts) != 2 || sts[0].ID != c.ID || sts[1].ID != a.ID {
		t.Fatalf("Status order = %v, want [c a]", sts)
	}
	if len(sts[1].Addrs) != 2 {
		t.Errorf("a's addrs = %v, want both addresses merged", sts[1].Addrs)
	}
	if got := d.callsTo(b.ID); got != frozen {
		t.Errorf("removed peer dialled %d more times after SetPeers returned", got-frozen)
	}
	if got := d.callsTo(self.ID); got != 0 {
		t.Errorf("self dialled %d times", got)
	}

	// Removing a connected peer lowers the connected count.
	j.SetPeers([]peer.AddrInfo{c})
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := j.WaitConnected(ctx2, 2); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 of 2") {
		t.Errorf("WaitConnected(2) with one peer left = %v, want canceled, 1 of 2", err)
	}
}

func TestJoinerSetPeersBeforeStart(t *testing.T) {
	d := newFakeDialer()
	a, b := testPeer(t, 1), testPeer(t, 2)
	j, err := NewJoiner(fastConfig(), d, []peer.AddrInfo{a})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetPeers([]peer.AddrInfo{b})
	if got := d.callsTo(a.ID) + d.callsTo(b.ID); got != 0 {
		t.Fatalf("%d dials before Start", got)
	}
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := j.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if d.callsTo(a.ID) != 0 || d.callsTo(b.ID) != 1 {
		t.Errorf("calls a=%d b=%d, want only b dialled", d.callsTo(a.ID), d.callsTo(b.ID))
	}
}

func TestJoinerReconnect(t *testing.T) {
	t.Run("stable connection redials at once", func(t *testing.T) {
		d := newFakeDialer()
		a := testPeer(t, 1)
		cfg := fastConfig()
		cfg.InitialBackoff, cfg.MaxBackoff = time.Nanosecond, time.Nanosecond // every connection counts as stable
		j := startJoiner(t, cfg, d, a)
		eventually(t, "connected", func() bool { return statusOf(t, j, a.ID).Connected })

		d.set(a.ID, 2) // the peer is briefly unreachable after the drop
		j.Reconnect(a.ID)
		j.Reconnect(peer.ID("unknown")) // ignored
		eventually(t, "reconnected", func() bool {
			st := statusOf(t, j, a.ID)
			return st.Connected && st.Attempts == 4
		})
		if got := d.callsTo(a.ID); got != 4 {
			t.Errorf("dialer saw %d calls, want 1 + 2 failures + 1", got)
		}
	})
	t.Run("flapping connection waits a backoff", func(t *testing.T) {
		d := newFakeDialer()
		a := testPeer(t, 1)
		cfg := fastConfig()
		cfg.InitialBackoff, cfg.MaxBackoff, cfg.Jitter = time.Hour, time.Hour, 0
		j := startJoiner(t, cfg, d, a)
		eventually(t, "connected", func() bool { return statusOf(t, j, a.ID).Connected })

		j.Reconnect(a.ID) // dropped right after connecting
		eventually(t, "redial scheduled", func() bool { return !statusOf(t, j, a.ID).NextRetry.IsZero() })
		st := statusOf(t, j, a.ID)
		if st.Connected || time.Until(st.NextRetry) < 30*time.Minute {
			t.Errorf("Status = %+v, want disconnected with a redial about an hour out", st)
		}
		if got := d.callsTo(a.ID); got != 1 {
			t.Errorf("dialer saw %d calls, want no immediate redial", got)
		}
	})
}

func TestWaitConnected(t *testing.T) {
	d := newFakeDialer()
	a := testPeer(t, 1)
	d.set(a.ID, -1)
	j := startJoiner(t, fastConfig(), d, a)

	if err := j.WaitConnected(context.Background(), 0); err != nil {
		t.Errorf("WaitConnected(0) = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := j.WaitConnected(ctx, 1)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "0 of 1 bootstrap peers connected") {
		t.Errorf("WaitConnected on a dead peer = %v, want canceled, 0 of 1", err)
	}
}

func TestNewJoinerRejects(t *testing.T) {
	bad := fastConfig()
	bad.Jitter = 3
	tests := []struct {
		name   string
		cfg    Config
		d      Dialer
		peers  []peer.AddrInfo
		wantIs error // nil: only a non-nil error is required
	}{
		{"invalid config", bad, newFakeDialer(), nil, nil},
		{"nil dialer", fastConfig(), nil, nil, nil},
		{"empty peer ID", fastConfig(), newFakeDialer(), []peer.AddrInfo{{}}, ErrInvalidPeer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := NewJoiner(tt.cfg, tt.d, tt.peers)
			if err == nil || j != nil {
				t.Fatalf("NewJoiner = %v, %v; want an error", j, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
		})
	}
}

// recordHandler keeps every log record's level and message.
type recordHandler struct {
	mu   sync.Mutex
	recs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Level.String()+" "+r.Message)
	return nil
}

func (h *recordHandler) count(level, msgPart string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if strings.HasPrefix(r, level+" ") && strings.Contains(r, msgPart) {
			n++
		}
	}
	return n
}

func TestJoinerLogLevels(t *testing.T) {
	d := newFakeDialer()
	a := testPeer(t, 1)
	d.set(a.ID, 4)
	h := &recordHandler{}
	cfg := fastConfig()
	cfg.Logger = slog.New(h)
	startJoiner(t, cfg, d, a)
	// The success is logged just after it becomes visible in Status, so
	// wait for the log line itself; every failure was logged before it.
	eventually(t, "success logged", func() bool { return h.count("INFO", "connected to peer") == 1 })

	tests := []struct {
		level, msg string
		want       int
	}{
		{"WARN", "cannot reach peer", 1},  // first failure only
		{"DEBUG", "still unreachable", 3}, // the following ones
		{"INFO", "connected to peer", 1},  // success
		{"WARN", "giving up", 0},          // MaxAttempts is 0: forever
	}
	for _, tt := range tests {
		if got := h.count(tt.level, tt.msg); got != tt.want {
			t.Errorf("%s %q logged %d times, want %d; log: %q", tt.level, tt.msg, got, tt.want, h.recs)
		}
	}
}

func TestJoinerManyPeersDialInParallel(t *testing.T) {
	d := newFakeDialer()
	var peers []peer.AddrInfo
	for i := range uint64(8) {
		p := testPeer(t, i+1)
		d.block[p.ID] = true
		peers = append(peers, p)
	}
	j := startJoiner(t, fastConfig(), d, peers...)
	eventually(t, "all peers dialled concurrently", func() bool { return d.inFlight.Load() == 8 })
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n := d.inFlight.Load(); n != 0 {
		t.Errorf("%d dials in flight after Close", n)
	}
}

func BenchmarkBackoff(b *testing.B) {
	cfg := DefaultConfig()
	for i := 0; b.Loop(); i++ {
		_ = Backoff(cfg, i%64+1, 0.5)
	}
}

func BenchmarkParse(b *testing.B) {
	s := "/ip4/10.0.0.1/tcp/7600/p2p/" + testID(b, 1).String()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
