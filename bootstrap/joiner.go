package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Dialer connects to a peer. The daemon's libp2p host satisfies it through a
// small adapter that also checks the peer speaks ringkv. Connect must return
// promptly once ctx ends, and nil only when the peer is connected.
type Dialer interface {
	Connect(ctx context.Context, ai peer.AddrInfo) error
}

// PeerStatus is one bootstrap peer as the Joiner sees it, for
// `ringkv status`.
type PeerStatus struct {
	ID        peer.ID
	Addrs     []string // transport multiaddrs, without /p2p/
	Connected bool
	Attempts  int    // dials made since the peer was added
	Failures  int    // consecutive failed dials since the last success or Reconnect
	GaveUp    bool   // MaxAttempts reached: no dials until Reconnect or SetPeers
	LastError string // error of the last failed dial; "" after a success
	// NextRetry is when the next dial is due; zero while connected, while
	// dialling, or after giving up.
	NextRetry time.Time
}

// Joiner keeps a node connected to its bootstrap peers: one goroutine per
// peer dials it, retries failures with capped exponential backoff, and idles
// while the peer is connected until Reconnect says the connection dropped.
type Joiner struct {
	cfg    Config
	dialer Dialer
	log    *slog.Logger
	wg     sync.WaitGroup // one per running peer goroutine

	mu      sync.Mutex
	peers   map[peer.ID]*peerRun // guarded by mu
	order   []peer.ID            // guarded by mu; peers in the order given
	root    context.Context      // guarded by mu; set by Start
	cancel  context.CancelFunc   // guarded by mu; cancels root
	started bool                 // guarded by mu
	closed  bool                 // guarded by mu
	changed chan struct{}        // guarded by mu; closed and replaced when a peer's Connected flips
}

// peerRun is the state of one bootstrap peer and its goroutine.
type peerRun struct {
	wake chan struct{} // cap 1: Reconnect or SetPeers wants a dial now
	done chan struct{} // closed when the goroutine exits

	// Guarded by Joiner.mu.
	info        peer.AddrInfo
	cancel      context.CancelFunc // stops the goroutine; nil until launched
	connected   bool
	connectedAt time.Time
	flaps       int           // consecutive drops of short-lived connections
	holdoff     time.Duration // wait before the dial that follows a drop
	attempts    int
	failures    int
	gaveUp      bool
	lastErr     string
	nextRetry   time.Time
}

