package routing

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// BenchmarkLookup measures one lookup on a converged 64-node ring over
// memnet with cloning (every message marshalled): cold (one vnode, no
// cache: successor lists and fingers only) and warm (every node known).
func BenchmarkLookup(b *testing.B) {
	for _, tc := range []struct {
		name          string
		vnodes, cache int
		opts          Options
	}{
		{"cold/iterative", 1, 0, Options{}},
		{"cold/recursive", 1, 0, Options{Recursive: true}},
		{"warm/iterative", 16, 1024, Options{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.VNodes, cfg.CacheSize = tc.vnodes, tc.cache
			c := newCluster(b, 64, 0, cfg)
			c.joinAll(context.Background(), 2)
			rng := rand.New(rand.NewPCG(1, 1))
			hops := 0
			b.ResetTimer()
			for b.Loop() {
				r := c.routers[rng.IntN(len(c.routers))]
				res, err := r.Lookup(context.Background(), rng.Uint64(), tc.opts)
				if err != nil {
					b.Fatal(err)
				}
				hops += res.Hops
			}
			b.ReportMetric(float64(hops)/float64(b.N), "hops/op")
		})
	}
}

// BenchmarkAnswer measures the handler's work for one FIND: a snapshot of
// the local ring and the answer, without transport.
func BenchmarkAnswer(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%d peers V16", n), func(b *testing.B) {
			nodes := ringtest.Nodes(uint64(n), n, 3)
			cfg := testConfig()
			c := newCluster(b, 1, 0, cfg)
			r := c.add(nodes[0], cfg)
			for _, nd := range nodes[1:] {
				r.Observe(Peer{ID: nd.ID, Zone: nd.Zone, Capacity: 1})
			}
			r.Size()
			rng := rand.New(rand.NewPCG(2, 2))
			b.ResetTimer()
			for b.Loop() {
				_, _ = r.handleFind(context.Background(), c.routers[0].Self().ID, &pb.FindRequest{Pos: rng.Uint64()})
			}
		})
	}
}

// BenchmarkRebuild measures sorting one new peer into a local ring of n
// peers with 16 tokens each, evictions and pins included.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%d peers V16", n), func(b *testing.B) {
			nodes := ringtest.Nodes(uint64(n)+1, n+1, 0)
			tab := newTestTable(nodes[:n], 16, 8, 4, n)
			tab.fullSnapshot()
			extra := []*peerRec{
				newRec(Peer{ID: nodes[n].ID, Capacity: 1}, 16),
				newRec(Peer{ID: ringtest.PeerID(9, 9), Capacity: 1}, 16),
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				tab.observe(extra[i%2])
				tab.rebuild()
			}
		})
	}
}
