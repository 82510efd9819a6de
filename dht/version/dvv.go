package version

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/ringkv/ringkv/dht"
)

// Order is how two states relate causally.
type Order int

// Orders returned by Compare.
const (
	// Equal: both states have seen exactly the same writes.
	Equal Order = iota + 1
	// Before: the first state is older; the second has seen all it has and more.
	Before
	// After: the first state has seen all the second has and more.
	After
	// Concurrent: each state has seen a write the other has not.
	Concurrent
)

func (o Order) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("order(%d)", int(o))
}

// Canonical returns r in canonical form: versions sorted by (Actor, Counter)
// with one version per dot, empty values as nil; the context sorted by Actor
// with one entry per actor, no zero counters, and raised where needed to
// cover every sibling's dot. Two records describe the same state exactly when
// their canonical forms are equal, so canonical records encode to equal
// bytes. Two cases only corrupt or forged input produces are settled the
// same way on every replica: a version whose dot has counter 0 (counters
// start at 1) is dropped, and when a dot appears twice with different
// payloads the greater payload under a fixed total order is kept.
func Canonical(r dht.Record) dht.Record {
	vs := canonVersions(r.Versions)
	return dht.Record{
		Versions: vs,
		Context:  canonContext(r.Context, vs),
	}
}

// Identical reports whether a and b are the same state: equal canonical
// versions (dots and payloads, expiries included) and contexts.
func Identical(a, b dht.Record) bool {
	return sameState(Canonical(a), Canonical(b))
}

// Update applies a client write at the coordinating replica whose actor ID
// is actor and returns the new local state. local is the replica's current
// record (the zero Record if it has none), clientCtx is the causal context
// the client read (nil for a blind write), v carries the write's Value,
// Tombstone, Timestamp, WriteID and ExpiresAt (its Dot is ignored), and now
// is the coordinator's clock in unix nanoseconds.
//
// The new version gets the dot (actor, max(local.Context[actor],
// clientCtx[actor]) + 1). Siblings of local covered by clientCtx are dropped
// (the client saw them and writes over them), and so are siblings that are
// dead at now (tombstones and expired values: nothing reads them, and the
// new context still covers them, so merges drop them everywhere); the live
// others stay as concurrent siblings. The new context is the join of both
// contexts with actor's entry raised to the new counter. The result
// descends local.
//
// A write whose WriteID a sibling of local already carries is a retry of
// a write this replica applied: Update returns local unchanged.
//
// Counters saturate at math.MaxUint64; only corrupt peer data can get there
// (DecodeContext bounds client counters by MaxCounter), and then the new
// write reuses a dot and may be taken for one already seen.
func Update(local dht.Record, clientCtx []dht.Dot, v dht.Version, actor uint64, now int64) dht.Record {
	l := Canonical(local)
	if v.WriteID != 0 {
		for _, s := range l.Versions {
			if s.WriteID == v.WriteID {
				return l // a retry of a write this replica already applied
			}
		}
	}
	cc := canonContext(clientCtx, nil)
	counter := max(counterOf(l.Context, actor), counterOf(cc, actor))
	if counter < math.MaxUint64 {
		counter++
	}
	v.Dot = dht.Dot{Actor: actor, Counter: counter}
	if len(v.Value) == 0 {
		v.Value = nil
	}

	vs := make([]dht.Version, 0, len(l.Versions)+1)
	for _, s := range l.Versions {
		if !covered(cc, s.Dot) && s.Dot != v.Dot && s.LiveAt(now) {
			vs = append(vs, s)
		}
	}
	vs = append(vs, v)
	slices.SortFunc(vs, func(x, y dht.Version) int { return cmpDot(x.Dot, y.Dot) })

	ctx := joinContext(l.Context, cc)
	ctx = joinContext(ctx, []dht.Dot{v.Dot})
	return dht.Record{Versions: vs, Context: ctx}
}

