package membership

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

func gossipReq(us ...update) *pb.SwimRequest {
	return &pb.SwimRequest{Kind: &pb.SwimRequest_Gossip{Gossip: &pb.SwimGossip{Updates: updatesToPB(us)}}}
}

func pingReq(target peer.ID) *pb.SwimRequest {
	return &pb.SwimRequest{Kind: &pb.SwimRequest_Ping{Ping: &pb.SwimPing{Seq: 7, Target: []byte(target)}}}
}

func TestBadInputRefused(t *testing.T) {
	tests := []struct {
		name   string
		modify func(pu *pb.SwimUpdate)
		reason string
	}{
		{"id is not a peer id", func(pu *pb.SwimUpdate) { pu.Member.Id = []byte("not a peer id") }, reasonBadID},
		{"empty id", func(pu *pb.SwimUpdate) { pu.Member.Id = nil }, reasonBadID},
		{"too many addrs", func(pu *pb.SwimUpdate) { pu.Member.Addrs = make([]string, MaxAddrs+1) }, reasonTooManyAddrs},
		{"addr too long", func(pu *pb.SwimUpdate) { pu.Member.Addrs = []string{strings.Repeat("a", MaxAddrLen+1)} }, reasonAddrTooLong},
		{"zone too long", func(pu *pb.SwimUpdate) { pu.Member.Zone = strings.Repeat("z", MaxZoneLen+1) }, reasonZoneTooLong},
		{"zero capacity", func(pu *pb.SwimUpdate) { pu.Member.Capacity = 0 }, reasonBadCapacity},
		{"capacity over 64", func(pu *pb.SwimUpdate) { pu.Member.Capacity = 64.5 }, reasonBadCapacity},
		{"capacity NaN", func(pu *pb.SwimUpdate) { pu.Member.Capacity = math.NaN() }, reasonBadCapacity},
		{"state unspecified", func(pu *pb.SwimUpdate) { pu.Member.State = 0 }, reasonBadState},
		{"state unknown", func(pu *pb.SwimUpdate) { pu.Member.State = 42 }, reasonBadState},
		{"negative storage", func(pu *pb.SwimUpdate) { pu.Member.StorageUsed = -1 }, reasonBadStorage},
		{"token digest not derived from id", func(pu *pb.SwimUpdate) { pu.Member.TokenDigest++ }, reasonBadTokens},
		{"token count not derived from capacity", func(pu *pb.SwimUpdate) { pu.Member.TokenCount = 1000 }, reasonBadTokens},
		{"from is not a peer id", func(pu *pb.SwimUpdate) { pu.From = []byte{1, 2, 3} }, reasonBadID},
		{"no member", func(pu *pb.SwimUpdate) { pu.Member = nil }, reasonBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newManualNode(t)
			sender, victim := n.ids[1], n.ids[2]
			req := gossipReq(n.member(victim, dht.StateNormal, 1))
			tc.modify(req.GetGossip().Updates[0])
			if _, err := n.m.handleSWIM(context.Background(), sender, req); err != nil {
				t.Fatalf("one bad update failed the whole message: %v", err)
			}
			if got := n.refused(t, tc.reason); got != 1 {
				t.Fatalf("refused{%s} = %v, want 1", tc.reason, got)
			}
			if got := len(n.m.Members()); got != 1 {
				t.Fatalf("members = %d, want only self", got)
			}
			// Still working: a ping is acked, a valid update is taken.
			resp, err := n.m.handleSWIM(context.Background(), sender, pingReq(n.ids[0]))
			if err != nil || resp.(*pb.SwimAck).GetNack() {
				t.Fatalf("ping after bad input: %v, %v", resp, err)
			}
			if _, err := n.m.handleSWIM(context.Background(), sender, gossipReq(n.member(victim, dht.StateNormal, 1))); err != nil {
				t.Fatal(err)
			}
			if _, ok := n.m.Member(victim); !ok {
				t.Fatal("valid update refused after bad input")
			}
		})
	}
}

