package membership

import (
	"context"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// BenchmarkHandlePing measures one ping answered with a full piggyback.
func BenchmarkHandlePing(b *testing.B) {
	n := newManualNode(b)
	ids := testIDs(b, 200)
	for _, id := range ids[1:] {
		n.apply(n.member(id, dht.StateNormal, 1))
	}
	req := pingReq(n.ids[0])
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i%50 == 0 { // keep the queue non-empty with fresh updates
			n.apply(n.member(ids[1+i%198], dht.StateNormal, uint64(i)+2))
		}
		if _, err := n.m.handleSWIM(ctx, ids[1], req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushPullMerge measures merging a full state of N members that
// are all already known (the steady-state push-pull).
func BenchmarkPushPullMerge(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("N=%d", size), func(b *testing.B) {
			n := newManualNode(b)
			ids := testIDs(b, size)
			ms := make([]*pb.SwimMember, 0, size)
			for _, id := range ids {
				u := n.member(id, dht.StateNormal, 1)
				n.apply(u)
				ms = append(ms, memberToPB(u))
			}
			req := &pb.SwimPushPull{Members: ms}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.m.handlePushPull(ctx, ids[1], req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
