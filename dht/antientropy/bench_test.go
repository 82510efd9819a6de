package antientropy

import (
	"context"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring"
)

// BenchmarkRound measures one full Round between two replicas holding
// 100k keys (N = 2, 256 tokens per node: 512 arcs of about 200 keys), of
// which diff keys differ: each iteration first overwrites diff keys on
// the node that runs the round (untimed). Reported per round: sync RPCs,
// bytes moved, records moved. The round includes handoff and tombstone
// collection scans, and both sides' work (memnet runs the peer's handler
// in the caller's goroutine).
func BenchmarkRound(b *testing.B) {
	const keys = 100_000
	for _, diff := range []int{0, 100} {
		b.Run(fmt.Sprintf("keys=100k/diff=%d", diff), func(b *testing.B) {
			cfg := testConfig()
			cfg.RateBytes = 1 << 30
			c := newCluster(b, 2, 2, ring.DefaultVNodes, cfg)
			ts := c.clock.Now()
			entries := make([]dht.Entry, keys)
			recs := make([]dht.Record, keys)
			for i := range entries {
				recs[i] = write(dht.Record{}, actor(0), "value-"+keyName(i), ts)
				entries[i] = dht.Entry{Key: dataKey([]byte(keyName(i))), Record: recs[i]}
			}
			for _, nd := range c.nodes {
				if err := nd.st.PutBatch(context.Background(), entries); err != nil {
					b.Fatal(err)
				}
			}
			runner := c.nodes[c.ids[0]]
			calls0 := c.w.net.ProtocolCalls(Protocol)
			var moved, bytes int64
			next := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for range diff {
					k := next % keys
					recs[k] = write(recs[k], actor(1), fmt.Sprintf("round-%d", i), ts)
					c.put(runner.id, keyName(k), recs[k])
					next += 7919 // spread over the ring
				}
				b.StartTimer()
				p, err := runner.s.Round(context.Background(), nil)
				if err != nil {
					b.Fatalf("Round: %v", err)
				}
				moved += p.KeysSent + p.KeysReceived
				bytes += p.Bytes
				if p.KeysSent != int64(diff) {
					b.Fatalf("round pushed %d records, want %d", p.KeysSent, diff)
				}
			}
			b.ReportMetric(float64(c.w.net.ProtocolCalls(Protocol)-calls0)/float64(b.N), "rpcs/op")
			b.ReportMetric(float64(bytes)/float64(b.N), "bytes/op")
			b.ReportMetric(float64(moved)/float64(b.N), "records/op")
		})
	}
}
