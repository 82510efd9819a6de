package ring

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Node is one member as the ring sees it.
type Node struct {
	ID peer.ID
	// Zone is the node's failure domain (rack, availability zone). "" is a
	// zone like any other: nodes that all leave it unset share one zone.
	Zone string
	// Capacity weights the node's share of the ring: it holds
	// TokenCount(Capacity, vnodes) tokens. 1 is a standard node.
	Capacity float64
}

// Ring is an immutable snapshot of the hash ring: the nodes, their tokens
// in clockwise order, and their zones. The zero value and the ring of no
// nodes are empty: lookups on them find nothing. A Ring is safe for
// concurrent use.
type Ring struct {
	vnodes int
	nodes  []Node            // sorted by ID, unique
	index  map[peer.ID]int32 // ID -> position in nodes
	zoneOf []int32           // node -> zone number, numbered in node order
	zones  int               // distinct zones among nodes
	tokens []uint64          // ascending, unique
	owner  []int32           // owner[i] holds tokens[i] (index into nodes)
	byNode [][]uint64        // tokens held by each node, ascending
	// bucket[p] is the index of the first token whose top bits are >= p,
	// so a lookup binary-searches a few tokens instead of all of them.
	bucket []int32
	shift  uint // a position's bucket is pos >> shift
}

// New builds the ring of nodes with vnodes tokens per unit of capacity
// (vnodes <= 0 means DefaultVNodes; more than MaxTokens is clamped). When
// an ID appears more than once the last entry wins. Nodes with an empty ID
// are ignored. nodes is not retained.
func New(nodes []Node, vnodes int) *Ring { return build(nodes, vnodes, nil) }

// With returns a new ring that also holds nodes, replacing any member with
// the same ID, with the same vnodes. Members unchanged in ID and token
// count keep their tokens without rehashing.
func (r *Ring) With(nodes ...Node) *Ring {
	all := make([]Node, 0, r.Len()+len(nodes))
	all = append(all, r.nodes...)
	all = append(all, nodes...)
	return build(all, r.VNodes(), r)
}

// Without returns a new ring without the nodes ids, with the same vnodes.
// IDs that are not members are ignored.
func (r *Ring) Without(ids ...peer.ID) *Ring {
	drop := make(map[peer.ID]struct{}, len(ids))
	for _, id := range ids {
		drop[id] = struct{}{}
	}
	keep := make([]Node, 0, r.Len())
	for _, n := range r.nodes {
		if _, ok := drop[n.ID]; !ok {
			keep = append(keep, n)
		}
	}
	return build(keep, r.VNodes(), r)
}

// tokenEntry is one derived token and the node (index) that derived it.
type tokenEntry struct {
	token uint64
	node  int32
}

// build makes a ring. prev, when not nil, is a ring whose members' tokens
// may be reused instead of rehashed.
func build(in []Node, vnodes int, prev *Ring) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	r := &Ring{vnodes: min(vnodes, MaxTokens), nodes: uniqueNodes(in)}
	r.index = make(map[peer.ID]int32, len(r.nodes))
	r.zoneOf = make([]int32, len(r.nodes))
	zoneNum := make(map[string]int32)
	total := 0
	for i, n := range r.nodes {
		r.index[n.ID] = int32(i)
		z, ok := zoneNum[n.Zone]
		if !ok {
			z = int32(len(zoneNum))
			zoneNum[n.Zone] = z
		}
		r.zoneOf[i] = z
		total += TokenCount(n.Capacity, r.vnodes)
	}
	r.zones = len(zoneNum)

	entries := make([]tokenEntry, 0, total)
	var scratch []uint64
	for i, n := range r.nodes {
		count := TokenCount(n.Capacity, r.vnodes)
		toks := prev.reusableTokens(n.ID, count)
		if toks == nil {
			scratch = appendTokens(scratch[:0], n.ID, count)
			toks = scratch
		}
		for _, t := range toks {
			entries = append(entries, tokenEntry{token: t, node: int32(i)})
		}
	}
	r.fillTokens(sortEntries(entries))
	r.fillBuckets()
	return r
}

