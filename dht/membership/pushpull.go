package membership

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// pushPullTimeout bounds one full state exchange, in probe intervals.
const pushPullTimeout = 4

// pushPullRound exchanges full state with one random live member, and tries
// one random dead member so that the two sides of a healed partition find
// each other again.
func (m *Memberlist) pushPullRound(ctx context.Context) {
	m.mu.Lock()
	if m.left || m.closed {
		m.mu.Unlock()
		return
	}
	var targets []peer.ID
	for _, ms := range m.sampleLocked(1, func(ms *memberState) bool { return isAliveState(ms.State) }) {
		targets = append(targets, ms.ID)
	}
	for _, ms := range m.sampleLocked(1, func(ms *memberState) bool { return ms.State == dht.StateDead }) {
		targets = append(targets, ms.ID)
	}
	m.mu.Unlock()
	for _, t := range targets {
		if err := m.pushPull(ctx, t, false); err != nil {
			m.log.Debug("push-pull failed", "peer", t.String(), "err", err)
		}
	}
}

// pushPull sends the full local state to `to` and merges its answer.
func (m *Memberlist) pushPull(ctx context.Context, to peer.ID, join bool) error {
	ctx, cancel := context.WithTimeout(ctx, pushPullTimeout*m.cfg.ProbeInterval)
	defer cancel()
	m.mu.Lock()
	req := &pb.SwimPushPull{Members: m.snapshotLocked(), Join: join, Complete: m.complete.Load()}
	m.mu.Unlock()
	var resp pb.SwimPushPull
	if err := m.tr.Call(ctx, to, ProtocolPushPull, req, &resp); err != nil {
		return err
	}
	us, err := m.decodeMembers(to, resp.GetMembers())
	if err != nil {
		return err
	}
	now := m.clk.Now()
	m.mu.Lock()
	m.heardLocked(to, now)
	m.mergeRemoteLocked(us, now)
	m.mu.Unlock()
	if resp.GetComplete() {
		m.complete.Store(true)
	}
	m.flushEvents()
	return nil
}

// Join exchanges full state with each seed (whose addresses the caller has
// given the transport) and returns how many answered. It fails with
// ErrJoinFailed only when none did. Call Start first, so the cluster can
// reach this node back.
func (m *Memberlist) Join(ctx context.Context, seeds []peer.ID) (int, error) {
	if m.isClosed() {
		return 0, dht.ErrClosed
	}
	joined := 0
	var errs []error
	for _, s := range seeds {
		if s == m.self {
			continue
		}
		if err := m.pushPull(ctx, s, true); err != nil {
			errs = append(errs, fmt.Errorf("seed %s: %w", s, err))
			continue
		}
		joined++
	}
	if joined == 0 {
		if len(errs) == 0 {
			return 0, fmt.Errorf("%w: no seed other than self", ErrJoinFailed)
		}
		return 0, fmt.Errorf("%w: %w", ErrJoinFailed, errors.Join(errs...))
	}
	return joined, nil
}

// Leave announces that the local node left, with a bumped incarnation,
// pushes it to random live members and returns once min(N-1,
// 2·GossipNodes) of them took it, or fails with ErrLeaveIncomplete (also
// when ctx ends first). The node stops probing; call Close afterwards.
func (m *Memberlist) Leave(ctx context.Context) error {
	now := m.clk.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return dht.ErrClosed
	}
	me := m.members[m.self]
	if !m.left {
		m.left = true
		prev := me.State
		me.State = dht.StateLeft
		me.Incarnation++
		me.changed = now
		m.pending = append(m.pending, Event{Member: me.public(), Prev: prev})
	}
	self := m.selfUpdateLocked()
	m.queue.push(self)
	targets := m.sampleLocked(len(m.ids), func(ms *memberState) bool { return isAliveState(ms.State) })
	m.mu.Unlock()
	m.flushEvents()

	need := min(len(targets), 2*m.cfg.GossipNodes)
	req := &pb.SwimRequest{Kind: &pb.SwimRequest_Gossip{Gossip: &pb.SwimGossip{
		Updates: updatesToPB([]update{self}),
	}}}
	sent := 0
	for _, t := range targets {
		if sent >= need {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %d of %d: %w", ErrLeaveIncomplete, sent, need, err)
		}
		if m.push(ctx, t.ID, req) {
			sent++
		}
	}
	if sent < need {
		return fmt.Errorf("%w: %d of %d", ErrLeaveIncomplete, sent, need)
	}
	return nil
}