func TestOversizedMessagesRefused(t *testing.T) {
	n := newManualNode(t)
	sender := n.ids[1]
	u := updatesToPB([]update{n.member(n.ids[2], dht.StateNormal, 1)})[0]
	many := make([]*pb.SwimUpdate, MaxWireUpdates+1)
	for i := range many {
		many[i] = u
	}
	reqs := []*pb.SwimRequest{
		{Kind: &pb.SwimRequest_Gossip{Gossip: &pb.SwimGossip{Updates: many}}},
		{Kind: &pb.SwimRequest_Ping{Ping: &pb.SwimPing{Updates: many}}},
		{Kind: &pb.SwimRequest_PingReq{PingReq: &pb.SwimPingReq{Updates: many}}},
	}
	for i, req := range reqs {
		if _, err := n.m.handleSWIM(context.Background(), sender, req); !errors.Is(err, ErrRefused) {
			t.Fatalf("request %d: err = %v, want ErrRefused", i, err)
		}
	}
	if got := n.refused(t, reasonTooManyUpdates); got != 3 {
		t.Fatalf("refused{too_many_updates} = %v, want 3", got)
	}
	members := make([]*pb.SwimMember, MaxWireMembers+1)
	for i := range members {
		members[i] = u.Member
	}
	if _, err := n.m.handlePushPull(context.Background(), sender, &pb.SwimPushPull{Members: members}); !errors.Is(err, ErrRefused) {
		t.Fatalf("push-pull: err = %v, want ErrRefused", err)
	}
	if got := n.refused(t, reasonTooManyMembers); got != 1 {
		t.Fatalf("refused{too_many_members} = %v, want 1", got)
	}
	if got := len(n.m.Members()); got != 1 {
		t.Fatalf("members = %d after refused messages, want 1", got)
	}
	if _, err := n.m.handleSWIM(context.Background(), sender, &pb.SwimRequest{}); !errors.Is(err, ErrRefused) {
		t.Fatalf("empty request: err = %v, want ErrRefused", err)
	}
}

func TestPingReqNacks(t *testing.T) {
	n := newManualNode(t)
	known, unknown := n.ids[1], n.ids[2]
	n.apply(n.member(known, dht.StateNormal, 1)) // known but not on the network
	tests := []struct {
		name   string
		from   peer.ID
		target []byte
		nack   bool
	}{
		{"unknown target", known, []byte(unknown), true},
		{"unknown sender", unknown, []byte(known), true},
		{"malformed target", known, []byte("junk"), true},
		{"unreachable target", known, []byte(known), true},
		{"target is self", known, []byte(n.ids[0]), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &pb.SwimRequest{Kind: &pb.SwimRequest_PingReq{PingReq: &pb.SwimPingReq{
				Seq: 1, Target: tc.target, TimeoutMs: 20,
			}}}
			resp, err := n.m.handleSWIM(context.Background(), tc.from, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.(*pb.SwimAck).GetNack(); got != tc.nack {
				t.Fatalf("nack = %v, want %v", got, tc.nack)
			}
		})
	}
	if got := n.refused(t, reasonBadID); got != 1 {
		t.Fatalf("refused{bad_id} = %v, want 1 for the malformed target", got)
	}
}

func TestPushPullMergesAndAnswers(t *testing.T) {
	n := newManualNode(t)
	sender, other := n.ids[1], n.ids[2]
	n.apply(n.member(other, dht.StateNormal, 4))
	req := &pb.SwimPushPull{Join: true, Members: []*pb.SwimMember{
		memberToPB(n.member(sender, dht.StateJoining, 0)),
		memberToPB(n.member(other, dht.StateDead, 4)),                               // counts as a suspicion
		memberToPB(n.member(n.ids[0], dht.StateDead, 0)),                            // refuted
		memberToPB(n.member(n.ids[3], dht.StateDead, 1)),                            // unknown dead: dropped
		{Id: []byte("bad"), Capacity: 1, State: pb.MemberState_MEMBER_STATE_NORMAL}, // refused
	}}
	resp, err := n.m.handlePushPull(context.Background(), sender, req)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		id    peer.ID
		state dht.State
		known bool
	}{{sender, dht.StateJoining, true}, {other, dht.StateSuspect, true}, {n.ids[3], 0, false}}
	for _, c := range checks {
		m, ok := n.m.Member(c.id)
		if ok != c.known || (ok && m.State != c.state) {
			t.Fatalf("%s: %v (known %v), want %v (known %v)", short(c.id), m.State, ok, c.state, c.known)
		}
	}
	if inc := n.m.Local().Incarnation; inc != 1 {
		t.Fatalf("self incarnation %d after a dead claim at 0, want 1", inc)
	}
	got := resp.(*pb.SwimPushPull).GetMembers()
	if len(got) != 3 {
		t.Fatalf("answer has %d members, want 3", len(got))
	}
	if n.refused(t, reasonBadID) != 1 {
		t.Fatal("malformed member not counted")
	}
}
