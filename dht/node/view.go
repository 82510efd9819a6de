package node

import (
	"encoding/binary"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring"
)

type peerID = peer.ID

// tokenDigest is the token count and digest a member must gossip: the
// tokens are derived from its ID and capacity, so a peer cannot claim
// others.
func tokenDigest(id peer.ID, capacity float64, vnodes int) (int, uint64) {
	n := ring.TokenCount(capacity, vnodes)
	toks := ring.Tokens(id, n)
	b := make([]byte, 8*len(toks))
	for i, t := range toks {
		binary.BigEndian.PutUint64(b[8*i:], t)
	}
	return n, xxhash.Sum64(b)
}

// view is the node's placement knowledge, built from membership. It
// implements replica.View.
//
// Two rings are kept. The serving ring holds every member that owns data
// now: normal, leaving, suspect and dead members (a dead member keeps its
// tokens until it is reaped or leaves, and its arcs are served by
// fallbacks holding hints, as in Dynamo: a failure is not a departure).
// Joining members are left out until their data has arrived. The future
// ring is what the serving ring becomes once joins and leaves complete:
// joining members in, leaving ones out. Writes go to both.
type view struct {
	self   peer.ID
	n      int
	vnodes int

	mu      sync.RWMutex
	members map[peer.ID]dht.Member // guarded by mu
	serving *ring.Ring             // guarded by mu
	future  *ring.Ring             // guarded by mu
	alive   map[peer.ID]bool       // guarded by mu
	moving  bool                   // a join or leave is in progress; guarded by mu
}

func newView(self dht.Member, n, vnodes int) *view {
	v := &view{self: self.ID, n: n, vnodes: vnodes, members: map[peer.ID]dht.Member{}}
	v.update(self)
	return v
}

// update records a member's new state and rebuilds the rings when its
// placement changed. It reports whether it did.
func (v *view) update(m dht.Member) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, had := v.members[m.ID]
	v.members[m.ID] = m
	if had && old.State == m.State && old.Zone == m.Zone && old.Capacity == m.Capacity {
		return false
	}
	v.rebuildLocked()
	return true
}

// remove forgets a reaped member.
func (v *view) remove(id peer.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.members[id]; ok && id != v.self {
		delete(v.members, id)
		v.rebuildLocked()
	}
}

func (v *view) rebuildLocked() {
	var serving, future []ring.Node
	v.alive = make(map[peer.ID]bool, len(v.members))
	v.moving = false
	for id, m := range v.members {
		rn := ring.Node{ID: id, Zone: m.Zone, Capacity: m.Capacity}
		switch m.State {
		case dht.StateNormal, dht.StateSuspect, dht.StateDead:
			serving = append(serving, rn)
			future = append(future, rn)
		case dht.StateLeaving:
			serving = append(serving, rn)
			v.moving = true
		case dht.StateJoining:
			future = append(future, rn)
			v.moving = true
		}
		v.alive[id] = id == v.self || m.State == dht.StateNormal || m.State == dht.StateJoining || m.State == dht.StateLeaving
	}
	v.serving = ring.New(serving, v.vnodes)
	v.future = ring.New(future, v.vnodes)
}

func (v *view) rings() (serving, future *ring.Ring, moving bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.serving, v.future, v.moving
}

// Natural is the preference list on the serving ring.
func (v *view) Natural(pos uint64) []peer.ID {
	s, _, _ := v.rings()
	return s.PreferenceList(pos, v.n)
}

// Pending lists the future ring's replicas of pos that are not natural.
func (v *view) Pending(pos uint64) []peer.ID {
	s, f, moving := v.rings()
	if !moving {
		return nil
	}
	nat := s.PreferenceList(pos, v.n)
	var out []peer.ID
	for _, id := range f.PreferenceList(pos, v.n) {
		if !containsID(nat, id) {
			out = append(out, id)
		}
	}
	return out
}

// Walk visits the serving ring clockwise from pos.
func (v *view) Walk(pos uint64, fn func(peer.ID) bool) {
	s, _, _ := v.rings()
	s.Walk(pos, fn)
}

// Alive reports whether id is a member the failure detector trusts.
func (v *view) Alive(id peer.ID) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.alive[id]
}

// Down reports whether id is dead, left or unknown: not even a suspect.
func (v *view) Down(id peer.ID) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if id == v.self {
		return false
	}
	m, ok := v.members[id]
	return !ok || !m.State.Live()
}

// member returns what the view knows of id.
func (v *view) member(id peer.ID) (dht.Member, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.members[id]
	return m, ok
}

func containsID(ids []peer.ID, id peer.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
