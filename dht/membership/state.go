package membership

import (
	"cmp"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// memberState is the local record of one member.
type memberState struct {
	dht.Member
	tokenCount  uint32
	tokenDigest uint64
	changed     time.Time  // local time State last changed
	susp        *suspicion // set while State is Suspect
}

// public returns a copy safe to hand out.
func (ms *memberState) public() dht.Member {
	m := ms.Member
	m.Addrs = slices.Clone(m.Addrs)
	return m
}

// update is one assertion about a member, local or received.
type update struct {
	member      dht.Member // LastHeard is not used
	tokenCount  uint32
	tokenDigest uint64
	from        peer.ID // who claimed a suspect or dead state
}

func isAliveState(s dht.State) bool {
	return s == dht.StateJoining || s == dht.StateNormal || s == dht.StateLeaving
}

// rank orders states at one incarnation; the higher rank wins.
func rank(s dht.State) int {
	switch s {
	case dht.StateSuspect:
		return 1
	case dht.StateDead:
		return 2
	case dht.StateLeft:
		return 3
	}
	return 0
}

// updateOf is the assertion that ms is as recorded, made by from.
func updateOf(ms *memberState, from peer.ID) update {
	u := update{member: ms.Member, tokenCount: ms.tokenCount, tokenDigest: ms.tokenDigest, from: from}
	u.member.LastHeard = time.Time{}
	return u
}

func (m *Memberlist) selfUpdateLocked() update {
	return updateOf(m.members[m.self], m.self)
}

// applyLocked merges one update into the view, with SWIM precedence, and
// queues the resulting events and broadcasts.
func (m *Memberlist) applyLocked(u update, now time.Time) {
	id := u.member.ID
	if id == m.self {
		m.applySelfLocked(u)
		return
	}
	cur, ok := m.members[id]
	if !ok {
		m.addLocked(u, now)
		return
	}
	inc, st := u.member.Incarnation, u.member.State
	switch {
	case inc > cur.Incarnation:
	case inc == cur.Incarnation && rank(st) > rank(cur.State):
	case inc == cur.Incarnation && st == dht.StateSuspect && cur.State == dht.StateSuspect:
		// Lifeguard: an independent suspicion shortens the timeout and
		// is passed on so that others count it too.
		if cur.susp != nil && cur.susp.confirm(u.from) {
			m.queue.push(updateOf(cur, u.from))
			m.kick()
		}
		return
	default:
		if (st == dht.StateSuspect || st == dht.StateDead) && inc < cur.Incarnation && cur.State.Live() {
			// A stale accusation: the member refuted it, but whoever made it
			// may not know. Probe the member next rather than up to N
			// intervals later, so a real failure is caught at the current
			// incarnation.
			m.probeNextLocked(id)
		}
		return
	}
	m.acceptLocked(cur, u, now)
}

// probeNextLocked makes id the next probe target.
func (m *Memberlist) probeNextLocked(id peer.ID) {
	if m.probeIdx < len(m.probeList) && m.probeList[m.probeIdx] == id {
		return
	}
	m.probeList = slices.Insert(m.probeList, min(m.probeIdx, len(m.probeList)), id)
}

// addLocked adds a member learned from an alive-state update. Suspect, dead
// and left claims about unknown members are dropped: they can only concern
// a member that was reaped or never joined.
func (m *Memberlist) addLocked(u update, now time.Time) {
	if !isAliveState(u.member.State) {
		return
	}
	ms := &memberState{Member: u.member, tokenCount: u.tokenCount, tokenDigest: u.tokenDigest, changed: now}
	ms.Addrs = slices.Clone(u.member.Addrs)
	ms.LastHeard = now
	m.members[ms.ID] = ms
	m.ids = append(m.ids, ms.ID)
	i := m.rng.IntN(len(m.probeList) + 1)
	m.probeList = slices.Insert(m.probeList, i, ms.ID)
	if len(ms.Addrs) > 0 {
		m.tr.AddAddrs(ms.ID, ms.Addrs)
	}
	m.pending = append(m.pending, Event{Member: ms.public()})
	m.queue.push(updateOf(ms, ""))
	m.log.Debug("member added", "peer", ms.ID.String(), "state", ms.State.String(), "inc", ms.Incarnation)
}

// acceptLocked replaces cur's state by u, which won precedence.
func (m *Memberlist) acceptLocked(cur *memberState, u update, now time.Time) {
	prev := cur.Member
	if u.member.Incarnation > cur.Incarnation {
		// A newer incarnation carries the member's current details.
		cur.Addrs = slices.Clone(u.member.Addrs)
		cur.Zone = u.member.Zone
		cur.Capacity = u.member.Capacity
		cur.StorageUsed = u.member.StorageUsed
		cur.tokenCount, cur.tokenDigest = u.tokenCount, u.tokenDigest
	}
	cur.Incarnation = u.member.Incarnation
	cur.State = u.member.State
	cur.LastHeard = now
	if cur.State != prev.State {
		cur.changed = now
	}
	m.setSuspicionLocked(cur, prev.State, u.from, now)
	switch cur.State {
	case dht.StateDead, dht.StateLeft:
		m.departed[cur.ID] = struct{}{}
	default:
		delete(m.departed, cur.ID)
	}
	if !slices.Equal(prev.Addrs, cur.Addrs) && len(cur.Addrs) > 0 {
		m.tr.AddAddrs(cur.ID, cur.Addrs)
	}
	if prev.State != cur.State || prev.Zone != cur.Zone || prev.Capacity != cur.Capacity ||
		!slices.Equal(prev.Addrs, cur.Addrs) {
		m.pending = append(m.pending, Event{Member: cur.public(), Prev: prev.State})
		m.log.Debug("member changed", "peer", cur.ID.String(), "state", cur.State.String(),
			"prev", prev.State.String(), "inc", cur.Incarnation)
	}
	m.queue.push(updateOf(cur, u.from))
}

// setSuspicionLocked starts, keeps or clears cur's suspicion after cur
// changed from prev.
func (m *Memberlist) setSuspicionLocked(cur *memberState, prev dht.State, from peer.ID, now time.Time) {
	if cur.State != dht.StateSuspect {
		cur.susp = nil
		delete(m.suspects, cur.ID)
		return
	}
	if prev == dht.StateSuspect && cur.susp != nil {
		// Higher incarnation, still suspect: a new suspicion.
		cur.susp = nil
	}
	n := m.liveCountLocked()
	k := m.cfg.SuspicionMult - 2
	if n-2 < k {
		k = 0
	}
	lo := suspicionTimeout(m.cfg.SuspicionMult, n, m.cfg.ProbeInterval)
	hi := lo * time.Duration(m.cfg.SuspicionMaxTimeoutMult)
	cur.susp = newSuspicion(from, k, lo, hi, now)
	m.suspects[cur.ID] = struct{}{}
	m.kick()
}

// applySelfLocked handles a claim about the local node: it refutes
// suspicion, death and stale claims by raising its incarnation above them.
func (m *Memberlist) applySelfLocked(u update) {
	me := m.members[m.self]
	if u.member.Incarnation < me.Incarnation {
		return
	}
	switch {
	case m.left:
		if u.member.State == dht.StateLeft && u.member.Incarnation == me.Incarnation {
			return
		}
	case u.member.State == dht.StateSuspect || u.member.State == dht.StateDead:
		m.adjustHealthLocked(1)
		m.met.refutes.Inc()
		m.log.Debug("refuting", "claim", u.member.State.String(), "inc", u.member.Incarnation,
			"by", u.from.String())
	case u.member.State == dht.StateLeft:
	case u.member.Incarnation == me.Incarnation && sameDetails(u.member, me.Member):
		return
	}
	me.Incarnation = u.member.Incarnation + 1
	m.queue.push(m.selfUpdateLocked())
}

func sameDetails(a, b dht.Member) bool {
	return a.State == b.State && a.Zone == b.Zone && a.Capacity == b.Capacity &&
		a.StorageUsed == b.StorageUsed && slices.Equal(a.Addrs, b.Addrs)
}

// suspectLocked raises the local suspicion that id failed a probe at
// incarnation inc.
func (m *Memberlist) suspectLocked(id peer.ID, inc uint64, now time.Time) {
	cur, ok := m.members[id]
	if !ok || cur.Incarnation != inc || !cur.State.Live() {
		return
	}
	u := updateOf(cur, m.self)
	u.member.State = dht.StateSuspect
	m.applyLocked(u, now)
}

// expireLocked declares dead every suspect whose timeout passed, in ID
// order.
func (m *Memberlist) expireLocked(now time.Time) {
	var due []peer.ID
	for id := range m.suspects {
		if ms := m.members[id]; ms == nil || ms.susp == nil || !now.Before(ms.susp.deadline) {
			due = append(due, id)
		}
	}
	slices.Sort(due)
	for _, id := range due {
		delete(m.suspects, id)
		ms := m.members[id]
		if ms == nil || ms.State != dht.StateSuspect {
			continue
		}
		u := updateOf(ms, m.self)
		u.member.State = dht.StateDead
		m.met.deaths.Inc()
		m.log.Debug("declaring dead", "peer", id.String(), "inc", ms.Incarnation)
		m.applyLocked(u, now)
	}
}

// nextDeadlineLocked returns the earliest suspicion deadline, or the zero
// time.
func (m *Memberlist) nextDeadlineLocked() time.Time {
	var next time.Time
	for id := range m.suspects {
		if ms := m.members[id]; ms != nil && ms.susp != nil &&
			(next.IsZero() || ms.susp.deadline.Before(next)) {
			next = ms.susp.deadline
		}
	}
	return next
}

// reapLocked forgets dead and left members older than DeadReapTimeout.
func (m *Memberlist) reapLocked(now time.Time) {
	var due []peer.ID
	for id := range m.departed {
		if ms := m.members[id]; ms == nil || now.Sub(ms.changed) >= m.cfg.DeadReapTimeout {
			due = append(due, id)
		}
	}
	if len(due) == 0 {
		return
	}
	slices.Sort(due)
	for _, id := range due {
		delete(m.departed, id)
		delete(m.members, id)
		m.queue.drop(id)
	}
	m.ids = slices.DeleteFunc(m.ids, func(id peer.ID) bool { _, ok := m.members[id]; return !ok })
}

// heardLocked records that id was heard from directly.
func (m *Memberlist) heardLocked(id peer.ID, now time.Time) {
	if ms, ok := m.members[id]; ok {
		ms.LastHeard = now
	}
}

func (m *Memberlist) liveCountLocked() int {
	n := 0
	for _, ms := range m.members {
		if ms.State.Live() {
			n++
		}
	}
	return n
}

// kick wakes the timer loop; it never blocks.
func (m *Memberlist) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// sample returns up to k distinct members (not self) accepted by keep, in
// random order.
func (m *Memberlist) sampleLocked(k int, keep func(ms *memberState) bool) []*memberState {
	var cand []*memberState
	for _, id := range m.ids {
		if ms := m.members[id]; ms != nil && keep(ms) {
			cand = append(cand, ms)
		}
	}
	m.rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	if len(cand) > k {
		cand = cand[:k]
	}
	return cand
}

// sortedMembersLocked returns every member record, sorted by ID.
func (m *Memberlist) sortedMembersLocked() []*memberState {
	out := make([]*memberState, 0, len(m.members))
	for _, ms := range m.members {
		out = append(out, ms)
	}
	slices.SortFunc(out, func(a, b *memberState) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
