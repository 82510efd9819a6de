// Package dhttest runs in-process ringkv clusters for tests: N real
// dht/node.Node instances, each over its own libp2p host on a mocknet
// (github.com/libp2p/go-libp2p/p2p/net/mock) with a dht/p2p transport, and
// each with an in-memory dht.Store. It is layer 2 of ringkv's testing
// layers: the daemons' distributed layer, with real wire messages, but no
// processes, disks or sockets.
//
// # Model
//
// A Cluster has numbered slots. A slot is one node's lasting identity: an
// Ed25519 key derived from Options.Seed and the slot's index (so the same
// seed always gives the same peer IDs and so the same ring tokens), a
// mocknet address, and a MemStore. A slot is up (a host, transport and
// node are running on it) or down. Kill takes a slot down abruptly;
// Restart brings it back with the same key and the same store, as a
// process restarted on the same data directory would be; Boot does the
// same without joining it through anyone, and JoinThrough joins it later.
//
// The network is the mocknet's links. Two up slots are linked exactly when
// they are in the same partition group (every slot, when the cluster is
// healed). Partition and Heal recompute the links: a pair that must be cut
// is unlinked and then disconnected (so no new connection can form while
// the old ones are being torn down, and every stream on them is reset); a
// pair that must be joined is linked again and connects on its next call.
// A killed slot is cut from every peer before its node is closed, so the
// others see a crash, never a goodbye.
//
// Links alone leak, in two ways the harness closes. A dial that found its
// link just before the cut completes after it: a Connected notifiee on
// every host closes connections the partition forbids. And mocknet lets a
// stream be opened on a connection that is being closed; that stream
// outlives the connection, and a transport that pools streams keeps
// talking across the cut over it (seen as a partitioned node staying
// Normal for seconds under load): each node's transport is wrapped, and
// the wrapper refuses calls between slots the partition separates.
//
// Messages can be lost too: LoseResponses makes a node's next calls on a
// protocol run at the peer but fail at the caller, as when a connection
// drops after the request was served (links cannot express that).
//
// Time is a Clock: the wall clock plus an offset that Advance moves
// forward, shared by every node and store, plus a per-slot skew (SetSkew)
// for tests of last-writer-wins. Advancing it makes TTLs expire without
// waiting; the membership, anti-entropy and replica loops keep running on
// real timers and simply see time jump.
//
// # Contract
//
//   - New starts node 0, joins every other node through it and returns
//     once every node reports every other one Normal. It registers Close
//     with t.Cleanup; tests never close a Cluster themselves.
//   - Node(i) is the node running on slot i (nil while it is down). Its
//     methods are the system under test; the Cluster only manages slots,
//     links and time.
//   - Kill, Restart, Start, Boot, JoinThrough, Add, Partition, Heal,
//     LoseResponses and SetSkew
//     take effect before they return. They call t.Fatal on harness
//     failures, so call them from the test's goroutine; the accessors
//     (Node, Live, Store, ...) are safe from any goroutine.
//   - WaitUntil and WaitFor poll a condition until it holds or a bound
//     passes, and fail the test with a description otherwise. No helper
//     sleeps to wait for a condition.
//
// # Why mocknet
//
// Mocknet gives real libp2p hosts, streams and multistream negotiation
// with links a test can cut. It ignores stream deadlines, which dht/p2p
// covers by resetting the stream when the call's context ends, and a cut
// link fails a dial at once: a killed or partitioned peer looks like one
// whose connections are refused, never like one that hangs. Tests of
// timeouts against silent peers need loopback TCP (dht/p2p's own tests).
package dhttest
