package antientropy

import (
	"context"
	"fmt"
	"slices"

	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
)

// The Merkle walk. merkle.DiffTrees walks one tree at a time, one round
// trip per level; an exchange has up to arcsPerExchange arcs whose roots
// may differ, so the walk here descends all of their trees in step and asks the
// peer for one level of all of them in one Level request: a difference
// anywhere in the chunk costs at most Depth round trips, not Depth per arc.
// The comparison rule is DiffTrees': descend where hashes differ, stop at
// equal subtrees. Where one side's subtree is empty (hash 0) the walk stops
// too and reports the whole subtree's range, since every key the other
// side holds there differs.

// diffRange is a range (start, end] of one arc whose keys must be
// compared. remoteEmpty: the peer holds nothing in it.
type diffRange struct {
	start, end  uint64
	remoteEmpty bool
}

// nodeRef is a tree node reported by a walk.
type nodeRef struct {
	level, index int
	remoteEmpty  bool
}

// walker descends one arc's tree.
type walker struct {
	tree  *merkle.Tree
	arc   *pb.SyncArc
	level int
	cur   []int // node indexes at level still to compare
	out   []nodeRef
}

// newWalker starts below the root, which the Roots exchange compared.
func newWalker(t *merkle.Tree, arc *pb.SyncArc) *walker {
	return &walker{tree: t, arc: arc, level: 1, cur: []int{0, 1}}
}

// step compares the nodes at the walker's level with the peer's hashes
// and moves to the next level.
func (w *walker) step(remote []uint64) error {
	mine, err := w.tree.Nodes(w.level, w.cur)
	if err != nil {
		return err
	}
	var next []int
	for k, i := range w.cur {
		switch {
		case mine[k] == remote[k]:
		case w.level == w.tree.Depth():
			w.out = append(w.out, nodeRef{level: w.level, index: i})
		case remote[k] == 0:
			w.out = append(w.out, nodeRef{level: w.level, index: i, remoteEmpty: true})
		case mine[k] == 0:
			w.out = append(w.out, nodeRef{level: w.level, index: i})
		default:
			next = append(next, 2*i, 2*i+1)
		}
	}
	w.level++
	w.cur = next
	return nil
}

// ranges turns the walker's nodes into ranges, merging neighbours.
func (w *walker) ranges() []diffRange {
	return nodeRanges(w.tree, w.out)
}

// nodeRanges returns the ranges of the nodes of t, merging nodes that
// touch and agree on remoteEmpty, in ring order.
func nodeRanges(t *merkle.Tree, nodes []nodeRef) []diffRange {
	type leafSpan struct {
		first, last int
		remoteEmpty bool
	}
	spans := make([]leafSpan, len(nodes))
	for k, n := range nodes {
		shift := t.Depth() - n.level
		spans[k] = leafSpan{first: n.index << shift, last: (n.index+1)<<shift - 1, remoteEmpty: n.remoteEmpty}
	}
	slices.SortFunc(spans, func(a, b leafSpan) int { return a.first - b.first })
	var out []diffRange
	for k, sp := range spans {
		start, _ := t.BucketRange(sp.first)
		_, end := t.BucketRange(sp.last)
		if k > 0 && spans[k-1].last+1 == sp.first && spans[k-1].remoteEmpty == sp.remoteEmpty {
			out[len(out)-1].end = end
			continue
		}
		out = append(out, diffRange{start: start, end: end, remoteEmpty: sp.remoteEmpty})
	}
	return out
}

// levelQuery is one query of a Level request: part of one walker's level.
type levelQuery struct {
	w *walker
	q *pb.SyncLevelQuery
}

// walk descends every walker's tree in step and returns the ranges where
// the trees differ.
func (ex *exchange) walk(ctx context.Context, walkers []*walker) ([]diffRange, error) {
	active := slices.Clone(walkers)
	for len(active) > 0 {
		remote := make(map[*walker][]uint64, len(active))
		for _, batch := range levelBatches(active) {
			req := &pb.SyncLevelRequest{Queries: make([]*pb.SyncLevelQuery, len(batch))}
			for i, lq := range batch {
				req.Queries[i] = lq.q
			}
			resp, err := ex.s.callLevel(ctx, ex.peer, req, ex.tr)
			if err != nil {
				return nil, err
			}
			for i, lq := range batch {
				remote[lq.w] = append(remote[lq.w], resp.Results[i].Hashes...)
			}
		}
		next := active[:0]
		for _, w := range active {
			if err := w.step(remote[w]); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
			}
			if len(w.cur) > 0 {
				next = append(next, w)
			}
		}
		active = next
	}
	var out []diffRange
	for _, w := range walkers {
		out = append(out, w.ranges()...)
	}
	return out, nil
}

// levelBatches splits the walkers' current levels into Level requests
// within the protocol's bounds on queries and indexes. A walker's level
// may be split over several queries; they come back in order.
func levelBatches(walkers []*walker) [][]levelQuery {
	var (
		out   [][]levelQuery
		batch []levelQuery
		size  int
	)
	for _, w := range walkers {
		for off := 0; off < len(w.cur); {
			n := min(len(w.cur)-off, maxLevelIndexes-size)
			if n == 0 || len(batch) == maxLevelQueries {
				out, batch, size = append(out, batch), nil, 0
				continue
			}
			idx := make([]uint32, n)
			for k, i := range w.cur[off : off+n] {
				idx[k] = uint32(i)
			}
			batch = append(batch, levelQuery{w: w, q: &pb.SyncLevelQuery{
				Arc: w.arc, Level: uint32(w.level), Indexes: idx,
			}})
			size += n
			off += n
		}
	}
	if len(batch) > 0 {
		out = append(out, batch)
	}
	return out
}
