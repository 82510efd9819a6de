package antientropy

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/ring"
)

const top = math.MaxUint64

func TestArcSpans(t *testing.T) {
	tests := []struct {
		start, end uint64
		want       []span
	}{
		{1, 5, []span{{2, 5}}},
		{3, top, []span{{4, top}}},
		{top - 1, 3, []span{{top, top}, {0, 3}}},
		{top, 3, []span{{0, 3}}},
		{7, 7, []span{{8, top}, {0, 7}}},
		{top, top, []span{{0, top}}},
		{0, 0, []span{{1, top}, {0, 0}}},
	}
	for _, tt := range tests {
		if got := arcSpans(tt.start, tt.end); !slices.Equal(got, tt.want) {
			t.Errorf("arcSpans(%#x, %#x) = %v, want %v", tt.start, tt.end, got, tt.want)
		}
	}
}

func TestSplitArc(t *testing.T) {
	tokens := []uint64{10, 20, 30}
	arc := func(s, e uint64) ring.Arc { return ring.Arc{Start: s, End: e} }
	tests := []struct {
		name   string
		arc    ring.Arc
		tokens []uint64
		want   []ring.Arc
	}{
		{"inside", arc(5, 25), tokens, []ring.Arc{arc(5, 10), arc(10, 20), arc(20, 25)}},
		{"aligned", arc(10, 30), tokens, []ring.Arc{arc(10, 20), arc(20, 30)}},
		{"one arc of the ring", arc(10, 20), tokens, []ring.Arc{arc(10, 20)}},
		{"wrapping", arc(25, 15), tokens, []ring.Arc{arc(25, 30), arc(30, 10), arc(10, 15)}},
		{"whole ring", arc(20, 20), tokens, []ring.Arc{arc(20, 30), arc(30, 10), arc(10, 20)}},
		{"no tokens", arc(5, 25), nil, []ring.Arc{arc(5, 25)}},
		{"token at the top", arc(top-5, 5), []uint64{top}, []ring.Arc{arc(top-5, top), arc(top, 5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitArc(tt.arc, tt.tokens); !slices.Equal(got, tt.want) {
				t.Errorf("splitArc(%v) = %v, want %v", tt.arc, got, tt.want)
			}
		})
	}
}

func TestDepthFor(t *testing.T) {
	tests := []struct{ n, max, want int }{
		{0, 10, 0}, {16, 10, 0}, {17, 10, 1}, {32, 10, 1}, {33, 10, 2},
		{1000, 10, 6}, {1 << 30, 10, 10}, {1 << 30, 16, 16}, {100, 0, 0},
	}
	for _, tt := range tests {
		if got := depthFor(tt.n, tt.max); got != tt.want {
			t.Errorf("depthFor(%d, %d) = %d, want %d", tt.n, tt.max, got, tt.want)
		}
	}
}

func TestNodeRanges(t *testing.T) {
	tr := merkle.New(merkle.Range{Start: 100, End: 100 + 8000}, 3) // 8 buckets of 1000
	b := func(i int) (uint64, uint64) { return tr.BucketRange(i) }
	s2, _ := b(2)
	_, e3 := b(3)
	s4, _ := b(4)
	_, e7 := b(7)
	s0, e0 := b(0)
	tests := []struct {
		name  string
		nodes []nodeRef
		want  []diffRange
	}{
		{"neighbours merge", []nodeRef{{level: 3, index: 3}, {level: 3, index: 2}}, []diffRange{{s2, e3, false}}},
		{"different sides do not merge", []nodeRef{{level: 3, index: 2}, {level: 3, index: 3, remoteEmpty: true}},
			[]diffRange{{s2, bucketEnd(tr, 2), false}, {bucketStart(tr, 3), e3, true}}},
		{"inner node covers its leaves", []nodeRef{{level: 1, index: 1}}, []diffRange{{s4, e7, false}}},
		{"apart", []nodeRef{{level: 3, index: 0}, {level: 1, index: 1}}, []diffRange{{s0, e0, false}, {s4, e7, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeRanges(tr, tt.nodes); !slices.Equal(got, tt.want) {
				t.Errorf("nodeRanges = %v, want %v", got, tt.want)
			}
		})
	}
}

func bucketStart(t *merkle.Tree, i int) uint64 { s, _ := t.BucketRange(i); return s }
func bucketEnd(t *merkle.Tree, i int) uint64   { _, e := t.BucketRange(i); return e }

func TestBuildLocalTree(t *testing.T) {
	for _, tt := range []struct{ items, maxDepth, wantDepth int }{
		{0, 10, 0}, {10, 10, 0}, {100, 10, 3}, {100, 2, 2}, {65, 2, 2},
	} {
		st := newMemStore()
		for i := range tt.items {
			key := []byte(keyName(i))
			if err := st.Put(context.Background(), dataKey(key), write(dht.Record{}, actor(0), "v", time.Unix(1, 0))); err != nil {
				t.Fatal(err)
			}
		}
		arc := ring.Arc{Start: 42, End: 42}
		got, err := buildLocalTree(context.Background(), st, arc, tt.maxDepth)
		if err != nil {
			t.Fatal(err)
		}
		want, err := buildTree(context.Background(), st, arc.Start, arc.End, tt.wantDepth)
		if err != nil {
			t.Fatal(err)
		}
		if got.Depth() != tt.wantDepth || got.Root() != want.Root() || got.Len() != tt.items {
			t.Errorf("%d items, max depth %d: depth %d root %#x len %d; want depth %d root %#x",
				tt.items, tt.maxDepth, got.Depth(), got.Root(), got.Len(), tt.wantDepth, want.Root())
		}
	}
}

func TestTreeCache(t *testing.T) {
	clk := newFakeClock()
	tree := func(depth int) *merkle.Tree { return merkle.New(merkle.Range{}, depth) }
	k := func(i uint64) treeKey { return treeKey{start: i, end: i} }
	c := newTreeCache(8, time.Second, clk)
	c.put(k(1), tree(2)) // 4 buckets
	c.put(k(2), tree(1)) // 2
	c.put(k(3), tree(1)) // 2: full
	if _, ok := c.get(k(1)); !ok || c.len() != 3 {
		t.Fatalf("cache of 3 trees within the bound lost one")
	}
	c.put(k(4), tree(2)) // evicts the oldest (1) to fit
	if _, ok := c.get(k(1)); ok {
		t.Fatalf("oldest tree not evicted")
	}
	if _, ok := c.get(k(4)); !ok {
		t.Fatalf("new tree not cached")
	}
	c.put(k(5), tree(4)) // 16 buckets: larger than the bound
	if _, ok := c.get(k(5)); ok {
		t.Fatalf("tree larger than the bound cached")
	}
	clk.Advance(time.Second)
	if _, ok := c.get(k(4)); ok {
		t.Fatalf("expired tree returned")
	}
	off := newTreeCache(0, time.Second, clk)
	off.put(k(1), tree(0))
	if off.len() != 0 {
		t.Fatalf("disabled cache kept a tree")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"loop disabled", func(c *Config) { c.Interval = 0 }, true},
		{"cache disabled", func(c *Config) { c.TreeCacheBuckets = 0 }, true},
		{"negative interval", func(c *Config) { c.Interval = -1 }, false},
		{"depth too large", func(c *Config) { c.Depth = 17 }, false},
		{"negative depth", func(c *Config) { c.Depth = -1 }, false},
		{"no rate", func(c *Config) { c.RateBytes = 0 }, false},
		{"no batch", func(c *Config) { c.BatchKeys = 0 }, false},
		{"batch too large", func(c *Config) { c.BatchKeys = maxBatchKeys + 1 }, false},
		{"tiny batch bytes", func(c *Config) { c.BatchBytes = 100 }, false},
		{"no grace", func(c *Config) { c.TombstoneGrace = 0 }, false},
		{"no call timeout", func(c *Config) { c.CallTimeout = 0 }, false},
		{"no key size", func(c *Config) { c.MaxKeySize = 0 }, false},
		{"negative cache", func(c *Config) { c.TreeCacheBuckets = -1 }, false},
		{"no concurrency", func(c *Config) { c.ServeConcurrency = 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, base := range []Config{DefaultConfig(), LocalConfig()} {
				tt.edit(&base)
				err := base.Validate()
				if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrConfig)) {
					t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
				}
			}
		})
	}
	if _, err := New(DefaultConfig(), nil, nil, nil, nil, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("New without parts = %v, want ErrConfig", err)
	}
}
