package ring

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PreferenceList returns the n distinct nodes that keep the keys at pos,
// owner first, chosen zone-aware as the package doc describes: walking
// clockwise from the successor of pos, nodes of zones not yet represented
// are taken first, and skipped nodes fill the remaining places in walk
// order. The list covers min(n, zones) distinct zones and is the same for
// every position of one arc. It has min(n, Len()) entries; nil when n <= 0
// or the ring is empty.
func (r *Ring) PreferenceList(pos uint64, n int) []peer.ID {
	if n <= 0 || len(r.tokens) == 0 {
		return nil
	}
	var tbuf, sbuf [8]int32
	w := prefWalker{r: r}
	idx, _ := w.list(r.succIndex(pos), n, tbuf[:0], sbuf[:0])
	out := make([]peer.ID, len(idx))
	for i, x := range idx {
		out[i] = r.nodes[x].ID
	}
	return out
}

// Walk calls fn with each node once, in clockwise order of first
// appearance from pos (the owner of pos first), until fn returns false or
// every node has been visited. Walk ignores zones: it is the order in which
// sloppy quorums look for the next healthy node.
func (r *Ring) Walk(pos uint64, fn func(id peer.ID) bool) {
	if len(r.tokens) == 0 {
		return
	}
	var seen idxSet
	seen.reset(len(r.nodes))
	start := r.succIndex(pos)
	for k := range len(r.tokens) {
		i := start + k
		if i >= len(r.tokens) {
			i -= len(r.tokens)
		}
		n := r.owner[i]
		if !seen.add(n) {
			continue
		}
		if !fn(r.nodes[n].ID) || seen.len() == len(r.nodes) {
			return
		}
	}
}

// ReplicaArcs returns the arcs whose preference lists of length n include
// id: the ranges id keeps a replica of. Adjacent arcs are merged, the
// result is sorted by End, and a node that is in every list gets the one
// full-ring arc. It returns nil if id is not a member or n <= 0.
//
// It evaluates the preference list of every token, so it costs about
// Len()*VNodes() list walks; callers cache it per ring snapshot.
func (r *Ring) ReplicaArcs(id peer.ID, n int) []Arc {
	self, ok := r.index[id]
	if !ok || n <= 0 {
		return nil
	}
	in := make([]bool, len(r.tokens))
	w := prefWalker{r: r}
	var list, scratch []int32
	for i := range r.tokens {
		list, scratch = w.list(i, n, list, scratch)
		in[i] = slices.Contains(list, self)
	}
	return r.mergeArcs(in)
}

// mergeArcs returns the arcs of the token indices marked in, merging
// neighbours, sorted by End.
func (r *Ring) mergeArcs(in []bool) []Arc {
	first := slices.Index(in, false)
	if first < 0 {
		last := r.tokens[len(r.tokens)-1]
		return []Arc{{Start: last, End: last}}
	}
	var out []Arc
	runStart, runEnd := -1, -1
	// Start just after an excluded arc so that no run straddles the loop's
	// end; the loop ends on that excluded arc, which closes the last run.
	for k := 1; k <= len(in); k++ {
		i := (first + k) % len(in)
		switch {
		case in[i] && runStart < 0:
			runStart, runEnd = i, i
		case in[i]:
			runEnd = i
		case runStart >= 0:
			out = append(out, Arc{Start: r.arcAt(runStart).Start, End: r.tokens[runEnd]})
			runStart = -1
		}
	}
	slices.SortFunc(out, func(a, b Arc) int {
		switch {
		case a.End < b.End:
			return -1
		case a.End > b.End:
			return 1
		}
		return 0
	})
	return out
}

// prefWalker computes preference lists as node indices, reusing its sets
// across calls.
type prefWalker struct {
	r           *Ring
	seen, zones idxSet
}

// list returns the preference list of length n (clamped to the node
// count) of the arc that ends at token index start. It appends the list to
// taken[:0] and uses skipped[:0] as scratch; it returns both buffers so
// callers can reuse them.
func (w *prefWalker) list(start, n int, taken, skipped []int32) (list, scratch []int32) {
	r := w.r
	n = min(n, len(r.nodes))
	w.seen.reset(len(r.nodes))
	w.zones.reset(r.zones)
	taken, skipped = taken[:0], skipped[:0]
	for k := range len(r.tokens) {
		i := start + k
		if i >= len(r.tokens) {
			i -= len(r.tokens)
		}
		node := r.owner[i]
		if !w.seen.add(node) {
			continue
		}
		if w.zones.add(r.zoneOf[node]) {
			taken = append(taken, node)
		} else {
			skipped = append(skipped, node)
		}
		// Stop once n are taken, every node is seen, or every zone is
		// represented (no later node can be taken) and enough skipped
		// nodes are known to fill the list.
		if len(taken) == n || w.seen.len() == len(r.nodes) ||
			(w.zones.len() == r.zones && len(taken)+len(skipped) >= n) {
			break
		}
	}
	need := min(n-len(taken), len(skipped))
	return append(taken, skipped[:need]...), skipped
}

// idxSet is a set of integers in [0, size). It holds its first few members
// in a small array without allocating and switches to a bitset beyond.
type idxSet struct {
	small [8]int32
	n     int
	size  int
	bits  []uint64
}

// reset empties the set and sets its universe to [0, size).
func (s *idxSet) reset(size int) {
	s.n = 0
	if s.bits != nil && s.size == size {
		clear(s.bits)
		return
	}
	s.size, s.bits = size, nil
}

// add inserts x and reports whether it was absent.
func (s *idxSet) add(x int32) bool {
	if s.bits != nil {
		w, b := x>>6, uint64(1)<<(x&63)
		if s.bits[w]&b != 0 {
			return false
		}
		s.bits[w] |= b
		s.n++
		return true
	}
	if slices.Contains(s.small[:s.n], x) {
		return false
	}
	if s.n < len(s.small) {
		s.small[s.n] = x
		s.n++
		return true
	}
	s.bits = make([]uint64, (s.size+63)/64)
	for _, y := range s.small {
		s.bits[y>>6] |= 1 << (y & 63)
	}
	s.bits[x>>6] |= 1 << (x & 63)
	s.n++
	return true
}

// len returns the number of members.
func (s *idxSet) len() int { return s.n }