// NewJoiner builds a Joiner for peers (merged by ID; an entry equal to
// cfg.Self is skipped). It dials nothing until Start.
func NewJoiner(cfg Config, d Dialer, peers []peer.AddrInfo) (*Joiner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("bootstrap: NewJoiner: nil Dialer")
	}
	for i, ai := range peers {
		if ai.ID == "" {
			return nil, fmt.Errorf("%w: entry %d has an empty peer ID", ErrInvalidPeer, i+1)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	j := &Joiner{
		cfg:     cfg,
		dialer:  d,
		log:     cfg.Logger,
		peers:   make(map[peer.ID]*peerRun),
		changed: make(chan struct{}),
	}
	j.SetPeers(peers)
	return j, nil
}

// Start launches one goroutine per peer; each dials at once. The goroutines
// stop when ctx ends or at Close, whichever comes first. Start returns
// ErrStarted on a second call and ErrClosed after Close.
func (j *Joiner) Start(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if j.started {
		return ErrStarted
	}
	j.started = true
	j.root, j.cancel = context.WithCancel(ctx)
	for _, id := range j.order {
		j.launchLocked(j.peers[id])
	}
	j.log.Info("bootstrap: joining", "peers", len(j.order))
	return nil
}

// Close stops every goroutine and waits for them. It is idempotent, and
// every call returns only once the goroutines are gone. WaitConnected calls
// blocked in other goroutines return ErrClosed.
func (j *Joiner) Close() error {
	j.mu.Lock()
	if !j.closed {
		j.closed = true
		if j.cancel != nil {
			j.cancel()
		}
		j.notifyLocked()
	}
	j.mu.Unlock()
	j.wg.Wait()
	return nil
}

// SetPeers replaces the set of bootstrap peers. New peers start dialling
// (once started); removed peers stop, and SetPeers waits for their
// goroutines, so no dial of a removed peer begins after it returns. Kept
// peers take the new addresses at their next dial; a kept peer that gave up
// is retried. Entries with an empty ID are skipped with a warning.
func (j *Joiner) SetPeers(peers []peer.AddrInfo) {
	merged, index := make([]peer.AddrInfo, 0, len(peers)), make(map[peer.ID]int, len(peers))
	for _, ai := range peers {
		switch {
		case ai.ID == "":
			j.log.Warn("bootstrap: skipping peer with empty ID", "addrs", ai.Addrs)
		case ai.ID == j.cfg.Self:
			j.log.Debug("bootstrap: skipping self", "peer", ai.ID)
		default:
			merged = mergeInto(merged, index, ai)
		}
	}

	j.mu.Lock()
	var stopped []*peerRun
	for _, id := range j.order {
		if _, keep := index[id]; keep {
			continue
		}
		pr := j.peers[id]
		delete(j.peers, id)
		if pr.connected {
			j.notifyLocked()
		}
		if pr.cancel != nil {
			pr.cancel()
			stopped = append(stopped, pr)
		}
	}
	j.order = j.order[:0]
	for _, ai := range merged {
		j.order = append(j.order, ai.ID)
		if pr, ok := j.peers[ai.ID]; ok {
			pr.info = ai
			if pr.gaveUp {
				pr.gaveUp, pr.failures = false, 0
				signal(pr.wake)
			}
			continue
		}
		pr := &peerRun{info: ai, wake: make(chan struct{}, 1), done: make(chan struct{})}
		j.peers[ai.ID] = pr
		if j.started && !j.closed {
			j.launchLocked(pr)
		}
	}
	j.mu.Unlock()

	for _, pr := range stopped {
		<-pr.done
	}
}

// Reconnect tells the Joiner that its connection to id dropped: the peer
// goes back to dialling (an unknown id is ignored). A connection that had
// been up for at least MaxBackoff is redialled at once; one that dropped
// sooner counts as a flap and the redial waits a backoff that grows with
// consecutive flaps, so a peer that keeps closing connections is not
// hammered. A peer that gave up starts over.
func (j *Joiner) Reconnect(id peer.ID) {
	j.mu.Lock()
	pr, ok := j.peers[id]
	if !ok {
		j.mu.Unlock()
		return
	}
	if pr.connected {
		pr.connected = false
		j.notifyLocked()
		if time.Since(pr.connectedAt) < j.cfg.MaxBackoff {
			pr.flaps++
			pr.holdoff = Backoff(j.cfg, pr.flaps, rand.Float64())
		} else {
			pr.flaps, pr.holdoff = 0, 0
		}
	}
	pr.gaveUp, pr.failures = false, 0
	j.mu.Unlock()
	signal(pr.wake)
	j.log.Debug("bootstrap: peer disconnected; redialling", "peer", id)
}

// Status returns every bootstrap peer's state, in the order given to
// NewJoiner or SetPeers.
func (j *Joiner) Status() []PeerStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]PeerStatus, 0, len(j.order))
	for _, id := range j.order {
		pr := j.peers[id]
		addrs := make([]string, len(pr.info.Addrs))
		for i, a := range pr.info.Addrs {
			addrs[i] = a.String()
		}
		out = append(out, PeerStatus{
			ID:        id,
			Addrs:     addrs,
			Connected: pr.connected,
			Attempts:  pr.attempts,
			Failures:  pr.failures,
			GaveUp:    pr.gaveUp,
			LastError: pr.lastErr,
			NextRetry: pr.nextRetry,
		})
	}
	return out
}

// WaitConnected blocks until at least n bootstrap peers are connected at
// the same time, ctx ends (the error wraps ctx.Err() and says how many
// were connected), or the Joiner is closed (ErrClosed). n <= 0 returns nil
// at once. Self is never counted, so a node whose list names only itself
// should not wait.
func (j *Joiner) WaitConnected(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	for {
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return ErrClosed
		}
		have := 0
		for _, pr := range j.peers {
			if pr.connected {
				have++
			}
		}
		ch := j.changed
		j.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("bootstrap: %d of %d bootstrap peers connected: %w", have, n, ctx.Err())
		}
	}
}

