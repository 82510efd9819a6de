// Package routing finds the directory node of a ring position: the node
// that holds the position's successor token and answers with its replica
// set. Each node keeps bounded routing state and looks positions up
// iteratively over /ringkv/route/1.0.0 (recursively on request).
//
// # Routing state
//
// A node knows a set of peers (Peer: ID, addresses, zone, capacity).
// Knowing a peer's ID and capacity means knowing all its tokens
// (ring.Tokens), so from its peers a node builds its local ring: a sorted
// array of its own and its peers' tokens (16 bytes per token), merged, not
// rehashed, when the peer set changes, and rebuilt lazily, never per
// query: on the next read after a peer left or arrived in a place where it
// may take a structural role, and in batches of 32 for peers that can only
// be cache entries. The peers are organised as:
//
//   - successor and predecessor lists: for each own token, the Successors
//     (r) distinct peers that follow it and the Predecessors (p) that
//     precede it: at most T·(r+p) peers with T own tokens, fewer when
//     neighbourhoods overlap;
//   - fingers: for i in 0..63, the owner of primary+2^i, where primary is the
//     node's first token: about log2 N distinct peers, at most 64;
//   - a cache: the CacheSize most recently seen other peers (lookup
//     answers, incoming requests, and in the daemon gossip membership, which
//     calls Observe for every live member), evicted least recently seen
//     first.
//
// A peer holding a successor, predecessor or finger place is pinned and
// never evicted; the places are recomputed from the local ring at every
// rebuild, so a closer peer takes a place as soon as it is observed and
// the one it displaces becomes a cache entry. Size() is therefore at most
// Config.MaxSize: T·(r+p) + 64 + CacheSize. A peer costs about 200 bytes
// at one token (the simulator measured 5.6 KB per node of 10^6, routing
// state and transport endpoint together, with an empty cache).
//
// Recently forgotten peers (ForgetTimeout) are not re-learned from other
// peers' answers, only from the peer itself or from Observe, so stale
// neighbours cannot re-plant a dead peer.
//
// # Answers
//
// A node answers FIND(pos) from its local ring: "owner", with the replica
// set (the local ring's zone-aware PreferenceList(pos, Replicas), which
// equals the global ring's as long as the walk stays inside the successor
// list), if the successor token of pos is one of its own; otherwise
// "closer", with up to K = 2·Alpha candidates: the predicted owner (the
// holder of pos's successor token in its local ring) first, then the
// holders of the closest tokens preceding pos by clockwise distance. A
// request may name peers the asker found unreachable: the answer treats
// them as absent (without forgetting them), so a dead owner's successor
// answers for its range before its own stabilization noticed the death.
//
// # Iterative lookup
//
// The asking node starts from its own local ring: if it owns pos, the
// lookup costs 0 hops. Otherwise it keeps a shortlist ordered by the
// predicted owner first (the candidate whose token follows pos most
// closely), then by how closely the candidates' tokens precede pos. Each
// round it queries up to Alpha unasked candidates in parallel and waits for
// all of them (each bounded by QueryTimeout); it merges the candidates they
// return into the shortlist and Observes them; a peer that does not answer
// is reported as a "failed" hop, excluded from later answers and, if it was
// unreachable, forgotten. The lookup ends at the first owner answer unless
// the shortlist holds an unasked candidate with a token between pos and
// that owner's token (a newer node the owner may not know), which is asked
// first. Hops is the number of rounds: 1 when the first round reached the
// owner. ErrLookupFailed when candidates run out or MaxHops rounds pass.
//
// # Recursive lookup
//
// With Options.Recursive the asking node sends FIND{recursive, ttl} to its
// best candidate (falling back to the next, at most Alpha), which answers
// if it owns pos or else forwards the request to its own best candidates
// with ttl-1, and so on. The owner's answer comes back along the chain with
// the path accumulated (each forwarder prepends its hop to the peer it
// reached). Hops is the number of peers on the path that answered.
//
// # Maintenance
//
// Join(seed) looks up, through the seed, the current owner of each own
// token (skipping tokens inside a neighbourhood already learned), then
// stabilises each token. Stabilize asks the peers just after and just
// before each of a rotating subset of own tokens for the peers they know
// around it (FindRequest.neighbors) and adopts them; the request carries
// the asker, which is how the neighbours learn about it (stabilize and
// notify in one message). FixFingers refreshes a few fingers by lookups.
// Start runs both every StabilizeInterval; the simulator calls them
// directly.
//
// # Contract with callers
//
//   - New validates; Start registers the handler (and starts the loop if
//     StabilizeInterval > 0); Close stops the loop, waits for it and is
//     idempotent. All methods are safe for concurrent use.
//   - Observe, ObserveAll and Forget feed the routing state; membership
//     calls Observe for live members and Forget for dead and left ones.
//   - Predict and IsOwner answer from the local ring without any message.
//   - Remote input never crashes or blocks a node: PeerInfo entries that
//     fail validation (peer ID must decode; at most 16 addresses of 256
//     bytes; zone at most 64 bytes; capacity in (0, 64]) are dropped, lists
//     over 64 entries refuse the message, and both are counted in
//     ringkv_routing_refused_total{reason}.
//   - Every node of a cluster must use the same VNodes and Replicas.
package routing
