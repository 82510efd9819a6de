package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name string
		a, b []uint64
		want []int
	}{
		{"equal", []uint64{1, 2, 3}, []uint64{1, 2, 3}, nil},
		{"one", []uint64{1, 2, 3}, []uint64{1, 5, 3}, []int{1}},
		{"all", []uint64{1, 2}, []uint64{3, 4}, []int{0, 1}},
		{"longer a", []uint64{1, 2, 3}, []uint64{1}, []int{1, 2}},
		{"longer b", nil, []uint64{0}, []int{0}},
		{"both empty", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Diff(tt.a, tt.b); !slices.Equal(got, tt.want) {
				t.Errorf("Diff = %v, want %v", got, tt.want)
			}
		})
	}
}

// countingRemote wraps a tree as a RemoteLevel and counts calls and hashes.
type countingRemote struct {
	tree          *Tree
	calls, hashes int
}

func (c *countingRemote) level(d int, idx []int) ([]uint64, error) {
	c.calls++
	c.hashes += len(idx)
	return c.tree.Nodes(d, idx)
}

func TestDiffTrees(t *testing.T) {
	items := makeItems(5000, 10)
	changed := slices.Clone(items)
	changed[17].digest++
	moved := items[1:] // items[0] missing
	arc := Range{}
	tests := []struct {
		name          string
		local, remote []item
		want          func(l, r *Tree) []int
		maxCalls      int
	}{{
		name:  "equal trees",
		local: items, remote: items,
		want:     func(*Tree, *Tree) []int { return nil },
		maxCalls: 1,
	}, {
		name:  "one changed digest",
		local: items, remote: changed,
		want:     func(l, _ *Tree) []int { return []int{l.Bucket(items[17].pos)} },
		maxCalls: DefaultDepth + 1,
	}, {
		name:  "one missing item",
		local: items, remote: moved,
		want:     func(l, _ *Tree) []int { return []int{l.Bucket(items[0].pos)} },
		maxCalls: DefaultDepth + 1,
	}, {
		name:  "remote empty",
		local: items[:20], remote: nil,
		want:     func(l, _ *Tree) []int { return nonZero(l.Leaves()) },
		maxCalls: 1,
	}, {
		name:  "local empty",
		local: nil, remote: items[:20],
		want:     func(_, r *Tree) []int { return nonZero(r.Leaves()) },
		maxCalls: DefaultDepth + 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, r := build(arc, DefaultDepth, tt.local), build(arc, DefaultDepth, tt.remote)
			remote := &countingRemote{tree: r}
			got, err := DiffTrees(l, remote.level)
			if err != nil {
				t.Fatalf("DiffTrees: %v", err)
			}
			want := tt.want(l, r)
			if !slices.Equal(got, want) {
				t.Errorf("DiffTrees = %v, want %v", got, want)
			}
			if !slices.Equal(Diff(l.Leaves(), r.Leaves()), want) {
				t.Errorf("Diff(leaves) = %v, want %v", Diff(l.Leaves(), r.Leaves()), want)
			}
			if remote.calls > tt.maxCalls {
				t.Errorf("%d remote calls, want at most %d", remote.calls, tt.maxCalls)
			}
			if bound := 1 + 2*len(want)*DefaultDepth; remote.hashes > bound {
				t.Errorf("%d hashes exchanged for %d differences, bound %d", remote.hashes, len(want), bound)
			}
		})
	}
}

func nonZero(hs []uint64) []int {
	var out []int
	for i, h := range hs {
		if h != 0 {
			out = append(out, i)
		}
	}
	return out
}

