package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/version"
)

// Errors returned by this package. Callers test for them with errors.Is.
var (
	// ErrBadIndex: a node depth or index is outside the tree; remote
	// requests for hashes are checked against it.
	ErrBadIndex = errors.New("merkle: node index out of range")
	// ErrRemoteMismatch: the remote answered a hash request with the wrong
	// number of hashes.
	ErrRemoteMismatch = errors.New("merkle: remote answer does not match the request")
)

// Tree depths.
const (
	// DefaultDepth gives 1024 buckets: with a million keys per arc about a
	// thousand keys per bucket, and a full comparison of equal trees costs
	// one hash. Deeper trees localise differences to fewer keys at the cost
	// of more memory (16 bytes per bucket) and one more round trip per level.
	DefaultDepth = 10
	// MaxDepth bounds memory at 2^17 hashes (1 MiB) per tree.
	MaxDepth = 16
)

// Range is the arc (Start, End] of the ring, wrapping past 2^64-1.
// Start == End is the whole ring.
type Range struct {
	Start, End uint64
}

// Whole reports whether r is the whole ring.
func (r Range) Whole() bool { return r.Start == r.End }

// Contains reports whether pos lies in r.
func (r Range) Contains(pos uint64) bool {
	return r.Whole() || pos-r.Start-1 < r.End-r.Start
}

func (r Range) String() string { return fmt.Sprintf("(%#x, %#x]", r.Start, r.End) }

// Tree is a hash tree over one arc. The zero value is not usable; call New.
type Tree struct {
	arc   Range
	depth int

	mu      sync.Mutex
	levels  [][]uint64 // levels[d] holds the 1<<d node hashes at depth d; levels[depth] are the leaves
	items   int        // items added minus items removed
	dirty   []int      // leaves changed since inner hashes were last computed
	marked  []bool     // marked[i]: leaf i is in dirty
	scratch []byte     // reused to hash key || digest
}

// New returns an empty tree over arc with 2^depth buckets. depth is clamped
// to [0, MaxDepth] and to log2 of the arc's width, so every bucket holds at
// least one position; Depth reports the result. Two replicas calling New
// with the same arguments get trees of the same shape.
func New(arc Range, depth int) *Tree {
	depth = max(0, min(depth, MaxDepth))
	if !arc.Whole() {
		depth = min(depth, 63-bits.LeadingZeros64(arc.End-arc.Start))
	}
	t := &Tree{
		arc:    arc,
		depth:  depth,
		levels: make([][]uint64, depth+1),
		marked: make([]bool, 1<<depth),
	}
	for d := range t.levels {
		t.levels[d] = make([]uint64, 1<<d)
	}
	return t
}

// Range returns the tree's arc.
func (t *Tree) Range() Range { return t.arc }

// Depth returns the depth of the leaves; the tree has 2^Depth buckets.
func (t *Tree) Depth() int { return t.depth }

// Buckets returns the number of leaf buckets, 2^Depth.
func (t *Tree) Buckets() int { return 1 << t.depth }

// Len returns the number of items added and not removed.
func (t *Tree) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.items
}

// Add inserts an item and reports whether pos lies in the tree's arc; an
// item outside it is ignored. Adding the same item twice counts it twice.
func (t *Tree) Add(pos uint64, key []byte, digest uint64) bool {
	return t.update(pos, key, digest, 1)
}

// Remove takes out an item added earlier and reports whether pos lies in the
// tree's arc. Removing an item that was never added corrupts the tree's
// hashes (it then differs from every replica's) without any other harm.
func (t *Tree) Remove(pos uint64, key []byte, digest uint64) bool {
	return t.update(pos, key, digest, -1)
}

func (t *Tree) update(pos uint64, key []byte, digest uint64, sign int) bool {
	b := t.Bucket(pos)
	if b < 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.itemHashLocked(key, digest)
	leaves := t.levels[t.depth]
	if sign > 0 {
		leaves[b] += h
	} else {
		leaves[b] -= h
	}
	t.items += sign
	if !t.marked[b] {
		t.marked[b] = true
		t.dirty = append(t.dirty, b)
	}
	return true
}

// itemHashLocked returns xxhash64(key || digest little-endian).
func (t *Tree) itemHashLocked(key []byte, digest uint64) uint64 {
	t.scratch = binary.LittleEndian.AppendUint64(append(t.scratch[:0], key...), digest)
	return xxhash.Sum64(t.scratch)
}

// Root returns the hash of the whole tree; 0 when it holds no items.
func (t *Tree) Root() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	return t.levels[0][0]
}

// Level returns a copy of the 2^d hashes at depth d (0 is the root, Depth
// the leaves), or nil when d is outside [0, Depth].
func (t *Tree) Level(d int) []uint64 {
	if d < 0 || d > t.depth {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	return slices.Clone(t.levels[d])
}

// Leaves returns a copy of the leaf hashes, one per bucket.
func (t *Tree) Leaves() []uint64 { return t.Level(t.depth) }

// Nodes returns the hashes of the nodes at depth d with the given indexes,
// in order. It serves a remote DiffTrees: d and indexes come from the
// network and are checked, failing with ErrBadIndex.
func (t *Tree) Nodes(d int, indexes []int) ([]uint64, error) {
	if d < 0 || d > t.depth {
		return nil, fmt.Errorf("%w: depth %d, tree depth %d", ErrBadIndex, d, t.depth)
	}
	for _, i := range indexes {
		if i < 0 || i >= 1<<d {
			return nil, fmt.Errorf("%w: index %d at depth %d", ErrBadIndex, i, d)
		}
	}
	return t.nodesAt(d, indexes), nil
}

// nodesAt returns the hashes at depth d for indexes that the caller knows
// are valid.
func (t *Tree) nodesAt(d int, indexes []int) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	out := make([]uint64, len(indexes))
	for k, i := range indexes {
		out[k] = t.levels[d][i]
	}
	return out
}