// uniqueNodes returns the nodes of in with non-empty, unique IDs (the last
// entry of an ID wins), sorted by ID.
func uniqueNodes(in []Node) []Node {
	last := make(map[peer.ID]int, len(in))
	for i, n := range in {
		if n.ID != "" {
			last[n.ID] = i
		}
	}
	out := make([]Node, 0, len(last))
	for i, n := range in {
		if j, ok := last[n.ID]; ok && j == i {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// reusableTokens returns the tokens id holds in r if they are exactly the
// count tokens it derives (same count, none lost to a collision), or nil.
func (r *Ring) reusableTokens(id peer.ID, count int) []uint64 {
	if r == nil {
		return nil
	}
	i, ok := r.index[id]
	if !ok || len(r.byNode[i]) != count ||
		TokenCount(r.nodes[i].Capacity, r.vnodes) != count {
		return nil
	}
	return r.byNode[i]
}

// sortEntries orders entries by token, ties by node index, which is peer ID
// order because nodes are sorted by ID, and returns them (in e or in a new
// slice). Tokens are SHA-256 outputs, uniform over the ring, so a bucket
// sort on their top bits (one to two entries per bucket) does in linear
// time what a comparison sort does in n log n; buckets that a grinding
// adversary might crowd still sort in n log n.
func sortEntries(e []tokenEntry) []tokenEntry {
	if len(e) < 1024 {
		slices.SortFunc(e, compareEntries)
		return e
	}
	shift := 64 - bits.Len(uint(len(e)))
	next := make([]int32, 1<<(64-shift)+1)
	for _, x := range e {
		next[x.token>>shift+1]++
	}
	for b := 1; b < len(next); b++ {
		next[b] += next[b-1]
	}
	out := make([]tokenEntry, len(e))
	for _, x := range e {
		b := x.token >> shift
		out[next[b]] = x
		next[b]++
	}
	// next[b] is now the end of bucket b, which is the start of bucket b+1.
	start := int32(0)
	for _, end := range next[:len(next)-1] {
		if end-start > 1 {
			sortBucket(out[start:end])
		}
		start = end
	}
	return out
}

// sortBucket sorts a bucket: by insertion while small, else by pdqsort.
func sortBucket(e []tokenEntry) {
	if len(e) > 12 {
		slices.SortFunc(e, compareEntries)
		return
	}
	for i := 1; i < len(e); i++ {
		for j := i; j > 0 && compareEntries(e[j-1], e[j]) > 0; j-- {
			e[j-1], e[j] = e[j], e[j-1]
		}
	}
}

func compareEntries(a, b tokenEntry) int {
	if c := cmp.Compare(a.token, b.token); c != 0 {
		return c
	}
	return cmp.Compare(a.node, b.node)
}

// fillTokens sets tokens, owner and byNode from sorted entries. Of equal
// tokens the first, the smallest peer ID, is kept.
func (r *Ring) fillTokens(e []tokenEntry) {
	r.tokens = make([]uint64, 0, len(e))
	r.owner = make([]int32, 0, len(e))
	counts := make([]int, len(r.nodes))
	for i, x := range e {
		if i > 0 && x.token == e[i-1].token {
			continue
		}
		r.tokens = append(r.tokens, x.token)
		r.owner = append(r.owner, x.node)
		counts[x.node]++
	}
	backing := make([]uint64, len(r.tokens))
	r.byNode = make([][]uint64, len(r.nodes))
	off := 0
	for i, c := range counts {
		r.byNode[i] = backing[off : off : off+c]
		off += c
	}
	for i, t := range r.tokens {
		n := r.owner[i]
		r.byNode[n] = append(r.byNode[n], t)
	}
}

// fillBuckets builds the lookup index over the tokens: about one bucket
// per token, at most 2^16 (256 KiB).
func (r *Ring) fillBuckets() {
	if len(r.tokens) == 0 {
		return
	}
	b := min(bits.Len(uint(len(r.tokens))), 16)
	r.shift = uint(64 - b)
	r.bucket = make([]int32, 1<<b+1)
	j := 0
	for p := range 1 << b {
		for j < len(r.tokens) && r.tokens[j]>>r.shift < uint64(p) {
			j++
		}
		r.bucket[p] = int32(j)
	}
	r.bucket[1<<b] = int32(len(r.tokens))
}

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// VNodes returns the tokens per unit of capacity the ring was built with.
func (r *Ring) VNodes() int {
	if r.vnodes == 0 {
		return DefaultVNodes
	}
	return r.vnodes
}

// Nodes returns a copy of the members, sorted by ID.
func (r *Ring) Nodes() []Node { return slices.Clone(r.nodes) }

// Has reports whether id is a member.
func (r *Ring) Has(id peer.ID) bool {
	_, ok := r.index[id]
	return ok
}

// TokensOf returns a copy of the tokens id holds, ascending, or nil if id
// is not a member. A node that lost a token collision (see the package
// doc) holds fewer than TokenCount tokens.
func (r *Ring) TokensOf(id peer.ID) []uint64 {
	i, ok := r.index[id]
	if !ok {
		return nil
	}
	return slices.Clone(r.byNode[i])
}

// lowerBound returns the index of the first token at or after pos, or
// len(tokens) if there is none. The ring must not be empty.
func (r *Ring) lowerBound(pos uint64) int {
	// Tokens before bucket[p] are below pos's bucket, tokens from
	// bucket[p+1] on are above pos: the answer lies in between, inclusive.
	p := pos >> r.shift
	lo, hi := int(r.bucket[p]), int(r.bucket[p+1])
	i, _ := slices.BinarySearch(r.tokens[lo:hi], pos)
	return lo + i
}

// succIndex returns the index of the first token at or after pos, wrapping
// to 0. The ring must not be empty.
func (r *Ring) succIndex(pos uint64) int {
	i := r.lowerBound(pos)
	if i == len(r.tokens) {
		return 0
	}
	return i
}

// Successor returns the first token clockwise at or after pos, wrapping
// past the last token to the first, and the node that holds it: the owner
// of pos. ok is false on an empty ring.
func (r *Ring) Successor(pos uint64) (token uint64, owner peer.ID, ok bool) {
	if len(r.tokens) == 0 {
		return 0, "", false
	}
	i := r.succIndex(pos)
	return r.tokens[i], r.nodes[r.owner[i]].ID, true
}

// Predecessor returns the last token strictly before token, wrapping past
// the first token to the last. For a token of the ring that is the Start
// of its arc; on a ring of one token it is that token. It returns 0 on an
// empty ring.
func (r *Ring) Predecessor(token uint64) uint64 {
	if len(r.tokens) == 0 {
		return 0
	}
	i := r.lowerBound(token)
	if i == 0 {
		i = len(r.tokens)
	}
	return r.tokens[i-1]
}

// arcAt returns the arc that token index i ends.
func (r *Ring) arcAt(i int) Arc {
	p := i - 1
	if p < 0 {
		p = len(r.tokens) - 1
	}
	return Arc{Start: r.tokens[p], End: r.tokens[i]}
}

// Arcs returns the arc ending at each token, in token order. They
// partition the ring. It returns nil on an empty ring.
func (r *Ring) Arcs() []Arc {
	if len(r.tokens) == 0 {
		return nil
	}
	out := make([]Arc, len(r.tokens))
	for i := range r.tokens {
		out[i] = r.arcAt(i)
	}
	return out
}

// ArcOf returns the arc that contains pos, the one ending at its
// successor. It returns the zero Arc on an empty ring.
func (r *Ring) ArcOf(pos uint64) Arc {
	if len(r.tokens) == 0 {
		return Arc{}
	}
	return r.arcAt(r.succIndex(pos))
}

// Shares returns the fraction of the hash space each node owns as primary
// (the arcs ending at its tokens). The fractions sum to 1; an empty ring
// yields an empty map.
func (r *Ring) Shares() map[peer.ID]float64 {
	out := make(map[peer.ID]float64, len(r.nodes))
	if len(r.tokens) == 0 {
		return out
	}
	// Sum exactly in 128 bits per node: a node may own all 2^64 positions.
	hi := make([]uint64, len(r.nodes))
	lo := make([]uint64, len(r.nodes))
	for i := range r.tokens {
		n := r.owner[i]
		var carry uint64
		lo[n], carry = bits.Add64(lo[n], Size(r.arcAt(i)), 0)
		hi[n] += carry
	}
	if len(r.tokens) == 1 {
		hi[r.owner[0]] = 1
	}
	for i, n := range r.nodes {
		out[n.ID] = float64(hi[i]) + float64(lo[i])/twoTo64
	}
	return out
}
