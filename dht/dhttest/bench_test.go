package dhttest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
)

// filled returns a store holding n records of 100-byte values.
func filled(b *testing.B, n int) *dhttest.MemStore {
	b.Helper()
	s := dhttest.NewMemStore()
	entries := make([]dht.Entry, n)
	for i := range entries {
		entries[i] = dht.Entry{Key: fmt.Appendf(nil, "key-%08d", i), Record: rec(string(make([]byte, 100)))}
	}
	if err := s.PutBatch(context.Background(), entries); err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkMemStorePut(b *testing.B) {
	s := filled(b, 10_000)
	ctx := context.Background()
	r := rec(string(make([]byte, 100)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, fmt.Appendf(nil, "key-%08d", i%20_000), r); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkMemStoreGet(b *testing.B) {
	s := filled(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, fmt.Appendf(nil, "key-%08d", i%10_000)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemStoreScan reports the cost of visiting one record.
func BenchmarkMemStoreScan(b *testing.B) {
	s := filled(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10_000), "ns/record")
}

// BenchmarkClusterPutGet measures a W=2 put followed by an R=2 get of the
// same key through a 3-node cluster over mocknet (the whole stack: node,
// replica, p2p, libp2p streams).
func BenchmarkClusterPutGet(b *testing.B) {
	c := dhttest.New(b, dhttest.Options{N: 3})
	ctx := context.Background()
	val := make([]byte, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := fmt.Appendf(nil, "bench-%d", i)
		nd := c.Node(i % 3)
		if _, err := nd.Put(ctx, key, val, node.WriteOptions{W: 2}); err != nil {
			b.Fatal(err)
		}
		if _, err := nd.Get(ctx, key, node.ReadOptions{R: 2}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
