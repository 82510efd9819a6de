package antientropy

import (
	"context"
	"errors"
	"math"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Local store access. Replica records live under replica.DataKey: 'd',
// the position big-endian, the key. A ring arc is therefore one key range,
// or two when it wraps past the top of the ring.

// span is the ring positions [from, to], inclusive, from <= to.
type span struct{ from, to uint64 }

// arcSpans returns the spans covering the arc (start, end], in ring order
// from start; start == end is the whole ring.
func arcSpans(start, end uint64) []span {
	switch {
	case start < end:
		return []span{{start + 1, end}}
	case start == math.MaxUint64:
		// (max, end]: positions 0..end; the whole ring when end == max.
		return []span{{0, end}}
	default: // start > end (wraps), or start == end (whole ring)
		return []span{{start + 1, math.MaxUint64}, {0, end}}
	}
}

// contains reports whether pos lies in sp.
func (sp span) contains(pos uint64) bool { return sp.from <= pos && pos <= sp.to }

// keys returns the store key range [lo, hi) of the span.
func (sp span) keys() (lo, hi []byte) { return replica.DataSpan(sp.from, sp.to) }

// after returns the first store key after sk.
func after(sk []byte) []byte { return append(append(make([]byte, 0, len(sk)+1), sk...), 0) }

// dataKey is the store key of a user key.
func dataKey(key []byte) []byte { return replica.DataKey(ring.KeyPos(key), key) }

// errStop ends a scan early; scanRange turns it into a resume key.
var errStop = errors.New("antientropy: stop scan")

// scanRange calls fn for each record in [lo, hi) until fn returns true.
// It returns the key to resume from when fn stopped it, nil when the range
// was exhausted. fn's arguments are valid only during the call.
func scanRange(ctx context.Context, st dht.Store, lo, hi []byte, fn func(sk []byte, rec dht.Record) bool) ([]byte, error) {
	var resume []byte
	err := st.Scan(ctx, lo, hi, func(sk []byte, rec dht.Record) error {
		if fn(sk, rec) {
			resume = after(sk)
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return resume, nil
	}
	return nil, err
}

// scanArc calls fn for every replica record in the arc (start, end].
func scanArc(ctx context.Context, st dht.Store, start, end uint64, fn func(pos uint64, key []byte, rec dht.Record)) error {
	for _, sp := range arcSpans(start, end) {
		lo, hi := sp.keys()
		_, err := scanRange(ctx, st, lo, hi, func(sk []byte, rec dht.Record) bool {
			if pos, key, ok := replica.ParseDataKey(sk); ok {
				fn(pos, key, rec)
			}
			return false
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// buildTree builds the tree of depth over this node's records in the arc
// (start, end]: what a peer's Roots and Level requests are answered from.
func buildTree(ctx context.Context, st dht.Store, start, end uint64, depth int) (*merkle.Tree, error) {
	t := merkle.New(merkle.Range{Start: start, End: end}, depth)
	err := scanArc(ctx, st, start, end, func(pos uint64, key []byte, rec dht.Record) {
		t.Add(pos, key, merkle.RecordDigest(rec))
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// depthFor is the tree depth for an arc holding n items: the smallest
// that leaves about bucketKeys items per bucket, at most maxDepth.
func depthFor(n, maxDepth int) int {
	d := 0
	for d < maxDepth && n > bucketKeys<<d {
		d++
	}
	return d
}

// treeItem is one record buffered while its arc's depth is unknown.
type treeItem struct {
	pos    uint64
	key    []byte
	digest uint64
}

// buildLocalTree builds the tree of this node's records in arc with a
// depth chosen from their count (depthFor). It buffers items until the
// count reaches the deepest tree's size, then builds that one directly,
// so memory stays bounded by the arc's size or the deepest tree.
func buildLocalTree(ctx context.Context, st dht.Store, arc ring.Arc, maxDepth int) (*merkle.Tree, error) {
	rng := merkle.Range{Start: arc.Start, End: arc.End}
	limit := bucketKeys << maxDepth
	var (
		items []treeItem
		arena []byte
		tree  *merkle.Tree
	)
	err := scanArc(ctx, st, arc.Start, arc.End, func(pos uint64, key []byte, rec dht.Record) {
		d := merkle.RecordDigest(rec)
		if tree != nil {
			tree.Add(pos, key, d)
			return
		}
		off := len(arena)
		arena = append(arena, key...)
		items = append(items, treeItem{pos: pos, key: arena[off:len(arena):len(arena)], digest: d})
		if len(items) > limit {
			tree = merkle.New(rng, maxDepth)
			for _, it := range items {
				tree.Add(it.pos, it.key, it.digest)
			}
			items, arena = nil, nil
		}
	})
	if err != nil {
		return nil, err
	}
	if tree == nil {
		tree = merkle.New(rng, depthFor(len(items), maxDepth))
		for _, it := range items {
			tree.Add(it.pos, it.key, it.digest)
		}
	}
	return tree, nil
}

// getLocal returns this node's replica record of key; found is false when
// it has none.
func getLocal(ctx context.Context, st dht.Store, key []byte) (dht.Record, bool, error) {
	rec, err := st.Get(ctx, dataKey(key))
	switch {
	case errors.Is(err, dht.ErrNotFound):
		return dht.Record{}, false, nil
	case err != nil:
		return dht.Record{}, false, err
	}
	return rec, true, nil
}
