package replica_test

import (
	"context"
	"testing"

	"github.com/ringkv/ringkv/dht/replica"
)

// BenchmarkWriteLocalCoordinator overwrites one key at one of its three
// replicas (memnet with Clone on, W=2), with the context of the previous
// write, so the record stays one version.
func BenchmarkWriteLocalCoordinator(b *testing.B) {
	cfg := testConfig()
	cfg.WriteQuorum = 2
	c := newCluster(b, 3, cfg)
	r := c.roles("bench-key")
	e := c.node(r.nat[0]).e
	ctx := context.Background()
	w := replica.Write{Key: r.key, Value: make([]byte, 128)}
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Write(ctx, w)
		if err != nil {
			b.Fatal(err)
		}
		w.Context = res.Context
	}
}

// BenchmarkRead reads one key from a replica with R=2 (memnet with Clone
// on); the replicas agree, so no read repair is written.
func BenchmarkRead(b *testing.B) {
	c := newCluster(b, 3, testConfig())
	r := c.roles("bench-key")
	e := c.node(r.nat[0]).e
	ctx := context.Background()
	if _, err := e.Write(ctx, replica.Write{Key: r.key, Value: make([]byte, 128), W: 3}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Read(ctx, r.key, 2); err != nil {
			b.Fatal(err)
		}
	}
}
