// Package ring is ringkv's consistent-hashing ring: the 64-bit hash space,
// the tokens each node holds on it, and the preference lists that say which
// nodes keep a key. It is pure, deterministic and free of I/O: every result
// depends only on the nodes passed to New, so two nodes that agree on the
// membership agree on every owner and every replica set, and the simulator
// gets the same answers as a real cluster.
//
// # Hash space
//
// Positions are uint64 values on a circle that runs clockwise from 0 to
// 2^64-1 and wraps back to 0. A key's position is KeyPos(key), the xxhash64
// of its bytes.
//
// # Tokens
//
// A node holds TokenCount(capacity, vnodes) tokens (virtual nodes): its
// capacity times the ring's vnodes per standard node, rounded, at least 1
// and at most MaxTokens. Token i of a node is the first 8 bytes, big-endian,
// of SHA-256(peer ID bytes || uint32 big-endian i). A node cannot choose its
// tokens short of grinding peer IDs, and any node can compute any other
// node's tokens from its ID and capacity alone. If two nodes derive the same
// token, the node with the smaller peer ID (bytewise) holds it and the other
// does without it; the ring keeps every token unique.
//
// # Arcs and ownership
//
// Each token t ends one arc (Predecessor(t), t], the positions after the
// previous token up to and including t. The owner of a position is the
// node holding its successor, the first token clockwise at or after it
// (Successor). A key's owner is its directory node. Arcs partition the
// ring; Shares reports the fraction of the space each node owns.
//
// # Preference lists
//
// PreferenceList(pos, n) names the n distinct nodes that keep the keys at
// pos, zone-aware:
//
//  1. Walk the tokens clockwise from the successor of pos.
//  2. For each token whose node is new, take the node if its zone is not yet
//     represented among the taken nodes (the empty zone counts as one zone);
//     otherwise remember it as skipped, in walk order.
//  3. Stop when n nodes are taken or the walk has wrapped.
//  4. Fill the remaining places from the skipped nodes, in walk order.
//
// The owner is always first. With Z distinct zones the list covers
// min(n, Z) zones, and when n exceeds the number of nodes it names them all.
// The list depends only on the successor token, so it is the same for every
// position of one arc. Adding a node changes only lists that then contain
// it, and removing a node changes only lists that contained it.
//
// ReplicaArcs inverts preference lists: the arcs whose lists include a
// node, which is what anti-entropy and range transfers iterate. Walk visits
// every node in clockwise order from a position, for sloppy-quorum fallbacks
// beyond the preference list.
//
// # Snapshots
//
// A *Ring is immutable and safe for concurrent use. Membership changes build
// a new snapshot with New, With or Without; callers swap snapshots
// atomically. Building a ring of 1,000 nodes with 256 tokens each takes
// about 30 ms, mostly hashing (BenchmarkNew); With and Without reuse the
// tokens of unchanged members and only sort (BenchmarkWith). Lookups are a
// bucket index plus a short binary search (BenchmarkSuccessor).
package ring
