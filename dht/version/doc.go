// Package version tracks causality for dht.Record with dotted version vectors,
// in the style of Riak's dvvset (Almeida et al., "Scalable and Accurate
// Causality Tracking for Eventually Consistent Stores").
//
// # Model
//
// A record is a set of siblings and a causal context. Each sibling (a value
// or a tombstone) carries the dot (actor, counter) of the write that created
// it: the counter-th write coordinated by the replica whose actor ID is
// actor. The context is a version vector, one entry per actor holding the
// highest counter seen, and it always covers the record's own siblings. A dot
// (a, c) is covered by a context V when c <= V[a]: whoever holds V has seen
// that write. A sibling that is covered by a context but absent from the
// record holding it was seen and overwritten there.
//
// The package is pure: no I/O, no clock, no goroutines. Every function treats
// its arguments as immutable and returns fresh Versions and Context slices;
// value bytes are shared with the inputs, never copied or modified.
//
// # Operations and their contract
//
//   - Update applies a client write at the coordinating replica. The client's
//     context (from its read) names the siblings it saw; those are replaced by
//     the new version, every other sibling stays as a concurrent sibling.
//   - Merge joins two replicas' states. On siblings and contexts it is the
//     join of a semilattice: commutative, associative and idempotent, so
//     replicas that exchange states in any order and any number of times
//     converge. Its output is canonical (Canonical), so equal states encode to
//     equal bytes and hash to equal Merkle digests.
//   - Compare and Descends order two states by their causal histories.
//   - UpdateLWW and ResolveLWW serve clusters in last-writer-wins mode;
//     Prune bounds the context's size.
//
// # No acknowledged write is lost
//
// A sibling leaves a record only when a context that covers its dot meets a
// state that lacks it, and a state can lack a covered dot only because some
// Update received a client context that covered it: the client read that
// write (or a write that had replaced it) and wrote over it. So after any
// sequence of Updates and Merges, once every state has been merged, a write is
// present if and only if no later write was made with a context covering it.
// The tests check exactly this property on random histories.
//
// # Expiry
//
// A TTL write's version carries its own ExpiresAt, set by the coordinator.
// From then on the version is dead, as a tombstone is: Live leaves it out,
// and it stays in the record, with the context that covers it and
// whatever it overwrote, until tombstone collection purges the record from
// every replica at once. Expiry merges with the version it belongs to, so
// Merge needs no rule for it and its laws hold for expiring versions too.
// Update drops the dead siblings of the record it writes over (the new
// context still covers them), so that tombstones and expired values do
// not pile up next to a key's live versions.
//
// # Last writer wins
//
// In last-writer-wins mode the coordinator writes with UpdateLWW, which
// supersedes every version it holds and stamps the new one later than
// all of them, and readers see ResolveLWW of the merged record. Merge is
// the same in both modes: dropping the losers at every merge, while their
// dots stay in the context, is not associative once timestamps go against
// causality, and replicas could then merge to an empty record.
//
// # Pruning
//
// Prune drops context entries of actors that have no current sibling when a
// context grows past a bound. Pruning never removes a sibling; a pruned
// context only claims to have seen less, so the worst effect is a false
// sibling: an overwritten write that reappears next to its successor until a
// client writes over both. Callers must not prune the actors that may
// coordinate future writes on the key (pass them as keep): an actor that
// forgot its own counter could reissue a dot.
package version