// appendNonEmptyLeaves appends the leaves under node i at depth d whose hash
// is not 0, in order.
func (t *Tree) appendNonEmptyLeaves(out []int, d, i int) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	return t.appendNonEmptyLeavesLocked(out, d, i)
}

func (t *Tree) appendNonEmptyLeavesLocked(out []int, d, i int) []int {
	switch {
	case t.levels[d][i] == 0:
		return out
	case d == t.depth:
		return append(out, i)
	}
	out = t.appendNonEmptyLeavesLocked(out, d+1, 2*i)
	return t.appendNonEmptyLeavesLocked(out, d+1, 2*i+1)
}

// flushLocked recomputes the inner hashes above the dirty leaves.
func (t *Tree) flushLocked() {
	if len(t.dirty) == 0 {
		return
	}
	for _, i := range t.dirty {
		t.marked[i] = false
	}
	if len(t.dirty) > len(t.marked)/8 {
		t.dirty = t.dirty[:0]
		for d := t.depth - 1; d >= 0; d-- {
			for i := range t.levels[d] {
				t.levels[d][i] = nodeHash(t.levels[d+1][2*i], t.levels[d+1][2*i+1])
			}
		}
		return
	}
	cur := t.dirty
	slices.Sort(cur)
	for d := t.depth - 1; d >= 0; d-- {
		n := 0
		for _, i := range cur {
			p := i >> 1
			if n > 0 && cur[n-1] == p {
				continue
			}
			t.levels[d][p] = nodeHash(t.levels[d+1][2*p], t.levels[d+1][2*p+1])
			cur[n] = p
			n++
		}
		cur = cur[:n]
	}
	t.dirty = t.dirty[:0]
}

// nodeHash hashes two children; two empty children make an empty node.
func nodeHash(l, r uint64) uint64 {
	if l == 0 && r == 0 {
		return 0
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], l)
	binary.LittleEndian.PutUint64(b[8:], r)
	return xxhash.Sum64(b[:])
}

// Bucket returns the leaf bucket that holds pos, or -1 when pos is outside
// the tree's arc. Bucket i holds the positions whose offset from Start+1 is
// in [ceil(i*W/2^Depth), ceil((i+1)*W/2^Depth)), W being the arc's width.
func (t *Tree) Bucket(pos uint64) int {
	if !t.arc.Contains(pos) {
		return -1
	}
	if t.depth == 0 {
		return 0
	}
	off := pos - t.arc.Start - 1
	if t.arc.Whole() {
		return int(off >> (64 - t.depth))
	}
	// off*2^depth/W; the high word is below W because off < W.
	hi, lo := bits.Mul64(off, 1<<t.depth)
	q, _ := bits.Div64(hi, lo, t.arc.End-t.arc.Start)
	return int(q)
}

// BucketRange returns the arc (start, end] of positions in bucket i. The
// buckets' arcs are disjoint and, in order, cover the tree's arc; with depth
// 0 the one bucket is the tree's arc. i must be in [0, Buckets()): check
// indexes received from a peer first. An index outside it panics.
func (t *Tree) BucketRange(i int) (start, end uint64) {
	if i < 0 || i >= t.Buckets() {
		panic(fmt.Sprintf("merkle: bucket %d out of range [0, %d)", i, t.Buckets()))
	}
	return t.arc.Start + t.boundary(i), t.arc.Start + t.boundary(i+1)
}

// boundary returns ceil(i*W/2^depth) mod 2^64, the offset of the first
// position of bucket i (for i = 2^depth, the width W).
func (t *Tree) boundary(i int) uint64 {
	if t.arc.Whole() {
		return uint64(i) << (64 - t.depth) // depth 0: i<<64 is 0 in Go
	}
	hi, lo := bits.Mul64(uint64(i), t.arc.End-t.arc.Start)
	lo, carry := bits.Add64(lo, 1<<t.depth-1, 0)
	hi += carry
	if t.depth == 0 {
		return lo
	}
	return hi<<(64-t.depth) | lo>>t.depth
}

// RecordDigest is the digest of a record's state for Tree items: xxhash64
// over a fixed encoding of version.Canonical(r), so records in the same state
// (siblings, payloads with their expiries, context) get the same digest
// however their fields are ordered.
func RecordDigest(r dht.Record) uint64 {
	c := version.Canonical(r)
	h := xxhash.New()
	b := make([]byte, 0, 64)
	b = binary.LittleEndian.AppendUint64(b, digestFormat)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.Versions)))
	for _, v := range c.Versions {
		var tomb uint64
		if v.Tombstone {
			tomb = 1
		}
		b = binary.LittleEndian.AppendUint64(b, v.Dot.Actor)
		b = binary.LittleEndian.AppendUint64(b, v.Dot.Counter)
		b = binary.LittleEndian.AppendUint64(b, tomb)
		b = binary.LittleEndian.AppendUint64(b, uint64(v.Timestamp))
		b = binary.LittleEndian.AppendUint64(b, uint64(v.ExpiresAt))
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v.Value)))
		_, _ = h.Write(b)
		_, _ = h.Write(v.Value)
		b = b[:0]
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.Context)))
	for _, d := range c.Context {
		b = binary.LittleEndian.AppendUint64(b, d.Actor)
		b = binary.LittleEndian.AppendUint64(b, d.Counter)
	}
	_, _ = h.Write(b)
	return h.Sum64()
}

// digestFormat starts every digest encoding; change it if the encoding
// changes, since digests of old and new code must not be compared.
const digestFormat = 2
