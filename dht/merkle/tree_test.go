package merkle

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

func TestBucketGeometry(t *testing.T) {
	tests := []struct {
		name      string
		arc       Range
		depth     int
		wantDepth int
	}{
		{"whole ring, one bucket", Range{7, 7}, 0, 0},
		{"whole ring", Range{0, 0}, 3, 3},
		{"whole ring, offset start", Range{1 << 40, 1 << 40}, DefaultDepth, DefaultDepth},
		{"plain arc", Range{100, 1100}, 3, 3},
		{"arc ending at the top", Range{math.MaxUint64 - 1000, math.MaxUint64}, 4, 4},
		{"arc starting at the top", Range{math.MaxUint64, 1000}, 4, 4},
		{"wrap-around arc", Range{math.MaxUint64 - 500, 500}, 4, 4},
		{"wide wrap-around arc", Range{1 << 63, 1<<63 - 3}, MaxDepth, MaxDepth},
		{"narrow arc clamps depth", Range{10, 15}, 10, 2},
		{"one position", Range{10, 11}, 5, 0},
		{"depth above max", Range{0, 0}, 40, MaxDepth},
		{"negative depth", Range{0, 0}, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.arc, tt.depth)
			if tr.Depth() != tt.wantDepth {
				t.Fatalf("Depth = %d, want %d", tr.Depth(), tt.wantDepth)
			}
			if s, _ := tr.BucketRange(0); s != tt.arc.Start {
				t.Errorf("bucket 0 starts at %#x, want %#x", s, tt.arc.Start)
			}
			if _, e := tr.BucketRange(tr.Buckets() - 1); e != tt.arc.End {
				t.Errorf("last bucket ends at %#x, want %#x", e, tt.arc.End)
			}
			if !tt.arc.Whole() {
				if got := tr.Bucket(tt.arc.Start); got != -1 {
					t.Errorf("Bucket(Start) = %d, want -1", got)
				}
				if got := tr.Bucket(tt.arc.End + 1); got != -1 {
					t.Errorf("Bucket(End+1) = %d, want -1", got)
				}
			}
			checkBuckets(t, tr)
		})
	}
}

// checkBuckets verifies that the buckets tile the arc in order, are nonempty,
// differ in width by at most one, and agree with Bucket at their edges.
func checkBuckets(t *testing.T, tr *Tree) {
	t.Helper()
	var minW, maxW uint64 = math.MaxUint64, 0
	for i := range tr.Buckets() {
		s, e := tr.BucketRange(i)
		if i+1 < tr.Buckets() {
			if s2, _ := tr.BucketRange(i + 1); s2 != e {
				t.Fatalf("bucket %d ends at %#x, bucket %d starts at %#x", i, e, i+1, s2)
			}
		}
		w := e - s
		if w == 0 && tr.Buckets() > 1 {
			t.Fatalf("bucket %d is empty", i)
		}
		minW, maxW = min(minW, w), max(maxW, w)
		if got := tr.Bucket(s + 1); got != i {
			t.Fatalf("Bucket(first of %d) = %d", i, got)
		}
		if got := tr.Bucket(e); got != i {
			t.Fatalf("Bucket(last of %d) = %d", i, got)
		}
	}
	if tr.Buckets() > 1 && maxW-minW > 1 {
		t.Errorf("bucket widths range over [%d, %d]", minW, maxW)
	}
}

func TestBucketContainsPosition(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	arcs := []Range{{0, 0}, {1 << 62, 1 << 62}, {math.MaxUint64 - 1<<40, 1 << 41}, {12345, 12345 + 1<<50}, {3, 3000}}
	for _, arc := range arcs {
		tr := New(arc, 7)
		for range 2000 {
			pos := rng.Uint64()
			if !arc.Whole() {
				pos = arc.Start + 1 + rng.Uint64N(arc.End-arc.Start)
			}
			b := tr.Bucket(pos)
			if b < 0 {
				t.Fatalf("arc %v: Bucket(%#x) = -1 for a position inside", arc, pos)
			}
			s, e := tr.BucketRange(b)
			if !(Range{s, e}).Contains(pos) {
				t.Fatalf("arc %v: %#x in bucket %d = (%#x, %#x]", arc, pos, b, s, e)
			}
		}
	}
}

