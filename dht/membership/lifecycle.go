package membership

import (
	"context"
	"time"

	"github.com/ringkv/ringkv/dht"
)

// maxTimerWait bounds the timer loop's sleep so reaping and storage reports
// happen without a kick.
const maxTimerWait = time.Second

// Start registers the SWIM and push-pull handlers on the transport and,
// unless Config.Manual, starts the probe, gossip, push-pull and timer
// loops. ctx's values reach the loops; its cancellation does not: Close
// stops them.
func (m *Memberlist) Start(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return dht.ErrClosed
	case m.started:
		m.mu.Unlock()
		return ErrStarted
	}
	m.started = true
	m.mu.Unlock()

	m.tr.Handle(ProtocolSWIM, newSwimRequest, m.handleSWIM)
	m.tr.Handle(ProtocolPushPull, newPushPullRequest, m.handlePushPull)
	if m.cfg.Manual {
		return nil
	}
	root, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.cancel = cancel
	m.mu.Unlock()
	m.wg.Add(4)
	go m.loop(root, nil, m.nextProbe, m.tickProbe)
	go m.loop(root, nil, m.nextGossip, m.tickGossip)
	go m.loop(root, nil, m.nextPushPull, m.tickPushPull)
	go m.loop(root, m.wake, m.nextTimer, func(context.Context) { m.tickTimers() })
	return nil
}

// Close stops the loops and waits for them; handlers answer ErrClosed from
// then on. It is idempotent and does not announce anything: call Leave
// first for a clean departure.
func (m *Memberlist) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		cancel := m.cancel
		m.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		m.wg.Wait()
	})
	return nil
}

// Step runs whatever is due at the Clock's now: suspicion expiries, reaping
// and storage reports, then a probe round, a gossip round and a push-pull
// round when their time has come. It is for Config.Manual; the loops of
// Start call the same ticks.
func (m *Memberlist) Step(ctx context.Context) {
	m.tickTimers()
	m.tickProbe(ctx)
	m.tickGossip(ctx)
	m.tickPushPull(ctx)
}

// loop runs tick each time next() comes, or wake fires, until ctx ends.
func (m *Memberlist) loop(ctx context.Context, wake <-chan struct{}, next func() time.Time, tick func(context.Context)) {
	defer m.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(max(next().Sub(m.clk.Now()), 0))
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
		tick(ctx)
	}
}

func (m *Memberlist) nextProbe() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next.probe
}

func (m *Memberlist) nextGossip() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next.gossip
}

func (m *Memberlist) nextPushPull() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next.pushPull
}

// nextTimer is the earliest suspicion deadline, at most maxTimerWait away.
func (m *Memberlist) nextTimer() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := m.clk.Now().Add(maxTimerWait)
	if d := m.nextDeadlineLocked(); !d.IsZero() && d.Before(limit) {
		return d
	}
	return limit
}

// tickProbe runs a probe round if one is due. The next one is due a scaled
// probe interval after this one started.
func (m *Memberlist) tickProbe(ctx context.Context) {
	now := m.clk.Now()
	m.mu.Lock()
	if now.Before(m.next.probe) {
		m.mu.Unlock()
		return
	}
	m.next.probe = now.Add(m.scaleLocked(m.cfg.ProbeInterval))
	m.mu.Unlock()
	m.probeRound(ctx)
}

func (m *Memberlist) tickGossip(ctx context.Context) {
	now := m.clk.Now()
	m.mu.Lock()
	if now.Before(m.next.gossip) {
		m.mu.Unlock()
		return
	}
	m.next.gossip = now.Add(m.cfg.GossipInterval)
	m.mu.Unlock()
	m.gossipRound(ctx)
}

func (m *Memberlist) tickPushPull(ctx context.Context) {
	now := m.clk.Now()
	m.mu.Lock()
	if now.Before(m.next.pushPull) {
		m.mu.Unlock()
		return
	}
	m.next.pushPull = now.Add(m.cfg.PushPullInterval)
	m.mu.Unlock()
	m.pushPullRound(ctx)
}

// tickTimers declares expired suspects dead, reaps old departures and
// gossips a pending storage report.
func (m *Memberlist) tickTimers() {
	now := m.clk.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.expireLocked(now)
	m.reapLocked(now)
	m.reportStorageLocked(now)
	m.mu.Unlock()
	m.flushEvents()
}