// launchLocked starts pr's goroutine under the root context.
func (j *Joiner) launchLocked(pr *peerRun) {
	ctx, cancel := context.WithCancel(j.root)
	pr.cancel = cancel
	j.wg.Add(1)
	go j.run(ctx, pr)
}

// notifyLocked wakes every WaitConnected.
func (j *Joiner) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// signal does a non-blocking send on a wake channel of capacity 1.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// copyInfo returns a deep copy of ai, safe to hand to a Dialer.
func copyInfo(ai peer.AddrInfo) peer.AddrInfo {
	return peer.AddrInfo{ID: ai.ID, Addrs: slices.Clone(ai.Addrs)}
}

// outcome is what one dial led to.
type outcome int

const (
	outcomeRetry     outcome = iota // failed; dial again after a wait
	outcomeConnected                // connected; idle until Reconnect
	outcomeGaveUp                   // MaxAttempts reached; idle until Reconnect or SetPeers
	outcomeStopped                  // the peer was removed or the Joiner closed
)

// run is the goroutine of one peer: dial, then wait for the backoff (after
// a failure) or for a wake-up (while connected or given up), until ctx ends.
func (j *Joiner) run(ctx context.Context, pr *peerRun) {
	defer j.wg.Done()
	defer close(pr.done)
	var wait time.Duration
	for {
		if wait > 0 && !sleep(ctx, pr.wake, wait) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		out, next := j.dial(ctx, pr)
		switch out {
		case outcomeStopped:
			return
		case outcomeRetry:
			wait = next
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-pr.wake:
			wait = j.takeHoldoff(pr)
		}
	}
}

// dial makes one attempt and records its result. After a failure it also
// returns the wait before the next attempt.
func (j *Joiner) dial(ctx context.Context, pr *peerRun) (outcome, time.Duration) {
	j.mu.Lock()
	info := copyInfo(pr.info)
	pr.attempts++
	pr.nextRetry = time.Time{}
	j.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, j.cfg.DialTimeout)
	err := j.dialer.Connect(dctx, info)
	cancel()

	j.mu.Lock()
	if ctx.Err() != nil {
		j.mu.Unlock()
		return outcomeStopped, 0
	}
	if err == nil {
		pr.connected, pr.connectedAt = true, time.Now()
		pr.failures, pr.lastErr = 0, ""
		j.notifyLocked()
		j.mu.Unlock()
		j.log.Info("bootstrap: connected to peer", "peer", info.ID, "addrs", info.Addrs)
		return outcomeConnected, 0
	}
	pr.failures++
	pr.lastErr = err.Error()
	failures := pr.failures
	if j.cfg.MaxAttempts > 0 && failures >= j.cfg.MaxAttempts {
		pr.gaveUp = true
		j.mu.Unlock()
		j.log.Warn("bootstrap: giving up on peer", "peer", info.ID, "addrs", info.Addrs,
			"attempt", failures, "err", err)
		return outcomeGaveUp, 0
	}
	wait := Backoff(j.cfg, failures, rand.Float64())
	pr.nextRetry = time.Now().Add(wait)
	j.mu.Unlock()

	if failures == 1 {
		j.log.Warn("bootstrap: cannot reach peer; retrying in the background", "peer", info.ID,
			"addrs", info.Addrs, "err", err, "retry_in", wait)
	} else {
		j.log.Debug("bootstrap: peer still unreachable", "peer", info.ID,
			"attempt", failures, "err", err, "retry_in", wait)
	}
	return outcomeRetry, wait
}

// takeHoldoff returns and clears the wait Reconnect set for a flapping
// peer, and shows it as the next retry.
func (j *Joiner) takeHoldoff(pr *peerRun) time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	d := pr.holdoff
	pr.holdoff = 0
	if d > 0 {
		pr.nextRetry = time.Now().Add(d)
	}
	return d
}

// sleep waits for d, a wake-up (which cuts the wait short) or the end of
// ctx. It reports false when ctx ended.
func sleep(ctx context.Context, wake <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}
