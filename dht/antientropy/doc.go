// Package antientropy keeps the replicas of every key convergent and moves
// data when ownership changes: Merkle anti-entropy between replicas, the
// pull of a joining node, the push of a leaving node, the handoff of
// records a node no longer owns, and tombstone collection.
//
// # Model
//
// Each key lives on N natural replicas: the preference list of its
// position on the serving ring (the members that own data now). Each token
// t of the ring ends one arc (Predecessor(t), t], and every key of an arc
// has the same replicas, so replicas are compared arc by arc. For every arc
// this node replicates, a Syncer builds a Merkle tree (dht/merkle) of its
// records in the arc, compares it with each other live replica's tree of
// the same arc and depth, and exchanges only the keys in the leaf buckets
// that differ. Each differing key ends up on both sides as version.Merge
// of the two records: the peer's record is pulled and applied locally
// (Replica.Apply merges), and the merged record is pushed back when the
// peer's differs from it. Merge is a join, so any order of exchanges
// converges. A tree's depth is chosen from the local item count (about 16
// keys per bucket, at most Config.Depth), so small arcs use shallow trees;
// the requester sends the depth and both sides use it.
//
// The same exchange, in one direction, moves data on membership changes:
//
//   - Bootstrap (join): the joining node pulls every arc it will replicate
//     in the future ring, cut at the serving ring's tokens, from each
//     piece's live natural replicas, before it becomes Normal.
//   - Drain (leave): the leaving node pushes every record it holds to the
//     key's future replicas other than itself, before it announces Left.
//   - Handoff (every round): records of arcs where this node is neither a
//     natural nor a future replica are pushed to the arc's natural replicas
//     and deleted locally once every one of them acknowledged (handoff.go).
//   - Tombstone collection (every round): see tombstone.go for the rule
//     and why it keeps deleted keys deleted after a partition heals.
//
// Every transfer is a Merkle comparison, so an interrupted one resumes:
// running it again moves only what is still missing. Bytes moved are rate
// limited (Config.RateBytes) and reported through Progress.
//
// # Protocol
//
// Peers speak Protocol (/ringkv/sync/1.0.0), messages in dht/pb/sync.proto:
//
//	Roots{arcs[(start, end, depth)]}             -> roots[], counts[]
//	Level{queries[(arc, level, indexes[])]}      -> hashes[][]
//	Keys{spans[[from, to]], cursor, limit}       -> entries[(key, digest)], more
//	Fetch{keys[]}                                -> records[] (a prefix, bounded in bytes)
//	Push{entries[(key, record)]}                 -> applied
//
// One Roots request covers up to 1024 arcs (and about 256k local records); the walk down the trees whose
// roots differ asks for one level of all of them per Level request, so a
// round with a peer costs a handful of round trips plus the transfers,
// however many arcs differ. The responder keeps the trees it built for
// Roots for a short time for the Level requests that follow (bounded in
// buckets). Every request is checked against fixed bounds (arcs, indexes,
// spans, keys, key sizes, depth <= 16, record shape) and refused with
// ErrBadRequest otherwise; no remote input can panic a handler.
//
// # Contract
//
// The node builds a Syncer with New over its Placement (serving and future
// rings, N, liveness), its replica engine (Replica, which *replica.Engine
// satisfies), transport, store and clock; Start registers the handler and
// starts the background loop (a cheap round every Interval: each pair of
// replicas compared once, from the side with the smaller peer ID); Close
// stops it. Round, Bootstrap and Drain run on demand, one at a time; each
// reports Progress and returns an error wrapping ErrIncomplete when some
// ranges could not be exchanged (the others were). Roots reports this
// node's root (depth 0) of every serving arc it replicates, equal on every
// replica of an arc once they agree.
//
// Records are read from and deleted in the store directly under the
// replica engine's layout (replica.DataKey); every write goes through
// Replica.Apply or Replica.Purge so that it takes the engine's per-key
// lock and merge rules.
package antientropy