func TestDiffTreesRemoteFailures(t *testing.T) {
	l := build(Range{}, 4, makeItems(100, 11))
	errDown := errors.New("peer down")
	tests := []struct {
		name   string
		remote RemoteLevel
		want   error
	}{
		{"remote error", func(int, []int) ([]uint64, error) { return nil, errDown }, errDown},
		{"short answer", func(int, []int) ([]uint64, error) { return nil, nil }, ErrRemoteMismatch},
		{"long answer", func(_ int, idx []int) ([]uint64, error) { return make([]uint64, len(idx)+1), nil }, ErrRemoteMismatch},
		{"shallower remote refuses", build(Range{}, 2, makeItems(100, 12)).Nodes, ErrBadIndex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DiffTrees(l, tt.remote); !errors.Is(err, tt.want) {
				t.Errorf("DiffTrees error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNodesRejectsBadRequests(t *testing.T) {
	tr := New(Range{}, 3)
	tests := []struct {
		name string
		d    int
		idx  []int
	}{
		{"negative depth", -1, []int{0}},
		{"depth too large", 4, []int{0}},
		{"negative index", 2, []int{-1}},
		{"index too large", 2, []int{0, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tr.Nodes(tt.d, tt.idx); !errors.Is(err, ErrBadIndex) {
				t.Errorf("Nodes error = %v, want ErrBadIndex", err)
			}
		})
	}
	if hs, err := tr.Nodes(3, []int{7, 0}); err != nil || len(hs) != 2 {
		t.Errorf("Nodes(3, [7 0]) = %v, %v", hs, err)
	}
}

// fuzzItems derives two item multisets and a tree shape from data. Each
// item takes 3 bytes: a key id, a placement (both sides, one side, or both
// with different digests) and a digest.
func fuzzItems(data []byte) (arc Range, depth int, a, b []item) {
	word := func() uint64 {
		var w [8]byte
		n := copy(w[:], data)
		data = data[n:]
		return binary.LittleEndian.Uint64(w[:])
	}
	arc = Range{Start: word(), End: word()}
	if len(data) > 0 {
		depth = int(data[0] % (MaxDepth + 2))
		data = data[1:]
	}
	for ; len(data) >= 3; data = data[3:] {
		key := fmt.Appendf(nil, "k%d", data[0])
		h := xxhash.Sum64(key)
		pos := h
		if w := arc.End - arc.Start; !arc.Whole() && data[1]&0x80 == 0 {
			pos = arc.Start + 1 + h%w // mostly inside the arc
		}
		it := item{pos: pos, key: key, digest: uint64(data[2])}
		switch data[1] % 4 {
		case 0:
			a, b = append(a, it), append(b, it)
		case 1:
			a = append(a, it)
		case 2:
			b = append(b, it)
		case 3:
			other := it
			other.digest += 1000
			a, b = append(a, it), append(b, other)
		}
	}
	return arc, depth, a, b
}

// bucketSets maps each bucket to the multiset of items a tree holds in it.
func bucketSets(tr *Tree, items []item) map[int]map[string]int {
	out := map[int]map[string]int{}
	for _, it := range items {
		bk := tr.Bucket(it.pos)
		if bk < 0 {
			continue
		}
		if out[bk] == nil {
			out[bk] = map[string]int{}
		}
		out[bk][fmt.Sprintf("%s/%d", it.key, it.digest)]++
	}
	return out
}

func FuzzDiff(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4})
	f.Add([]byte{0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0, 0, 0, 0, 16, 1, 0, 1, 1, 0x81, 9, 7, 3, 7})
	f.Add([]byte{5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 8, 1, 1, 1, 2, 2, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		arc, depth, a, b := fuzzItems(data)
		la, lb := build(arc, depth, a), build(arc, depth, b)
		sa, sb := bucketSets(la, a), bucketSets(lb, b)
		var want []int
		for i := range la.Buckets() {
			if !mapsEqual(sa[i], sb[i]) {
				want = append(want, i)
			}
		}
		got, err := DiffTrees(la, lb.Nodes)
		if err != nil {
			t.Fatalf("DiffTrees: %v", err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("DiffTrees = %v, want %v (arc %v, depth %d)", got, want, arc, la.Depth())
		}
		if d := Diff(la.Leaves(), lb.Leaves()); !slices.Equal(d, want) {
			t.Fatalf("Diff(leaves) = %v, want %v", d, want)
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func BenchmarkBuild100k(b *testing.B) {
	items := makeItems(100_000, 20)
	for _, depth := range []int{DefaultDepth, MaxDepth} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			for b.Loop() {
				if build(Range{}, depth, items).Root() == 0 {
					b.Fatal("empty root")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(items)), "ns/item")
		})
	}
}

func BenchmarkDiffTrees10(b *testing.B) {
	items := makeItems(100_000, 21)
	for _, depth := range []int{DefaultDepth, MaxDepth} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			local := build(Range{}, depth, items)
			changed := slices.Clone(items)
			for i := range 10 {
				changed[i*9973].digest++
			}
			remote := &countingRemote{tree: build(Range{}, depth, changed)}
			for b.Loop() {
				got, err := DiffTrees(local, remote.level)
				if err != nil || len(got) != 10 {
					b.Fatalf("DiffTrees = %v, %v", got, err)
				}
			}
			b.ReportMetric(float64(remote.hashes)/float64(b.N), "hashes/op")
			b.ReportMetric(float64(remote.calls)/float64(b.N), "calls/op")
		})
	}
}

func BenchmarkAddAndRoot(b *testing.B) {
	items := makeItems(1<<12, 22)
	tr := build(Range{}, DefaultDepth, items)
	i := 0
	for b.Loop() {
		it := items[i%len(items)]
		tr.Remove(it.pos, it.key, it.digest)
		tr.Add(it.pos, it.key, it.digest+1)
		items[i%len(items)].digest++
		tr.Root()
		i++
	}
}

var sinkDigest uint64

func BenchmarkRecordDigest(b *testing.B) {
	r := recordForBench()
	for b.Loop() {
		sinkDigest = RecordDigest(r)
	}
}