func TestBucketRangePanicsOutside(t *testing.T) {
	tr := New(Range{}, 2)
	for _, i := range []int{-1, 4} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("BucketRange(%d) did not panic", i)
				}
			}()
			tr.BucketRange(i)
		}()
	}
}

type item struct {
	pos    uint64
	key    []byte
	digest uint64
}

func makeItems(n int, seed uint64) []item {
	rng := rand.New(rand.NewPCG(seed, seed))
	items := make([]item, n)
	for i := range items {
		key := fmt.Appendf(nil, "key-%d-%d", seed, i)
		items[i] = item{pos: xxhash.Sum64(key), key: key, digest: rng.Uint64()}
	}
	return items
}

func build(arc Range, depth int, items []item) *Tree {
	tr := New(arc, depth)
	for _, it := range items {
		tr.Add(it.pos, it.key, it.digest)
	}
	return tr
}

func TestInsertionOrderIrrelevant(t *testing.T) {
	arcs := []Range{{0, 0}, {math.MaxUint64 - 1<<62, 1 << 62}}
	for _, arc := range arcs {
		items := makeItems(3000, 1)
		a := build(arc, 8, items)
		rand.New(rand.NewPCG(2, 2)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		// Read the root midway so lazy recomputation is exercised.
		b := build(arc, 8, items[:1000])
		b.Root()
		for _, it := range items[1000:] {
			b.Add(it.pos, it.key, it.digest)
		}
		if a.Root() == 0 || a.Root() != b.Root() {
			t.Fatalf("arc %v: roots %#x and %#x", arc, a.Root(), b.Root())
		}
		for d := 0; d <= a.Depth(); d++ {
			if !slices.Equal(a.Level(d), b.Level(d)) {
				t.Fatalf("arc %v: level %d differs", arc, d)
			}
		}
		if a.Len() != b.Len() {
			t.Fatalf("Len %d and %d", a.Len(), b.Len())
		}
	}
}

func TestAddRemoveRestores(t *testing.T) {
	tests := []struct {
		name  string
		depth int
		n     int
	}{{"sparse", 10, 20}, {"dense", 4, 2000}, {"single bucket", 0, 50}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := makeItems(tt.n, 3)
			tr := build(Range{}, tt.depth, items[:tt.n/2])
			root := tr.Root()
			for _, it := range items[tt.n/2:] {
				tr.Add(it.pos, it.key, it.digest)
			}
			if tr.Root() == root {
				t.Fatalf("adding items did not change the root")
			}
			for _, it := range items[tt.n/2:] {
				tr.Remove(it.pos, it.key, it.digest)
			}
			if tr.Root() != root {
				t.Fatalf("root %#x after remove, want %#x", tr.Root(), root)
			}
			for _, it := range items[:tt.n/2] {
				tr.Remove(it.pos, it.key, it.digest)
			}
			for d := 0; d <= tr.Depth(); d++ {
				for i, h := range tr.Level(d) {
					if h != 0 {
						t.Fatalf("empty tree has hash %#x at depth %d index %d", h, d, i)
					}
				}
			}
			if tr.Len() != 0 {
				t.Fatalf("Len = %d", tr.Len())
			}
		})
	}
}

func TestAddOutsideArc(t *testing.T) {
	tr := New(Range{Start: 100, End: 200}, 3)
	tests := []struct {
		pos  uint64
		want bool
	}{{100, false}, {101, true}, {200, true}, {201, false}, {0, false}, {math.MaxUint64, false}}
	for _, tt := range tests {
		if got := tr.Add(tt.pos, []byte("k"), 1); got != tt.want {
			t.Errorf("Add(%d) = %v, want %v", tt.pos, got, tt.want)
		}
	}
	if tr.Len() != 2 {
		t.Errorf("Len = %d, want 2", tr.Len())
	}
	if got := tr.Remove(5, []byte("k"), 1); got {
		t.Errorf("Remove outside the arc = true")
	}
}

func TestDuplicateItemsCount(t *testing.T) {
	once, twice := New(Range{}, 4), New(Range{}, 4)
	once.Add(1, []byte("k"), 9)
	twice.Add(1, []byte("k"), 9)
	twice.Add(1, []byte("k"), 9)
	if once.Root() == twice.Root() {
		t.Errorf("an item added twice hashes like an item added once")
	}
}

