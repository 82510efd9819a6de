// Package sim simulates ringkv's routing and failure detection at sizes one
// machine cannot run in real time: up to a million routers, or ten
// thousand gossiping members. It runs the production code (dht/routing,
// dht/membership) unchanged, over an in-memory network (dht/memnet without
// message cloning: calls run the handler synchronously in the caller's
// goroutine) and a simulated clock (Clock) that moves only when the
// simulator advances it. No node has goroutines; a run is reproducible
// from its Seed.
//
// # Routing (Run)
//
//  1. Converged start. Nodes get peer IDs (PeerID: SHA2-256 multihashes,
//     cheap to derive) and capacity 1. One global sorted token array gives
//     each router its successor lists, predecessors and fingers, which are
//     fed in through Observe, as if the ring had stabilized forever; caches
//     are switched off (size 0).
//  2. Cold: Lookups lookups of random positions from random nodes, with
//     successor lists and fingers only. Target: mean hops at most ½·log2 N.
//  3. Warm (Config.Warm): WarmAskers random nodes get their cache filled
//     with min(CacheSize, N-1) random live peers, as a daemon's gossip
//     membership fills it, and Lookups lookups are issued from them.
//     Target: close to 1 hop; it is 1 when the cache holds the cluster.
//  4. Churn (Config.Churn, Periods): caches on. Each period kills Churn·N
//     random nodes without a word, starts as many new ones that Join
//     through random live nodes, advances the clock by Period, runs one
//     Stabilize and one FixFingers round on every live node, then runs
//     Lookups/Periods lookups. Target: at least 99% succeed at Churn 0.1.
//
// A lookup succeeds when an owner answered; it is correct when that owner
// is the global ring's owner of the position at that moment. Hops are
// routing.Result.Hops (sequential rounds, iterative).
//
// # Membership (RunMembership)
//
// Real membership.Memberlist instances with DefaultLANConfig timings run
// in Manual mode: all join through one node (twice, so everyone learns
// everyone), the cluster settles, Kill nodes die at once, and every live
// node Steps every Tick until every survivor has declared every killed
// node dead. It reports the simulated detection times, false deaths and
// messages. Each member lists every member, so memory grows as N².
//
// # Figures
//
// Measured with `go test ./dht/sim -run TestScale -v -scale.nodes N
// -scale.warm -scale.churn 0.1 -scale.periods P` (scale_test.go; `ringkv
// sim` runs the same), GOGC=50, one vnode, r=8, p=4, Alpha 3, cache 1024,
// 10,000 lookups per phase, on 2 shared cores:
//
//	nodes  ½log2N  cold mean/p99  warm mean/p99  churn ok / correct  table mean/max  wall    peak RSS
//	10^3   4.98    3.51 / 6       1.00 / 1       100%   / 100%       217 / 362 *     7 s     0.1 GB
//	10^4   6.64    4.98 / 8       2.31 / 4 **    100%   / 99.98%     112 / 329 *     28 s    0.5 GB
//	10^5   8.30    6.89 / 11      3.89 / 7       99.99% / 99.89%     89 / 451 *      250 s   3.6 GB
//	10^6   9.97    8.77 / 13      5.82 / 10      99.98% / 99.29% *** 27 / 32         30 min  11.8 GB
//
//	*   after churn with caches on: cache entries from every asker; 15-27 peers cold.
//	**  1.00 / 1 with -scale.cache 10000 (the cache holds the cluster).
//	*** churn cache 0 (-scale.churncache 0): a million full caches would need 200 GB.
//
// The 10^6 run spends 36 s building, a minute on the cold and warm
// phases, and 13 minutes per churn period (100,000 joins and a million
// maintenance rounds). Membership (RunMembership, 2 or 3 nodes killed at once,
// DefaultLANConfig): every survivor declared them dead within 3.6 s
// (mean 3.3) at 100 nodes, 5.7 s (5.0) at 1,000 (105 s wall, 0.85 GB),
// 6.2 s (5.5) at 2,000 (613 s wall, 3.6 GB), no false deaths, ~11
// messages per node per second. The wall time grows faster than N²
// (membership samples its whole member list each probe and gossip round),
// so 10,000 nodes is out of reach of this machine.
package sim
