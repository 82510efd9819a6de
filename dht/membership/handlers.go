package membership

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// maxHelperTimeout bounds the time a ping-req may ask an intermediate to
// wait, so a peer cannot park handlers for long.
const maxHelperTimeout = 10 * time.Second

func newSwimRequest() proto.Message     { return new(pb.SwimRequest) }
func newPushPullRequest() proto.Message { return new(pb.SwimPushPull) }

// handleSWIM answers ping, ping-req and gossip. It never panics on remote
// input: bad requests are refused with an error, unknown ping-req targets
// and senders get a nack.
func (m *Memberlist) handleSWIM(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
	r, ok := req.(*pb.SwimRequest)
	if !ok || r == nil {
		m.refuse(from, reasonBadRequest)
		return nil, fmt.Errorf("%w: not a swim request", ErrRefused)
	}
	if m.isClosed() {
		return nil, dht.ErrClosed
	}
	switch k := r.GetKind().(type) {
	case *pb.SwimRequest_Ping:
		return m.onPing(from, k.Ping)
	case *pb.SwimRequest_PingReq:
		return m.onPingReq(ctx, from, k.PingReq)
	case *pb.SwimRequest_Gossip:
		return m.onGossip(from, k.Gossip)
	}
	m.refuse(from, reasonBadRequest)
	return nil, fmt.Errorf("%w: empty swim request", ErrRefused)
}

func (m *Memberlist) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *Memberlist) onPing(from peer.ID, p *pb.SwimPing) (proto.Message, error) {
	us, err := m.decodeUpdates(from, p.GetUpdates())
	if err != nil {
		return nil, err
	}
	m.applyUpdates(from, us)
	// A ping meant for another identity (a restarted address) is nacked.
	nack := len(p.GetTarget()) > 0 && peer.ID(p.GetTarget()) != m.self
	return m.answer(from, p.GetSeq(), nack), nil
}

func (m *Memberlist) onGossip(from peer.ID, g *pb.SwimGossip) (proto.Message, error) {
	us, err := m.decodeUpdates(from, g.GetUpdates())
	if err != nil {
		return nil, err
	}
	m.applyUpdates(from, us)
	return m.answer(from, 0, false), nil
}

// onPingReq pings the target on the sender's behalf and answers ack or nack
// (Lifeguard), always before the sender's deadline.
func (m *Memberlist) onPingReq(ctx context.Context, from peer.ID, r *pb.SwimPingReq) (proto.Message, error) {
	us, err := m.decodeUpdates(from, r.GetUpdates())
	if err != nil {
		return nil, err
	}
	m.applyUpdates(from, us)
	target, reason := decodeID(r.GetTarget())
	if reason != "" {
		m.refuse(from, reason)
		return m.answer(from, r.GetSeq(), true), nil
	}
	if target == m.self {
		return m.answer(from, r.GetSeq(), false), nil
	}
	m.mu.Lock()
	_, knowTarget := m.members[target]
	_, knowSender := m.members[from]
	var ping *pb.SwimRequest
	if knowTarget && knowSender {
		ping = &pb.SwimRequest{Kind: &pb.SwimRequest_Ping{Ping: &pb.SwimPing{
			Seq: r.GetSeq(), Target: []byte(target), Updates: m.piggybackLocked(target),
		}}}
	}
	m.mu.Unlock()
	if ping == nil {
		return m.answer(from, r.GetSeq(), true), nil
	}
	timeout := min(max(time.Duration(r.GetTimeoutMs())*time.Millisecond, time.Millisecond), maxHelperTimeout)
	acked := m.ping(ctx, target, ping, timeout)
	return m.answer(from, r.GetSeq(), !acked), nil
}

// answer builds an ack with piggybacked updates. A sender this node holds
// as suspect or dead also gets its own record, so it can refute.
func (m *Memberlist) answer(to peer.ID, seq uint64, nack bool) *pb.SwimAck {
	m.mu.Lock()
	defer m.mu.Unlock()
	var extra []update
	if ms, ok := m.members[to]; ok && (ms.State == dht.StateSuspect || ms.State == dht.StateDead) {
		extra = append(extra, updateOf(ms, m.self))
	}
	return &pb.SwimAck{Seq: seq, Nack: nack, Updates: m.piggybackLocked(to, extra...)}
}

// handlePushPull merges the sender's full state, then answers with the
// local one (after the merge, so refutations it caused are included).
func (m *Memberlist) handlePushPull(_ context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
	r, ok := req.(*pb.SwimPushPull)
	if !ok || r == nil {
		m.refuse(from, reasonBadRequest)
		return nil, fmt.Errorf("%w: not a push-pull", ErrRefused)
	}
	if m.isClosed() {
		return nil, dht.ErrClosed
	}
	us, err := m.decodeMembers(from, r.GetMembers())
	if err != nil {
		return nil, err
	}
	now := m.clk.Now()
	m.mu.Lock()
	m.heardLocked(from, now)
	m.mergeRemoteLocked(us, now)
	if r.GetComplete() {
		m.complete.Store(true)
	}
	resp := &pb.SwimPushPull{Members: m.snapshotLocked(), Complete: m.complete.Load()}
	m.mu.Unlock()
	m.flushEvents()
	return resp, nil
}

// snapshotLocked is the full local state for push-pull.
func (m *Memberlist) snapshotLocked() []*pb.SwimMember {
	all := m.sortedMembersLocked()
	out := make([]*pb.SwimMember, len(all))
	for i, ms := range all {
		out[i] = memberToPB(updateOf(ms, ""))
	}
	return out
}
