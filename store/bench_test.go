package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

// benchRecord is a typical small record: a 100-byte value, one dot.
var benchRecord = dht.Record{
	Versions: []dht.Version{{Value: make([]byte, 100), Dot: dht.Dot{Actor: 1, Counter: 1}, Timestamp: 1}},
	Context:  []dht.Dot{{Actor: 1, Counter: 1}},
}

// benchWriters is the number of concurrent writers in BenchmarkPutParallel.
const benchWriters = 50

func benchStore(b *testing.B, sync bool) *store.Badger {
	cfg := testConfig(b)
	cfg.SyncWrites = sync
	return openStore(b, cfg)
}

// reportOps adds an ops/s figure next to ns/op.
func reportOps(b *testing.B, ops int) {
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkPut is one writer, one record per Put.
func BenchmarkPut(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprint("sync=", sync), func(b *testing.B) {
			s := benchStore(b, sync)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if err := s.Put(ctx, fmt.Appendf(nil, "key-%09d", i), benchRecord); err != nil {
					b.Fatal(err)
				}
				i++
			}
			reportOps(b, i)
		})
	}
}

// BenchmarkPutParallel is 50 concurrent writers. "group" is Put (the group
// committer); "txn-per-put" is one Badger transaction per write, relying on
// Badger's own batching, for comparison. It bypasses the commit log, so it
// runs only without sync. writes/commit is the group size the committer
// achieved.
func BenchmarkPutParallel(b *testing.B) {
	for _, sync := range []bool{true, false} {
		for _, path := range []string{"group", "txn-per-put"} {
			if sync && path == "txn-per-put" {
				continue
			}
			b.Run(fmt.Sprintf("sync=%v/%s", sync, path), func(b *testing.B) {
				s := benchStore(b, sync)
				ctx := context.Background()
				put := func(k []byte) error { return s.Put(ctx, k, benchRecord) }
				if path == "txn-per-put" {
					put = func(k []byte) error { return s.PutDirectForTest(k, benchRecord) }
				}
				var n atomic.Int64
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((benchWriters + procs - 1) / procs)
				c0, r0, _ := s.CommitStats()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := put(fmt.Appendf(nil, "key-%09d", n.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				reportOps(b, b.N)
				if c, r, _ := s.CommitStats(); c > c0 {
					b.ReportMetric(float64(r-r0)/float64(c-c0), "writes/commit")
				}
			})
		}
	}
}

// loadKeys stores n records under key-000000000 ... and returns their keys.
func loadKeys(b *testing.B, s *store.Badger, n int) [][]byte {
	ctx := context.Background()
	keys := make([][]byte, n)
	batch := make([]dht.Entry, 0, 500)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%09d", i)
		batch = append(batch, dht.Entry{Key: keys[i], Record: benchRecord})
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.PutBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return keys
}

// BenchmarkGet reads random keys of a 100k-record store.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b, false)
	keys := loadKeys(b, s, 100_000)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	ops := 0
	for b.Loop() {
		if _, err := s.Get(ctx, keys[rng.IntN(len(keys))]); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	reportOps(b, ops)
}

// BenchmarkScan reads 1000 consecutive records per op from a 100k-record
// store, starting at a random key.
func BenchmarkScan(b *testing.B) {
	const span = 1000
	s := benchStore(b, false)
	keys := loadKeys(b, s, 100_000)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	records := 0
	for b.Loop() {
		i := rng.IntN(len(keys) - span)
		n := 0
		err := s.Scan(ctx, keys[i], keys[i+span], func([]byte, dht.Record) error { n++; return nil })
		if err != nil || n != span {
			b.Fatalf("Scan: %d records, %v", n, err)
		}
		records += n
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}
