// Package memnet is an in-memory network of dht.Transport endpoints for
// tests and the simulator.
//
// Model: a Network holds one Endpoint per peer ID. Endpoint.Call runs the
// target's handler synchronously, in the caller's goroutine, with the
// caller's context; there are no goroutines, no queues and no real time of
// its own. A call "reaches" its target unless the target is unknown, either
// side is killed, the two are in different partition groups, or the
// direction is blocked. With Options.Clone on (the default) every request
// and response is marshalled and unmarshalled, as the wire would, so a
// handler can never alias the caller's message and oversized messages fail
// with dht.ErrMessageTooLarge.
//
// Contract with callers:
//   - Call fails with an error wrapping dht.ErrUnreachable when the target is
//     unreachable (see above), has no handler for the protocol, or when ctx
//     ends before the call or before the answer is back; handler errors and
//     handler panics come back as *dht.RemoteError, never as a crash. The
//     failures before the handler runs also wrap dht.ErrNotSent; an answer
//     lost after it ran does not.
//   - Fault helpers (Kill, Revive, Partition, Heal, Block, Unblock) take
//     effect for calls that start after they return. A call already inside a
//     handler finishes.
//   - Everything is safe for concurrent use; the Call path takes only read
//     locks and atomics.
package memnet

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// Options configure a Network.
type Options struct {
	// Clone marshals and unmarshals every request and response, as the wire
	// would. Default true. The simulator turns it off for speed; handlers
	// then share the caller's request message and must not keep or mutate
	// it.
	Clone bool
	// MaxMessageSize bounds one marshalled message in bytes when Clone is
	// on. Default 16 MiB, enough for a full push-pull of ~100k members;
	// 0 means no bound.
	MaxMessageSize int
}

// DefaultOptions returns Clone on and a 16 MiB message bound.
func DefaultOptions() Options {
	return Options{Clone: true, MaxMessageSize: 16 << 20}
}

// Network is a set of endpoints and the faults between them.
type Network struct {
	opts Options

	mu        sync.RWMutex
	endpoints map[peer.ID]*Endpoint
	killed    map[peer.ID]bool
	group     map[peer.ID]int // partition group; nil when not partitioned
	blocked   map[link]bool   // one-directional drops

	calls      atomic.Uint64
	failures   atomic.Uint64
	protoCalls sync.Map // dht.Protocol -> *atomic.Uint64
}

// link is a directed pair of peers.
type link struct{ from, to peer.ID }

// New returns an empty network.
func New(opts Options) *Network {
	return &Network{
		opts:      opts,
		endpoints: make(map[peer.ID]*Endpoint),
		killed:    make(map[peer.ID]bool),
		blocked:   make(map[link]bool),
	}
}

// Endpoint creates or returns the endpoint for id.
func (n *Network) Endpoint(id peer.ID) *Endpoint {
	n.mu.RLock()
	ep, ok := n.endpoints[id]
	n.mu.RUnlock()
	if ok {
		return ep
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep, ok := n.endpoints[id]; ok {
		return ep
	}
	ep = &Endpoint{
		net:      n,
		id:       id,
		handlers: make(map[dht.Protocol]handlerEntry),
		addrs:    make(map[peer.ID][]string),
	}
	n.endpoints[id] = ep
	return ep
}

// Peers returns the IDs of every endpoint, sorted.
func (n *Network) Peers() []peer.ID {
	n.mu.RLock()
	ids := make([]peer.ID, 0, len(n.endpoints))
	for id := range n.endpoints {
		ids = append(ids, id)
	}
	n.mu.RUnlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Kill makes id unreachable, and makes every call it places fail, until
// Revive. Its handlers stay registered. Killing an unknown ID is allowed.
func (n *Network) Kill(id peer.ID) {
	n.mu.Lock()
	n.killed[id] = true
	n.mu.Unlock()
}

// Revive undoes Kill.
func (n *Network) Revive(id peer.ID) {
	n.mu.Lock()
	delete(n.killed, id)
	n.mu.Unlock()
}

// Alive reports whether id has an endpoint and is not killed.
func (n *Network) Alive(id peer.ID) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.endpoints[id]
	return ok && !n.killed[id]
}

// Partition splits the network: nodes in different groups cannot reach each
// other. Every node not listed in any group belongs to one more, implicit
// group of "the rest", so Partition(minority) cuts a minority off from
// everyone else. A node listed in several groups stays in the last one. A
// new Partition replaces the previous one; Heal removes it.
func (n *Network) Partition(groups ...[]peer.ID) {
	g := make(map[peer.ID]int)
	for i, ids := range groups {
		for _, id := range ids {
			g[id] = i + 1 // 0 is the implicit group of unlisted nodes
		}
	}
	n.mu.Lock()
	n.group = g
	n.mu.Unlock()
}

// Heal removes the partition and every Block. Killed nodes stay killed.
func (n *Network) Heal() {
	n.mu.Lock()
	n.group = nil
	n.blocked = make(map[link]bool)
	n.mu.Unlock()
}

// Block drops every message from a to b (one direction): a's calls to b
// fail without running b's handler, and b's calls to a run a's handler but
// lose the answer, failing as unreachable.
func (n *Network) Block(a, b peer.ID) {
	n.mu.Lock()
	n.blocked[link{a, b}] = true
	n.mu.Unlock()
}

// Unblock undoes Block(a, b).
func (n *Network) Unblock(a, b peer.ID) {
	n.mu.Lock()
	delete(n.blocked, link{a, b})
	n.mu.Unlock()
}

// Stats returns the number of calls placed and how many of them returned an
// error (unreachable, too large, remote error).
func (n *Network) Stats() (calls, failures uint64) {
	return n.calls.Load(), n.failures.Load()
}

// ProtocolCalls returns the number of calls placed on protocol p.
func (n *Network) ProtocolCalls(p dht.Protocol) uint64 {
	if c, ok := n.protoCalls.Load(p); ok {
		return c.(*atomic.Uint64).Load()
	}
	return 0
}

// CallsByProtocol returns the number of calls placed per protocol.
func (n *Network) CallsByProtocol() map[dht.Protocol]uint64 {
	out := make(map[dht.Protocol]uint64)
	n.protoCalls.Range(func(k, v any) bool {
		out[k.(dht.Protocol)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func (n *Network) countCall(p dht.Protocol) {
	n.calls.Add(1)
	c, ok := n.protoCalls.Load(p)
	if !ok {
		c, _ = n.protoCalls.LoadOrStore(p, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
}

// route is the reachability of one call, decided under the read lock.
type route struct {
	target    *Endpoint
	reason    string // why the request cannot go; "" when it can
	replyLost bool   // the answer direction is blocked
}

// route decides whether a call from -> to can be delivered.
func (n *Network) route(from, to peer.ID) route {
	n.mu.RLock()
	defer n.mu.RUnlock()
	ep, ok := n.endpoints[to]
	switch {
	case !ok:
		return route{reason: "unknown peer"}
	case n.killed[from]:
		return route{reason: "caller is killed"}
	case n.killed[to]:
		return route{reason: "peer is killed"}
	case n.group != nil && n.group[from] != n.group[to]:
		return route{reason: "partitioned"}
	case n.blocked[link{from, to}]:
		return route{reason: "link blocked"}
	}
	return route{target: ep, replyLost: n.blocked[link{to, from}]}
}