func TestLevelBounds(t *testing.T) {
	tr := build(Range{}, 3, makeItems(10, 4))
	tests := []struct {
		d       int
		wantLen int
	}{{-1, 0}, {0, 1}, {2, 4}, {3, 8}, {4, 0}}
	for _, tt := range tests {
		if got := tr.Level(tt.d); len(got) != tt.wantLen {
			t.Errorf("len(Level(%d)) = %d, want %d", tt.d, len(got), tt.wantLen)
		}
	}
	if !slices.Equal(tr.Leaves(), tr.Level(3)) {
		t.Errorf("Leaves differs from Level(Depth)")
	}
	if tr.Level(0)[0] != tr.Root() {
		t.Errorf("Level(0) differs from Root")
	}
	l := tr.Leaves()
	l[0]++
	if slices.Equal(l, tr.Leaves()) {
		t.Errorf("Leaves returned the tree's own slice")
	}
}

func TestConcurrentUse(t *testing.T) {
	items := makeItems(4000, 6)
	tr := New(Range{}, 8)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(items); i += 4 {
				tr.Add(items[i].pos, items[i].key, items[i].digest)
				if i%50 == 0 {
					tr.Root()
					tr.Leaves()
				}
			}
		})
	}
	wg.Wait()
	if want := build(Range{}, 8, items).Root(); tr.Root() != want {
		t.Errorf("root %#x after concurrent adds, want %#x", tr.Root(), want)
	}
}

func TestRecordDigest(t *testing.T) {
	d := func(a, c uint64) dht.Dot { return dht.Dot{Actor: a, Counter: c} }
	base := dht.Record{
		Versions: []dht.Version{{Dot: d(1, 1), Value: []byte("a")}, {Dot: d(2, 3), Value: []byte("b"), Timestamp: 5, ExpiresAt: 1000}},
		Context:  []dht.Dot{d(1, 1), d(2, 3)},
	}
	with := func(f func(r *dht.Record)) dht.Record {
		r := base
		r.Versions = slices.Clone(base.Versions)
		r.Context = slices.Clone(base.Context)
		f(&r)
		return r
	}
	tests := []struct {
		name string
		r    dht.Record
		same bool
	}{
		{"same record", with(func(*dht.Record) {}), true},
		{"fields reordered", with(func(r *dht.Record) {
			slices.Reverse(r.Versions)
			slices.Reverse(r.Context)
		}), true},
		{"context implied by siblings", with(func(r *dht.Record) { r.Context = nil }), true},
		{"other value", with(func(r *dht.Record) { r.Versions[0].Value = []byte("c") }), false},
		{"value moved between siblings", with(func(r *dht.Record) {
			r.Versions[0].Value, r.Versions[1].Value = []byte("ab"), nil
		}), false},
		{"tombstone", with(func(r *dht.Record) { r.Versions[0].Tombstone = true }), false},
		{"timestamp", with(func(r *dht.Record) { r.Versions[1].Timestamp = 6 }), false},
		{"context", with(func(r *dht.Record) { r.Context = append(r.Context, d(3, 1)) }), false},
		{"expiry", with(func(r *dht.Record) { r.Versions[1].ExpiresAt = 0 }), false},
		{"expiry moved between siblings", with(func(r *dht.Record) { r.Versions[0].ExpiresAt, r.Versions[1].ExpiresAt = 1000, 0 }), false},
		{"one sibling fewer", with(func(r *dht.Record) { r.Versions = r.Versions[:1] }), false},
	}
	want := RecordDigest(base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RecordDigest(tt.r); (got == want) != tt.same {
				t.Errorf("digest %#x, base %#x, want equal = %v", got, want, tt.same)
			}
		})
	}
}

func recordForBench() dht.Record {
	return dht.Record{
		Versions: []dht.Version{
			{Dot: dht.Dot{Actor: 1, Counter: 4}, Value: make([]byte, 100), Timestamp: 1},
			{Dot: dht.Dot{Actor: 2, Counter: 9}, Value: make([]byte, 100), Timestamp: 2},
		},
		Context: []dht.Dot{{Actor: 1, Counter: 4}, {Actor: 2, Counter: 9}, {Actor: 3, Counter: 2}},
	}
}
