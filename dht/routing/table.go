package routing

import (
	"cmp"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// maxPending is how many observed cache-only peers may wait to be sorted
// into the local ring before Observe rebuilds it.
const maxPending = 32

// entry is one known peer in the routing table.
type entry struct {
	rec        *peerRec
	pinned     bool   // in a successor list, a predecessor or a finger
	prev, next *entry // LRU list; head is the most recently seen
}

// table is the bounded routing state of one node: every known peer, an LRU
// order over them, and the local ring built from them. Peers that hold a
// structural place (successor lists, predecessors, fingers; see
// view.structural) are pinned; of the others the CacheSize most recently
// seen are kept. Its methods need the Router's lock.
//
// Memory matters (the simulator keeps a million tables): entries is a
// sorted slice rather than a map, and about 200 bytes per peer are spent
// in all at one token per peer.
type table struct {
	vnodes, succs, preds, cache int
	self                        *peerRec

	entries    []*entry // sorted by peer ID
	head, tail *entry
	added      []*peerRec // observed since the last rebuild
	dirty      bool       // the next read must rebuild: a removal, or an addition in watch
	view       *view      // current snapshot; never nil
	// watch holds the arcs where a new token changes a structural place:
	// (predecessor, end of successor list] of each own token and
	// [target, owner] of the fingers beyond them, as of the last rebuild.
	// A peer with no token in them can only be a cache entry, which the
	// view may learn of lazily. watchAll: the view is too small to tell.
	watch    []ring.Arc
	watchAll bool
}

func newTable(cfg Config, self *peerRec) *table {
	t := &table{
		vnodes: cfg.VNodes,
		succs:  cfg.Successors,
		preds:  cfg.Predecessors,
		cache:  cfg.CacheSize,
		self:   self,
		// Until the first rebuild, every peer may be structural.
		watchAll: true,
	}
	t.view = &view{self: self, nodes: 1, zones: 1, toks: make([]vtok, len(self.toks))}
	for i, tok := range self.toks {
		t.view.toks[i] = vtok{tok: tok, rec: self}
	}
	slices.SortFunc(t.view.toks, compareVtok)
	return t
}

// find returns the index of id in entries, or where it would go.
func (t *table) find(id peer.ID) (int, bool) {
	return slices.BinarySearchFunc(t.entries, id, func(e *entry, id peer.ID) int { return cmp.Compare(e.rec.ID, id) })
}

// lookup returns the entry of a known peer.
func (t *table) lookup(id peer.ID) (*entry, bool) {
	if i, ok := t.find(id); ok {
		return t.entries[i], true
	}
	return nil, false
}

// size returns the number of known peers.
func (t *table) size() int { return len(t.entries) }

// observe adds rec or refreshes the peer it describes, and marks it most
// recently seen. It reports whether the peer set or a peer's record changed.
func (t *table) observe(rec *peerRec) bool {
	if rec.ID == t.self.ID {
		return false
	}
	i, ok := t.find(rec.ID)
	var e *entry
	if ok {
		e = t.entries[i]
	}
	switch {
	case ok && (e.rec == rec || e.rec.same(rec.Peer)):
		t.touch(e)
		return false
	case ok:
		t.dropRec(e.rec)
		e.rec = rec
		t.touch(e)
	case t.cache == 0 && !t.watched(rec):
		return false // it could only be a cache entry, and there is no cache
	default:
		e = &entry{rec: rec}
		t.entries = slices.Insert(t.entries, i, e)
		t.pushHead(e)
	}
	rec.gone = false
	t.added = append(t.added, rec)
	if t.watched(rec) {
		t.dirty = true
	}
	if len(t.added) >= maxPending {
		t.rebuild()
	}
	return true
}

// watched reports whether one of rec's tokens falls in a watched arc: the
// peer may take a structural place, so reads must see it at once.
func (t *table) watched(rec *peerRec) bool {
	if t.watchAll {
		return true
	}
	for _, tok := range rec.toks {
		for _, a := range t.watch {
			if ring.Contains(a, tok) {
				return true
			}
		}
	}
	return false
}

// forget removes id and reports whether it was known.
func (t *table) forget(id peer.ID) bool {
	i, ok := t.find(id)
	if !ok {
		return false
	}
	e := t.entries[i]
	t.entries = slices.Delete(t.entries, i, i+1)
	t.unlink(e)
	t.dropRec(e.rec)
	return true
}

// dropRec takes rec's tokens out of the next view.
func (t *table) dropRec(rec *peerRec) {
	rec.gone = true
	t.dirty = true
}

// get returns the record of a known peer.
func (t *table) get(id peer.ID) (*peerRec, bool) {
	if e, ok := t.lookup(id); ok {
		return e.rec, true
	}
	return nil, false
}

// snapshot returns the current local ring, rebuilding it first if a peer
// left or one arrived that may take a structural place. Peers that can
// only be cache entries are sorted in lazily: at the latest when
// maxPending of them wait, or at the next full snapshot.
func (t *table) snapshot() *view {
	if t.dirty {
		t.rebuild()
	}
	return t.view
}

// fullSnapshot is snapshot with every pending peer sorted in and the cache
// bound enforced.
func (t *table) fullSnapshot() *view {
	if t.dirty || len(t.added) > 0 {
		t.rebuild()
	}
	return t.view
}

// rebuild merges the pending changes into a new view, recomputes which
// peers are pinned, and evicts the least recently seen unpinned peers
// beyond the cache size. It costs O(T + k log k) for T tokens and k new
// ones; evicting costs one more O(T) pass.
func (t *table) rebuild() {
	t.view = t.merged()
	// Drop the pointers too: a kept backing array would keep evicted
	// records alive.
	clear(t.added)
	if cap(t.added) > 32 {
		t.added = nil
	}
	t.added = t.added[:0]
	t.dirty = false
	if t.evict() > 0 {
		t.view = t.merged()
		t.dirty = false
	}
}

// merged returns the current view without the tokens of gone records and
// with those of added ones.
func (t *table) merged() *view {
	var add []vtok
	for _, r := range t.added {
		if r.gone {
			continue
		}
		for _, tok := range r.toks {
			add = append(add, vtok{tok: tok, rec: r})
		}
	}
	slices.SortFunc(add, compareVtok)
	old := t.view.toks
	out := make([]vtok, 0, len(old)+len(add))
	i, j := 0, 0
	for i < len(old) || j < len(add) {
		var x vtok
		if j == len(add) || (i < len(old) && compareVtok(old[i], add[j]) <= 0) {
			x = old[i]
			i++
			if x.rec.gone {
				continue
			}
		} else {
			x = add[j]
			j++
		}
		// A record observed, forgotten and observed again before a rebuild
		// is both in old and in add.
		if n := len(out); n > 0 && out[n-1] == x {
			continue
		}
		out = append(out, x)
	}
	return &view{self: t.self, toks: out, nodes: len(t.entries) + 1, zones: t.zoneCount()}
}

// zoneCount returns the number of distinct zones among the node and its
// peers.
func (t *table) zoneCount() int {
	zones := []string{t.self.Zone}
	for _, e := range t.entries {
		if !slices.Contains(zones, e.rec.Zone) {
			zones = append(zones, e.rec.Zone)
		}
	}
	return len(zones)
}

// evict marks the structural peers of the current view as pinned and
// removes the least recently seen unpinned peers until at most cache of
// them remain. It returns how many it removed.
func (t *table) evict() int {
	for _, e := range t.entries {
		e.pinned = false
	}
	pinned := 0
	t.watch, t.watchAll = t.view.structural(t.succs, t.preds, t.watch[:0], func(r *peerRec) {
		if e, ok := t.lookup(r.ID); ok && !e.pinned {
			e.pinned = true
			pinned++
		}
	})
	if cap(t.watch) > 2*len(t.watch) {
		t.watch = slices.Clip(slices.Clone(t.watch))
	}
	excess := len(t.entries) - pinned - t.cache
	removed := 0
	for e := t.tail; e != nil && removed < excess; {
		prev := e.prev
		if !e.pinned {
			t.unlink(e)
			t.dropRec(e.rec)
			removed++
		}
		e = prev
	}
	if removed > 0 {
		t.entries = slices.DeleteFunc(t.entries, func(e *entry) bool { return e.rec.gone })
		if cap(t.entries) > 2*len(t.entries)+16 {
			t.entries = slices.Clip(slices.Clone(t.entries))
		}
	}
	return removed
}

// peers returns every known peer.
func (t *table) peers() []Peer {
	out := make([]Peer, 0, len(t.entries))
	for e := t.head; e != nil; e = e.next {
		p := e.rec.Peer
		p.Addrs = slices.Clone(p.Addrs)
		out = append(out, p)
	}
	return out
}

// pinnedCount returns how many peers hold a structural place.
func (t *table) pinnedCount() int {
	n := 0
	for _, e := range t.entries {
		if e.pinned {
			n++
		}
	}
	return n
}

// maxTombstones bounds how many forgotten peers a node remembers.
const maxTombstones = 256

// tombstones remembers recently forgotten peers, so that answers of peers
// that have not noticed a death yet do not plant the dead peer again. It
// keeps the last maxTombstones, each for a timeout.
type tombstones struct {
	at    map[peer.ID]time.Time
	order []tombstone // oldest first
}

type tombstone struct {
	id peer.ID
	at time.Time
}

func (ts *tombstones) add(id peer.ID, now time.Time) {
	if ts.at == nil {
		ts.at = make(map[peer.ID]time.Time)
	}
	ts.at[id] = now
	ts.order = append(ts.order, tombstone{id: id, at: now})
	if len(ts.order) > maxTombstones {
		old := ts.order[0]
		if at, ok := ts.at[old.id]; ok && at.Equal(old.at) {
			delete(ts.at, old.id)
		}
		ts.order = slices.Delete(ts.order, 0, 1)
	}
}

// has reports whether id was forgotten less than ttl before now.
func (ts *tombstones) has(id peer.ID, now time.Time, ttl time.Duration) bool {
	at, ok := ts.at[id]
	return ok && now.Sub(at) < ttl
}

func (ts *tombstones) clear(id peer.ID) {
	if len(ts.at) > 0 {
		delete(ts.at, id)
	}
}

// LRU list.

func (t *table) touch(e *entry) {
	if t.head == e {
		return
	}
	t.unlink(e)
	t.pushHead(e)
}

func (t *table) pushHead(e *entry) {
	e.prev, e.next = nil, t.head
	if t.head != nil {
		t.head.prev = e
	}
	t.head = e
	if t.tail == nil {
		t.tail = e
	}
}

func (t *table) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if t.head == e {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if t.tail == e {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
