// Package dht holds the contracts of ringkv's distributed layer: the types
// every sub-package shares and the small interfaces the layer needs from the
// outside world. It has no logic of its own beyond encoding records.
//
// The model: every node runs one dht/node.Node. Nodes learn about each other
// by gossip (dht/membership), place themselves on a 64-bit consistent-hashing
// ring by tokens derived from their peer IDs (dht/ring), find the node that
// owns a key by iterative lookups over bounded routing state (dht/routing),
// and keep each key on N replicas with tunable quorums (dht/replica).
//
// The consumer owns the interfaces. dht never imports store/ or daemon/:
//   - Store is the durable, ordered key-record map of one node (store/ satisfies it).
//   - Transport carries request/response messages between peers
//     (dht/p2p over libp2p, dht/sim in memory).
//   - Clock tells the time, so timing decisions can be driven by tests and by
//     the simulator.
package dht
