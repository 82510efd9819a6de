package membership

import (
	"cmp"
	"context"
	"math"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// broadcastQueue is a transmit-limited queue of updates, at most one per
// member (a newer update about a member replaces the older one). take hands
// out the least-sent updates first and, among those, the newest; an update
// leaves the queue once it was sent limit times.
type broadcastQueue struct {
	items map[peer.ID]*queued
	seq   uint64
}

type queued struct {
	u         update
	transmits int
	seq       uint64 // higher is newer
}

func newBroadcastQueue() broadcastQueue {
	return broadcastQueue{items: make(map[peer.ID]*queued)}
}

// push queues u, replacing any queued update about the same member.
func (q *broadcastQueue) push(u update) {
	q.seq++
	q.items[u.member.ID] = &queued{u: u, seq: q.seq}
}

// drop removes any queued update about id.
func (q *broadcastQueue) drop(id peer.ID) { delete(q.items, id) }

func (q *broadcastQueue) len() int { return len(q.items) }

// take returns up to n updates to send, counting one transmit for each, and
// removes those sent limit times. skip excludes a member's update (one the
// caller adds itself).
func (q *broadcastQueue) take(n, limit int, skip peer.ID) []update {
	if n <= 0 || len(q.items) == 0 {
		return nil
	}
	all := make([]*queued, 0, len(q.items))
	for id, it := range q.items {
		if id != skip {
			all = append(all, it)
		}
	}
	slices.SortFunc(all, func(a, b *queued) int {
		if c := cmp.Compare(a.transmits, b.transmits); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	if len(all) > n {
		all = all[:n]
	}
	out := make([]update, len(all))
	for i, it := range all {
		out[i] = it.u
		it.transmits++
		if it.transmits >= limit {
			delete(q.items, it.u.member.ID)
		}
	}
	return out
}

// retransmitLimit is how many times one update is sent in a cluster of n:
// mult × ceil(log10(n+1)).
func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// piggybackLocked returns extra followed by queued updates for a message to
// `to`, at most MaxUpdatesPerMessage in all.
func (m *Memberlist) piggybackLocked(to peer.ID, extra ...update) []*pb.SwimUpdate {
	limit := retransmitLimit(m.cfg.RetransmitMult, len(m.members))
	skip := peer.ID("")
	if len(extra) > 0 {
		skip = extra[0].member.ID
	}
	us := append(extra, m.queue.take(m.cfg.MaxUpdatesPerMessage-len(extra), limit, skip)...)
	return updatesToPB(us)
}

// gossipRound pushes queued updates to GossipNodes random members: live
// ones, and those declared dead less than GossipToTheDeadTime ago.
func (m *Memberlist) gossipRound(ctx context.Context) {
	now := m.clk.Now()
	m.mu.Lock()
	if m.closed || m.queue.len() == 0 {
		m.mu.Unlock()
		return
	}
	targets := m.sampleLocked(m.cfg.GossipNodes, func(ms *memberState) bool {
		return ms.State.Live() ||
			(ms.State == dht.StateDead && now.Sub(ms.changed) < m.cfg.GossipToTheDeadTime)
	})
	tasks := make([]func(), 0, len(targets))
	for _, t := range targets {
		ups := m.piggybackLocked(t.ID)
		if len(ups) == 0 {
			break
		}
		to := t.ID
		req := &pb.SwimRequest{Kind: &pb.SwimRequest_Gossip{Gossip: &pb.SwimGossip{Updates: ups}}}
		tasks = append(tasks, func() { m.push(ctx, to, req) })
	}
	m.mu.Unlock()
	m.run(tasks)
}

// push sends one gossip message and merges the updates of the answer.
func (m *Memberlist) push(ctx context.Context, to peer.ID, req *pb.SwimRequest) bool {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
	defer cancel()
	var ack pb.SwimAck
	if err := m.tr.Call(ctx, to, ProtocolSWIM, req, &ack); err != nil {
		return false
	}
	m.handleAck(to, &ack)
	return true
}
