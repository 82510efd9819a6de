package ring

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultVNodes is the number of tokens a node of capacity 1 holds when the
// ring is built with vnodes <= 0. More tokens balance ownership better
// (the spread of a node's share shrinks as 1/sqrt(vnodes)) but cost memory
// (20 bytes per token), build time and ReplicaArcs time linearly. 256 is
// the smallest of 32 to 256 in steps of 32 for which the largest node's share stays
// within 1.25x the mean at 10, 100 and 1,000 equal nodes for each of the
// twelve ID seeds of TestBalanceFigures (worst 1.24, at 1,000 nodes; 224
// reaches 1.28 and 192 1.31 there). See that test's log.
const DefaultVNodes = 256

// MaxTokens bounds the tokens of one node, whatever capacity it declares
// or vnodes the ring uses: 16 standard nodes' worth. Capacity arrives by
// gossip, so the bound keeps one node from claiming the ring and keeps a
// hostile value from making every peer hash and sort without limit.
const MaxTokens = 16 * DefaultVNodes

// KeyPos returns the ring position of a key: the xxhash64 of its bytes.
func KeyPos(key []byte) uint64 { return xxhash.Sum64(key) }

// TokenCount returns how many tokens a node of the given capacity holds on
// a ring of vnodes tokens per standard node: round(capacity*vnodes), at
// least 1 and at most MaxTokens. vnodes <= 0 means DefaultVNodes. A
// capacity that is zero, negative or NaN yields 1 token, so a member is
// always reachable on the ring; +Inf yields MaxTokens.
func TokenCount(capacity float64, vnodes int) int {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	c := math.Round(capacity * float64(vnodes))
	switch {
	case math.IsNaN(c) || c < 1:
		return 1
	case c >= MaxTokens:
		return MaxTokens
	default:
		return int(c)
	}
}

// Tokens returns the first count tokens of node id, sorted ascending:
// token i is the first 8 bytes, big-endian, of SHA-256(id || uint32 BE i).
// count is clamped to [0, MaxTokens]. The result may hold equal values in
// the astronomically unlikely case that two indices hash alike; a Ring
// keeps one of them.
func Tokens(id peer.ID, count int) []uint64 {
	count = min(max(count, 0), MaxTokens)
	if count == 0 {
		return nil
	}
	out := make([]uint64, 0, count)
	out = appendTokens(out, id, count)
	slices.Sort(out)
	return out
}

// appendTokens appends the count tokens of id, in index order, to dst.
func appendTokens(dst []uint64, id peer.ID, count int) []uint64 {
	var stack [128]byte
	buf := append(stack[:0], id...)
	n := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	for i := range count {
		binary.BigEndian.PutUint32(buf[n:], uint32(i))
		sum := sha256.Sum256(buf)
		dst = append(dst, binary.BigEndian.Uint64(sum[:8]))
	}
	return dst
}

// Arc is the range of positions (Start, End]: after Start, up to and
// including End, clockwise. It wraps past 2^64-1 to 0 when Start > End.
// Start == End is the full ring (what the arc of a ring with one token
// is); an Arc cannot be empty.
type Arc struct {
	Start, End uint64
}

// Contains reports whether pos lies in the arc a.
func Contains(a Arc, pos uint64) bool {
	switch {
	case a.Start < a.End:
		return a.Start < pos && pos <= a.End
	case a.Start > a.End:
		return pos > a.Start || pos <= a.End
	default:
		return true
	}
}

// Size returns the number of positions in a, modulo 2^64: End-Start with
// wrapping arithmetic. The full ring (Start == End) holds 2^64 positions
// and so reports 0; use Full or Fraction where that matters. Sizes of arcs
// that partition the ring sum to 0 modulo 2^64.
func Size(a Arc) uint64 { return a.End - a.Start }

// Full reports whether a is the whole ring.
func Full(a Arc) bool { return a.Start == a.End }

// Fraction returns the share of the hash space that a covers, in (0, 1].
func Fraction(a Arc) float64 {
	if Full(a) {
		return 1
	}
	return float64(Size(a)) / twoTo64
}

// twoTo64 is 2^64 as a float64, the size of the hash space.
const twoTo64 = float64(math.MaxUint64) + 1

// String formats a as "(start, end]" in hex.
func (a Arc) String() string {
	return fmt.Sprintf("(%016x, %016x]", a.Start, a.End)
}