// UpdateLWW applies a client write as Update does, for clusters in
// last-writer-wins mode: the new version supersedes every version local
// holds, whatever clientCtx covers, and its Timestamp is raised above the
// newest of them if the coordinator's clock is behind (a clock stepped
// back, or skew between coordinators), so that a write always wins over
// what its coordinator held. Versions other replicas hold that local does
// not stay concurrent siblings; ResolveLWW picks among them when the key
// is read, and merges keep them as Merge always does, so replicas converge
// whatever the order their writes arrive in.
func UpdateLWW(local dht.Record, clientCtx []dht.Dot, v dht.Version, actor uint64, now int64) dht.Record {
	l := Canonical(local)
	for _, s := range l.Versions {
		if s.Timestamp >= v.Timestamp && s.Timestamp < math.MaxInt64 {
			v.Timestamp = s.Timestamp + 1
		}
	}
	// Update returns l unchanged for a retry of a write l already holds.
	return Update(l, joinContext(l.Context, canonContext(clientCtx, nil)), v, actor, now)
}

// Merge joins the states of two replicas of one key. A sibling of a is kept
// unless b's context covers it and b does not hold it (b saw it overwritten),
// and vice versa; the context is the pointwise maximum. Merge is
// commutative, associative and idempotent (Merge(a, a) is Canonical(a)), and
// its output is canonical. Expiry is a property of each version, so it
// merges with the version and needs no rule of its own.
func Merge(a, b dht.Record) dht.Record {
	ca, cb := Canonical(a), Canonical(b)
	return dht.Record{
		Versions: dedupeWrites(joinVersions(ca, cb)),
		Context:  joinContext(ca.Context, cb.Context),
	}
}

