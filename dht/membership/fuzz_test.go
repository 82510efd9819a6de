package membership

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// fuzzSeeds returns valid encodings of every message kind plus junk, so
// each target starts from inputs that reach deep into its handler.
func fuzzSeeds(f *testing.F, n *manualNode) {
	f.Helper()
	good := n.member(n.ids[2], dht.StateNormal, 3)
	suspectSelf := n.member(n.ids[0], dht.StateSuspect, 0)
	ups := updatesToPB([]update{good, suspectSelf})
	msgs := []proto.Message{
		&pb.SwimPing{Seq: 1, Target: []byte(n.ids[0]), Updates: ups},
		&pb.SwimPingReq{Seq: 2, Target: []byte(n.ids[2]), TimeoutMs: 5, Updates: ups},
		&pb.SwimGossip{Updates: ups},
		&pb.SwimAck{Seq: 3, Nack: true, Updates: ups},
		&pb.SwimPushPull{Join: true, Members: []*pb.SwimMember{ups[0].Member, ups[1].Member}},
		gossipReq(good),
	}
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte("\x1a\x05\x0a\x03\x0a\x01x"))
}

// fuzzHandler decodes arbitrary bytes into msg and hands it to handle, which
// must neither panic nor hang.
func fuzzHandler(f *testing.F, newMsg func() proto.Message, handle func(n *manualNode, msg proto.Message)) {
	n := newManualNode(f)
	n.apply(n.member(n.ids[1], dht.StateNormal, 1))
	n.apply(n.member(n.ids[2], dht.StateNormal, 1))
	fuzzSeeds(f, n)
	f.Fuzz(func(t *testing.T, b []byte) {
		msg := newMsg()
		if err := proto.Unmarshal(b, msg); err != nil {
			return
		}
		handle(n, msg)
		if _, ok := n.m.Member(n.ids[0]); !ok {
			t.Fatal("the node forgot itself")
		}
	})
}

func swimCall(n *manualNode, req *pb.SwimRequest) {
	_, _ = n.m.handleSWIM(context.Background(), n.ids[1], req)
}

func FuzzHandlePing(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimPing) }, func(n *manualNode, msg proto.Message) {
		swimCall(n, &pb.SwimRequest{Kind: &pb.SwimRequest_Ping{Ping: msg.(*pb.SwimPing)}})
	})
}

func FuzzHandlePingReq(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimPingReq) }, func(n *manualNode, msg proto.Message) {
		r := msg.(*pb.SwimPingReq)
		r.TimeoutMs = min(r.TimeoutMs, 5) // keep each run short
		swimCall(n, &pb.SwimRequest{Kind: &pb.SwimRequest_PingReq{PingReq: r}})
	})
}

func FuzzHandleGossip(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimGossip) }, func(n *manualNode, msg proto.Message) {
		swimCall(n, &pb.SwimRequest{Kind: &pb.SwimRequest_Gossip{Gossip: msg.(*pb.SwimGossip)}})
	})
}

func FuzzHandleSWIMRequest(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimRequest) }, func(n *manualNode, msg proto.Message) {
		if r := msg.(*pb.SwimRequest).GetPingReq(); r != nil {
			r.TimeoutMs = min(r.TimeoutMs, 5)
		}
		swimCall(n, msg.(*pb.SwimRequest))
	})
}

func FuzzHandleAck(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimAck) }, func(n *manualNode, msg proto.Message) {
		n.m.handleAck(n.ids[1], msg.(*pb.SwimAck))
	})
}

func FuzzHandlePushPull(f *testing.F) {
	fuzzHandler(f, func() proto.Message { return new(pb.SwimPushPull) }, func(n *manualNode, msg proto.Message) {
		_, _ = n.m.handlePushPull(context.Background(), n.ids[1], msg)
	})
}
