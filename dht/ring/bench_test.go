package ring_test

import (
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// benchSizes are the ring sizes the benchmarks run at.
var benchSizes = []int{100, 1000}

func BenchmarkNew(b *testing.B) {
	for _, nodes := range benchSizes {
		for _, vnodes := range []int{128, 256} {
			b.Run(fmt.Sprintf("nodes=%d/vnodes=%d", nodes, vnodes), func(b *testing.B) {
				ns := ringtest.Nodes(1, nodes, 3)
				b.ReportAllocs()
				for b.Loop() {
					ring.New(ns, vnodes)
				}
			})
		}
	}
}

// BenchmarkWith measures one join on a ring of 1,000 nodes: the joiner's
// tokens are hashed, the others' reused.
func BenchmarkWith(b *testing.B) {
	ns := ringtest.Nodes(1, 1001, 3)
	r := ring.New(ns[:1000], 0)
	b.ReportAllocs()
	for b.Loop() {
		r.With(ns[1000])
	}
}

func BenchmarkSuccessor(b *testing.B) {
	for _, nodes := range benchSizes {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			r := ring.New(ringtest.Nodes(1, nodes, 3), 0)
			pos := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				pos += 0x9e3779b97f4a7c15
				r.Successor(pos)
			}
		})
	}
}

func BenchmarkPreferenceList(b *testing.B) {
	for _, zones := range []int{0, 3} {
		b.Run(fmt.Sprintf("nodes=1000/n=3/zones=%d", zones), func(b *testing.B) {
			r := ring.New(ringtest.Nodes(1, 1000, zones), 0)
			pos := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				pos += 0x9e3779b97f4a7c15
				r.PreferenceList(pos, 3)
			}
		})
	}
}

func BenchmarkKeyPos(b *testing.B) {
	for _, size := range []int{16, 128} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			key := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				key[0]++
				ring.KeyPos(key)
			}
		})
	}
}

// BenchmarkReplicaArcs evaluates every arc's preference list (n=3).
func BenchmarkReplicaArcs(b *testing.B) {
	for _, nodes := range benchSizes {
		b.Run(fmt.Sprintf("nodes=%d/zones=3", nodes), func(b *testing.B) {
			r := ring.New(ringtest.Nodes(1, nodes, 3), 0)
			id := r.Nodes()[0].ID
			b.ReportAllocs()
			for b.Loop() {
				r.ReplicaArcs(id, 3)
			}
		})
	}
}