// joinVersions walks both canonical version lists in dot order.
func joinVersions(a, b dht.Record) []dht.Version {
	av, bv := a.Versions, b.Versions
	out := make([]dht.Version, 0, len(av)+len(bv))
	i, j := 0, 0
	for i < len(av) || j < len(bv) {
		switch {
		case j == len(bv) || (i < len(av) && cmpDot(av[i].Dot, bv[j].Dot) < 0):
			if !covered(b.Context, av[i].Dot) {
				out = append(out, av[i])
			}
			i++
		case i == len(av) || cmpDot(bv[j].Dot, av[i].Dot) < 0:
			if !covered(a.Context, bv[j].Dot) {
				out = append(out, bv[j])
			}
			j++
		default: // the same dot on both sides: the same write
			if cmpPayload(av[i], bv[j]) >= 0 {
				out = append(out, av[i])
			} else {
				out = append(out, bv[j])
			}
			i++
			j++
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Compare orders a and b by the writes they have seen: Before means b
// descends a (merging a into b changes nothing), After the reverse, Equal
// both, Concurrent neither. It looks at contexts and dots only; payloads do
// not take part.
func Compare(a, b dht.Record) Order {
	ca, cb := Canonical(a), Canonical(b)
	ab, ba := precedes(ca, cb), precedes(cb, ca)
	switch {
	case ab && ba:
		return Equal
	case ab:
		return Before
	case ba:
		return After
	}
	return Concurrent
}

// Descends reports whether a has seen everything b has: Merge(a, b) has the
// same versions and context as a.
func Descends(a, b dht.Record) bool {
	return precedes(Canonical(b), Canonical(a))
}

// precedes reports whether canonical a <= canonical b in the merge order:
// b's context covers a's, and every sibling of b that a has seen is also a
// sibling of a (a did not see it overwritten).
func precedes(a, b dht.Record) bool {
	for _, d := range a.Context {
		if d.Counter > counterOf(b.Context, d.Actor) {
			return false
		}
	}
	for _, v := range b.Versions {
		if covered(a.Context, v.Dot) && !hasDot(a.Versions, v.Dot) {
			return false
		}
	}
	return true
}

// Live returns r's siblings that are live at now (unix nanoseconds): not
// tombstones and not expired, in canonical order.
func Live(r dht.Record, now int64) []dht.Version {
	var out []dht.Version
	for _, v := range canonVersions(r.Versions) {
		if v.LiveAt(now) {
			out = append(out, v)
		}
	}
	return out
}

// DiedBy reports whether r has read as deleted since t (unix nanoseconds)
// or earlier: each of its versions (in last-writer-wins mode, the one
// ResolveLWW shows) is a tombstone written at or before t or a value that
// expired at or before t. A record with a context and no version at all
// (earlier releases' last-writer-wins merges could leave one) has always
// read as deleted; the empty record has never been written. Tombstone
// collection purges such records once t is a grace period ago.
func DiedBy(r dht.Record, t int64, lww bool) bool {
	if len(r.Versions) == 0 {
		return len(r.Context) > 0
	}
	vs := r.Versions
	if lww {
		vs = ResolveLWW(r).Versions
	}
	for _, v := range vs {
		if at, ok := v.DiedAt(); !ok || at > t {
			return false
		}
	}
	return true
}

// ResolveLWW keeps only the sibling with the greatest (Timestamp, Actor,
// Counter), which may be a tombstone or an expired value; the context is
// unchanged. It is how a cluster in last-writer-wins mode presents a key
// to a reader: the stored records keep their siblings, so that merges stay
// a semilattice (dropping the losers while keeping their dots in the
// context does not commute with merges once timestamps go against
// causality), and UpdateLWW drops them at the next write.
func ResolveLWW(r dht.Record) dht.Record {
	c := Canonical(r)
	if len(c.Versions) <= 1 {
		return c
	}
	best := c.Versions[0]
	for _, v := range c.Versions[1:] {
		if v.Timestamp > best.Timestamp || (v.Timestamp == best.Timestamp && cmpDot(v.Dot, best.Dot) > 0) {
			best = v
		}
	}
	c.Versions = []dht.Version{best}
	return c
}

// canonVersions sorts a copy of vs by dot and keeps one version per dot, the
// one with the greatest payload.
func canonVersions(vs []dht.Version) []dht.Version {
	if len(vs) == 0 {
		return nil
	}
	out := slices.Clone(vs)
	slices.SortFunc(out, func(x, y dht.Version) int {
		if c := cmpDot(x.Dot, y.Dot); c != 0 {
			return c
		}
		return cmpPayload(x, y)
	})
	n := 0
	for i := range out {
		if out[i].Dot.Counter == 0 {
			continue
		}
		if len(out[i].Value) == 0 {
			out[i].Value = nil
		}
		if n > 0 && out[n-1].Dot == out[i].Dot {
			out[n-1] = out[i] // sorted ascending: the later payload is greater
			continue
		}
		out[n] = out[i]
		n++
	}
	if n == 0 {
		return nil
	}
	return dedupeWrites(out[:n])
}

// dedupeWrites keeps one version per client write: when a coordinator's
// answer was lost and the client's write was retried through another
// replica, the same write got two dots. Versions sharing a non-zero
// WriteID are one write; the one with the smallest dot stays (vs is
// sorted by dot), and the context still covers the other dot.
func dedupeWrites(vs []dht.Version) []dht.Version {
	dup := false
	for i := range vs {
		for j := 0; j < i && !dup; j++ {
			dup = vs[i].WriteID != 0 && vs[i].WriteID == vs[j].WriteID
		}
	}
	if !dup {
		return vs
	}
	seen := make(map[uint64]bool, len(vs))
	n := 0
	for _, v := range vs {
		if v.WriteID != 0 {
			if seen[v.WriteID] {
				continue
			}
			seen[v.WriteID] = true
		}
		vs[n] = v
		n++
	}
	return vs[:n]
}

// cmpDot orders dots by (Actor, Counter).
func cmpDot(a, b dht.Dot) int {
	if c := cmp.Compare(a.Actor, b.Actor); c != 0 {
		return c
	}
	return cmp.Compare(a.Counter, b.Counter)
}

// cmpPayload is a total order on what a version carries besides its dot.
// It only decides between two versions that claim the same dot.
func cmpPayload(a, b dht.Version) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	if a.Tombstone != b.Tombstone {
		if a.Tombstone {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.ExpiresAt, b.ExpiresAt); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value)
}

// hasDot reports whether sorted versions vs contain dot d.
func hasDot(vs []dht.Version, d dht.Dot) bool {
	_, ok := slices.BinarySearchFunc(vs, d, func(v dht.Version, d dht.Dot) int { return cmpDot(v.Dot, d) })
	return ok
}

// sameState reports whether two canonical records have equal versions
// (dots and payloads) and contexts.
func sameState(a, b dht.Record) bool {
	if len(a.Versions) != len(b.Versions) || !slices.Equal(a.Context, b.Context) {
		return false
	}
	for i := range a.Versions {
		x, y := a.Versions[i], b.Versions[i]
		if x.Dot != y.Dot || cmpPayload(x, y) != 0 {
			return false
		}
	}
	return true
}
