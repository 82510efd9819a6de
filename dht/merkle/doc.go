// Package merkle builds hash trees over one arc of the ring so that two
// replicas can find, in a few round trips, which parts of the arc they hold
// differently, and exchange only those keys (anti-entropy).
//
// # Model
//
// An item is one key a replica holds: its ring position, the key bytes and
// the digest of its record (RecordDigest, equal for equal record states,
// expiries included). A Tree covers the arc (Start, End] of the 64-bit ring,
// wrapping past 2^64-1; Start == End is the whole ring. The arc is cut into
// 2^depth buckets of equal width (within one position), so two replicas that
// build trees over the same arc with the same depth get trees of the same
// shape, node for node, whatever they hold.
//
// A leaf's hash is the wrapping sum (mod 2^64) of xxhash64(key || digest)
// over the items in its bucket. A sum, rather than a XOR, makes the hash
// independent of insertion order and lets Add and Remove update a leaf in
// O(1) as exact inverses, while an item added twice still counts twice (with
// XOR it would cancel out and hide the bug). An inner node hashes its two
// children with xxhash64(left || right), little-endian; a subtree with no
// items hashes to 0, so empty parts of the arc cost nothing to compare.
// Inner hashes are recomputed lazily, only along the paths of leaves that
// changed, when a hash is read.
//
// The hashes are not cryptographic: they detect divergence between honest
// replicas, not tampering.
//
// # Comparing two trees
//
// Diff compares two hash lists of the same level. DiffTrees compares a local
// tree with a remote one level by level, asking the remote only for the
// children of nodes that differ, so it costs depth+1 round trips and
// O(differences * depth) hashes, and returns the differing leaf buckets.
// BucketRange turns a bucket into the arc of positions to exchange.
//
// A Tree is safe for concurrent use. The package does no I/O.
package merkle
