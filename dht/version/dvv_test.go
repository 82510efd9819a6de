package version

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/ringkv/ringkv/dht"
)

const (
	actorA uint64 = 0xA
	actorB uint64 = 0xB
	actorC uint64 = 0xC
)

// now0 is the coordinator clock the tests write at, unless they say.
const now0 int64 = 0

func put(v string, ts int64) dht.Version { return dht.Version{Value: []byte(v), Timestamp: ts} }

// putTTL is a value that dies at exp.
func putTTL(v string, ts, exp int64) dht.Version {
	return dht.Version{Value: []byte(v), Timestamp: ts, ExpiresAt: exp}
}

func del(ts int64) dht.Version { return dht.Version{Tombstone: true, Timestamp: ts} }

// values lists a record's siblings in canonical order; tombstones show as "-".
func values(r dht.Record) []string {
	var out []string
	for _, v := range Canonical(r).Versions {
		if v.Tombstone {
			out = append(out, "-")
			continue
		}
		out = append(out, string(v.Value))
	}
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// writeScenarios are the client-visible outcomes of writes and merges.
var writeScenarios = []struct {
	name     string
	run      func() dht.Record
	want     []string // siblings, any order; "-" is a tombstone
	wantLive []string
}{{
	name: "blind write over an existing value makes two siblings",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		return Update(r1, nil, put("v2", 2), actorA, now0)
	},
	want:     []string{"v1", "v2"},
	wantLive: []string{"v1", "v2"},
}, {
	name: "write with the read's context replaces",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		return Update(r1, r1.Context, put("v2", 2), actorA, now0)
	},
	want:     []string{"v2"},
	wantLive: []string{"v2"},
}, {
	name: "concurrent writes through different coordinators then merge are siblings",
	run: func() dht.Record {
		ra := Update(dht.Record{}, nil, put("va", 1), actorA, now0)
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB, now0)
		return Merge(ra, rb)
	},
	want:     []string{"va", "vb"},
	wantLive: []string{"va", "vb"},
}, {
	name: "merge of stale and fresh gives fresh",
	run: func() dht.Record {
		stale := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		fresh := Update(stale, stale.Context, put("v2", 2), actorA, now0)
		return Merge(stale, fresh)
	},
	want:     []string{"v2"},
	wantLive: []string{"v2"},
}, {
	name: "tombstone with context replaces the value",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		return Update(r1, r1.Context, del(2), actorA, now0)
	},
	want: []string{"-"},
}, {
	name: "concurrent delete and put are both kept, the put live",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		onB := Merge(dht.Record{}, r1)
		d := Update(r1, r1.Context, del(2), actorA, now0)
		p := Update(onB, onB.Context, put("v2", 2), actorB, now0)
		return Merge(d, p)
	},
	want:     []string{"-", "v2"},
	wantLive: []string{"v2"},
}, {
	name: "write with the context of a merged read resolves siblings",
	run: func() dht.Record {
		ra := Update(dht.Record{}, nil, put("va", 1), actorA, now0)
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB, now0)
		read := Merge(ra, rb)
		return Merge(Update(ra, read.Context, put("vc", 2), actorA, now0), rb)
	},
	want:     []string{"vc"},
	wantLive: []string{"vc"},
}, {
	name: "write with a stale context through another coordinator keeps the newer write",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
		r2 := Update(r1, r1.Context, put("v2", 2), actorA, now0)
		onB := Merge(dht.Record{}, r1)
		r3 := Update(onB, r1.Context, put("v3", 3), actorB, now0)
		return Merge(r2, r3)
	},
	want:     []string{"v2", "v3"},
	wantLive: []string{"v2", "v3"},
}, {
	name: "client context drops a sibling the coordinator has not seen yet",
	run: func() dht.Record {
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB, now0)
		// The client read rb from B, then writes through A, which lacks it.
		ra := Update(dht.Record{}, rb.Context, put("va", 2), actorA, now0)
		return Merge(rb, ra)
	},
	want:     []string{"va"},
	wantLive: []string{"va"},
}}

func TestWriteScenarios(t *testing.T) {
	for _, tt := range writeScenarios {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run()
			if g := sorted(values(got)); !slices.Equal(g, sorted(tt.want)) {
				t.Errorf("siblings = %q, want %q", g, sorted(tt.want))
			}
			var live []string
			for _, v := range Live(got, now0) {
				live = append(live, string(v.Value))
			}
			if g := sorted(live); !slices.Equal(g, sorted(tt.wantLive)) {
				t.Errorf("live = %q, want %q", g, sorted(tt.wantLive))
			}
			if got.DeletedAt(now0) != (len(tt.wantLive) == 0) {
				t.Errorf("DeletedAt() = %v with live %q", got.DeletedAt(now0), tt.wantLive)
			}
			if !reflect.DeepEqual(got, Canonical(got)) {
				t.Errorf("result not canonical: %+v", got)
			}
		})
	}
}

func TestUpdateDots(t *testing.T) {
	tests := []struct {
		name    string
		local   dht.Record
		ctx     []dht.Dot
		actor   uint64
		wantDot dht.Dot
		wantCtx []dht.Dot
	}{{
		name:    "first write",
		actor:   actorA,
		wantDot: dht.Dot{Actor: actorA, Counter: 1},
		wantCtx: []dht.Dot{{Actor: actorA, Counter: 1}},
	}, {
		name:    "local counter",
		local:   dht.Record{Context: []dht.Dot{{Actor: actorA, Counter: 4}, {Actor: actorB, Counter: 2}}},
		actor:   actorA,
		wantDot: dht.Dot{Actor: actorA, Counter: 5},
		wantCtx: []dht.Dot{{Actor: actorA, Counter: 5}, {Actor: actorB, Counter: 2}},
	}, {
		name:    "client counter above local (replica lost its data)",
		local:   dht.Record{Context: []dht.Dot{{Actor: actorA, Counter: 1}}},
		ctx:     []dht.Dot{{Actor: actorC, Counter: 3}, {Actor: actorA, Counter: 7}},
		actor:   actorA,
		wantDot: dht.Dot{Actor: actorA, Counter: 8},
		wantCtx: []dht.Dot{{Actor: actorA, Counter: 8}, {Actor: actorC, Counter: 3}},
	}, {
		name:    "forged context saturates instead of wrapping",
		ctx:     []dht.Dot{{Actor: actorA, Counter: math.MaxUint64}},
		actor:   actorA,
		wantDot: dht.Dot{Actor: actorA, Counter: math.MaxUint64},
		wantCtx: []dht.Dot{{Actor: actorA, Counter: math.MaxUint64}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := put("x", 9)
			v.Dot = dht.Dot{Actor: 99, Counter: 99} // ignored
			got := Update(tt.local, tt.ctx, v, tt.actor, now0)
			if !hasDot(got.Versions, tt.wantDot) {
				t.Errorf("versions %+v lack dot %+v", got.Versions, tt.wantDot)
			}
			if !slices.Equal(got.Context, tt.wantCtx) {
				t.Errorf("context = %+v, want %+v", got.Context, tt.wantCtx)
			}
			if !Descends(got, tt.local) {
				t.Errorf("result does not descend local")
			}
		})
	}
}

func TestCompare(t *testing.T) {
	r1 := Update(dht.Record{}, nil, put("v1", 1), actorA, now0)
	r2 := Update(r1, r1.Context, put("v2", 2), actorA, now0)
	rb := Update(dht.Record{}, nil, put("vb", 1), actorB, now0)
	both := Merge(r1, rb)
	// Same context as both, but it saw vb overwritten... by nothing it holds:
	// a state with fewer siblings and the same context is the later one.
	trimmed := dht.Record{Versions: r1.Versions, Context: both.Context}
	tests := []struct {
		name string
		a, b dht.Record
		want Order
	}{
		{"same state", r1, r1, Equal},
		{"same state, different field order", both, dht.Record{Versions: []dht.Version{both.Versions[1], both.Versions[0]}, Context: []dht.Dot{both.Context[1], both.Context[0]}}, Equal},
		{"payload and expiry do not count", r1, dht.Record{Versions: []dht.Version{{Dot: r1.Versions[0].Dot, Value: []byte("other"), ExpiresAt: 5}}, Context: r1.Context}, Equal},
		{"empty before anything", dht.Record{}, r1, Before},
		{"older before newer", r1, r2, Before},
		{"newer after older", r2, r1, After},
		{"concurrent writers", r1, rb, Concurrent},
		{"part before merge", rb, both, Before},
		{"equal contexts, fewer siblings is later", both, trimmed, Before},
		{"newer overwrite versus concurrent write", r2, rb, Concurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Compare(tt.a, tt.b); got != tt.want {
				t.Errorf("Compare = %v, want %v", got, tt.want)
			}
			wantAB := tt.want == After || tt.want == Equal
			if got := Descends(tt.a, tt.b); got != wantAB {
				t.Errorf("Descends(a, b) = %v, want %v", got, wantAB)
			}
		})
	}
}

func TestOrderString(t *testing.T) {
	tests := []struct {
		o    Order
		want string
	}{{Equal, "equal"}, {Before, "before"}, {After, "after"}, {Concurrent, "concurrent"}, {Order(0), "order(0)"}}
	for _, tt := range tests {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", int(tt.o), got, tt.want)
		}
	}
}

func TestResolveLWW(t *testing.T) {
	v := func(val string, ts int64, a, c uint64, tomb bool) dht.Version {
		return dht.Version{Value: []byte(val), Timestamp: ts, Dot: dht.Dot{Actor: a, Counter: c}, Tombstone: tomb}
	}
	tests := []struct {
		name string
		vs   []dht.Version
		want string
	}{
		{"latest timestamp wins", []dht.Version{v("old", 10, actorB, 5, false), v("new", 20, actorA, 1, false)}, "new"},
		{"tie broken by actor", []dht.Version{v("a", 10, actorA, 9, false), v("b", 10, actorB, 1, false)}, "b"},
		{"tie broken by counter", []dht.Version{v("a1", 10, actorA, 1, false), v("a2", 10, actorA, 2, false)}, "a2"},
		{"latest tombstone wins", []dht.Version{v("x", 10, actorA, 1, false), v("", 11, actorB, 1, true)}, "-"},
		{"later but older-stamped sibling loses", []dht.Version{v("later", 5, actorA, 2, false), v("stamped-later", 6, actorA, 1, false)}, "stamped-later"},
		{"single sibling", []dht.Version{v("only", 1, actorA, 1, false)}, "only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dht.Record{Versions: tt.vs}
			got := ResolveLWW(r)
			if g := values(got); !slices.Equal(g, []string{tt.want}) {
				t.Errorf("siblings = %q, want [%q]", g, tt.want)
			}
			if want := Canonical(r).Context; !slices.Equal(got.Context, want) {
				t.Errorf("context = %+v, want %+v", got.Context, want)
			}
		})
	}
}

// TestUpdateLWW: in last-writer-wins mode a write supersedes every
// version its coordinator holds, whatever the client's context, and is
// stamped later than all of them when the coordinator's clock is behind.
func TestUpdateLWW(t *testing.T) {
	ra := Update(dht.Record{}, nil, put("a", 50), actorA, now0)
	both := Merge(ra, Update(dht.Record{}, nil, put("b", 40), actorB, now0))
	tests := []struct {
		name       string
		local      dht.Record
		v          dht.Version
		wantTS     int64
		wantMerged string // shown after merging with a replica holding a
	}{
		{"clock ahead keeps its stamp", both, put("c", 60), 60, "c"},
		{"clock behind is raised above the newest", both, put("c", 10), 51, "c"},
		{"a coordinator that never saw a stays concurrent with it", dht.Record{}, put("c", 10), 10, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UpdateLWW(tt.local, nil, tt.v, actorC, now0)
			if len(got.Versions) != 1 || string(got.Versions[0].Value) != "c" || got.Versions[0].Timestamp != tt.wantTS {
				t.Fatalf("versions = %+v, want only c stamped %d", got.Versions, tt.wantTS)
			}
			if !Descends(got, tt.local) {
				t.Errorf("result does not descend local")
			}
			if w := values(ResolveLWW(Merge(got, ra))); !slices.Equal(w, []string{tt.wantMerged}) {
				t.Errorf("merged with a replica that held a: %q, want [%s]", w, tt.wantMerged)
			}
		})
	}
	retry := UpdateLWW(ra, nil, dht.Version{Value: []byte("a"), WriteID: 7, Timestamp: 1}, actorA, now0)
	if again := UpdateLWW(retry, nil, dht.Version{Value: []byte("a"), WriteID: 7, Timestamp: 2}, actorA, now0); !Identical(again, retry) {
		t.Errorf("a retried write made a new version: %+v", again.Versions)
	}
}

// lwwHistory is a random history of a key in last-writer-wins mode:
// coordinators whose clocks jump back and forth write with UpdateLWW
// (with the context of a read, or blind), replicas merge in random order.
// writes records each write's dot, stamp and the context that superseded
// what it knew (its coordinator's record joined with the client's).
type lwwHistory struct {
	rng      *rand.Rand
	replicas []dht.Record
	actors   []uint64
	writes   []lwwWrite
}

type lwwWrite struct {
	id    string
	dot   dht.Dot
	stamp int64
	seen  []dht.Dot
}

func (h *lwwHistory) write(coord int) {
	var ctx []dht.Dot
	if h.rng.IntN(2) == 0 {
		for i := range h.replicas {
			if h.rng.IntN(2) == 0 {
				ctx = Merge(dht.Record{Context: ctx}, h.replicas[i]).Context
			}
		}
	}
	id := fmt.Sprintf("w%d", len(h.writes))
	local := h.replicas[coord]
	r := UpdateLWW(local, ctx, put(id, h.rng.Int64N(20)), h.actors[coord], now0)
	nv := r.Versions[slices.IndexFunc(r.Versions, func(v dht.Version) bool { return string(v.Value) == id })]
	seen := joinContext(Canonical(local).Context, canonContext(ctx, nil))
	h.replicas[coord] = r
	h.writes = append(h.writes, lwwWrite{id: id, dot: nv.Dot, stamp: nv.Timestamp, seen: seen})
}

// winner is the write LWW must show once every replica has merged: the
// greatest (stamp, dot) among the writes no later write had seen.
func (h *lwwHistory) winner() string {
	best, bestStamp, bestDot := "", int64(0), dht.Dot{}
	for _, w := range h.writes {
		superseded := false
		for _, o := range h.writes {
			superseded = superseded || (o.id != w.id && covered(o.seen, w.dot))
		}
		if !superseded && (best == "" || w.stamp > bestStamp || (w.stamp == bestStamp && cmpDot(w.dot, bestDot) > 0)) {
			best, bestStamp, bestDot = w.id, w.stamp, w.dot
		}
	}
	return best
}

// TestLWWConverges: in last-writer-wins mode, replicas that receive the
// same writes in any order converge on the same record, which is never
// empty once a write exists, and show the latest write that was not
// overwritten, even with coordinator clocks that step back.
func TestLWWConverges(t *testing.T) {
	for seed := range uint64(400) {
		h := &lwwHistory{rng: rand.New(rand.NewPCG(seed, 13)), replicas: make([]dht.Record, 3), actors: []uint64{actorA, actorB, actorC}}
		for range 30 {
			if h.rng.IntN(2) == 0 {
				h.write(h.rng.IntN(3))
				continue
			}
			i, j := h.rng.IntN(3), h.rng.IntN(3)
			h.replicas[j] = Merge(h.replicas[j], h.replicas[i])
		}
		if len(h.writes) == 0 {
			continue
		}
		var orders []dht.Record
		for range 3 {
			var all dht.Record
			for _, p := range h.rng.Perm(3) {
				all = Merge(all, h.replicas[p])
			}
			orders = append(orders, all)
		}
		for _, o := range orders[1:] {
			if !Identical(o, orders[0]) {
				t.Fatalf("seed %d: merge orders differ: %+v vs %+v", seed, o, orders[0])
			}
		}
		got := values(ResolveLWW(orders[0]))
		if want := h.winner(); !slices.Equal(got, []string{want}) {
			t.Fatalf("seed %d: LWW shows %q, want [%s]", seed, got, want)
		}
	}
}

func TestCanonical(t *testing.T) {
	d := func(a, c uint64) dht.Dot { return dht.Dot{Actor: a, Counter: c} }
	tests := []struct {
		name string
		in   dht.Record
		want dht.Record
	}{{
		name: "empty",
		in:   dht.Record{Versions: []dht.Version{}, Context: []dht.Dot{}},
		want: dht.Record{},
	}, {
		name: "sorts and merges context entries, drops zeros",
		in:   dht.Record{Context: []dht.Dot{d(3, 1), d(1, 2), d(3, 4), d(2, 0)}},
		want: dht.Record{Context: []dht.Dot{d(1, 2), d(3, 4)}},
	}, {
		name: "raises context to cover siblings",
		in:   dht.Record{Versions: []dht.Version{{Dot: d(2, 5), Value: []byte("x")}}, Context: []dht.Dot{d(2, 3)}},
		want: dht.Record{Versions: []dht.Version{{Dot: d(2, 5), Value: []byte("x")}}, Context: []dht.Dot{d(2, 5)}},
	}, {
		name: "sorts versions, empty values become nil",
		in:   dht.Record{Versions: []dht.Version{{Dot: d(2, 1), Value: []byte("b"), ExpiresAt: 9}, {Dot: d(1, 1), Value: []byte{}, Tombstone: true}}},
		want: dht.Record{Versions: []dht.Version{{Dot: d(1, 1), Tombstone: true}, {Dot: d(2, 1), Value: []byte("b"), ExpiresAt: 9}},
			Context: []dht.Dot{d(1, 1), d(2, 1)}},
	}, {
		name: "one version per dot, the greatest payload",
		in: dht.Record{Versions: []dht.Version{{Dot: d(1, 1), Value: []byte("z"), Timestamp: 1},
			{Dot: d(1, 1), Value: []byte("a"), Timestamp: 2}, {Dot: d(1, 1), Value: []byte("q"), Timestamp: 1}}},
		want: dht.Record{Versions: []dht.Version{{Dot: d(1, 1), Value: []byte("a"), Timestamp: 2}},
			Context: []dht.Dot{d(1, 1)}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Canonical(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Canonical = %+v, want %+v", got, tt.want)
			}
			if !Identical(tt.in, tt.want) {
				t.Errorf("Identical(in, want) = false")
			}
		})
	}
}

// TestExpiry: an expiry belongs to its version. A newer write's TTL (or
// lack of one) replaces the one it overwrote, concurrent siblings keep
// their own, and a dead sibling reads as deleted while its context stays.
func TestExpiry(t *testing.T) {
	x := Update(dht.Record{}, nil, put("x", 1), actorA, now0)
	y := Update(x, x.Context, putTTL("y", 2, 100), actorA, now0) // overwrites x, TTL
	z := Update(dht.Record{}, nil, putTTL("z", 1, 200), actorB, now0)
	tests := []struct {
		name string
		r    dht.Record
		at   int64
		want []string // live values
	}{
		{"a TTL overwrite is live before its expiry", Merge(x, y), 99, []string{"y"}},
		{"a TTL overwrite dead does not bring back what it overwrote", Merge(x, y), 100, nil},
		{"concurrent siblings keep their own expiries", Merge(x, z), 150, []string{"x", "z"}},
		{"the sibling without TTL outlives the other", Merge(x, z), 250, []string{"x"}},
		{"overwrite with TTL and a concurrent TTL sibling", Merge(Merge(x, z), y), 150, []string{"z"}},
		{"both dead", Merge(Merge(x, z), y), 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Live(tt.r, tt.at) {
				got = append(got, string(v.Value))
			}
			if !slices.Equal(sorted(got), sorted(tt.want)) {
				t.Errorf("live at %d = %q, want %q", tt.at, got, tt.want)
			}
			if tt.r.DeletedAt(tt.at) != (len(tt.want) == 0) {
				t.Errorf("DeletedAt(%d) = %v", tt.at, tt.r.DeletedAt(tt.at))
			}
			if !covered(Canonical(tt.r).Context, x.Versions[0].Dot) {
				t.Errorf("the context lost x's dot")
			}
		})
	}
	// Merging in either grouping gives the same record, expiries included.
	if l, r := Merge(Merge(x, z), y), Merge(x, Merge(z, y)); !Identical(l, r) {
		t.Errorf("groupings differ: %+v vs %+v", l, r)
	}
}

// TestUpdateDropsDeadSiblings: a write drops the siblings of its record
// that are dead at the coordinator's clock (expired values, tombstones),
// keeping their dots covered, so merges drop them on every replica.
func TestUpdateDropsDeadSiblings(t *testing.T) {
	exp := Update(dht.Record{}, nil, putTTL("old", 1, 100), actorA, now0)
	tomb := Update(dht.Record{}, nil, del(1), actorB, now0)
	live := Update(dht.Record{}, nil, putTTL("live", 1, 500), actorC, now0)
	local := Merge(Merge(exp, tomb), live)
	got := Update(local, nil, put("new", 2), actorA, 200)
	if w := sorted(values(got)); !slices.Equal(w, []string{"live", "new"}) {
		t.Fatalf("siblings after a blind write at 200 = %q, want [live new]", w)
	}
	if !Descends(got, local) {
		t.Errorf("result does not descend local")
	}
	if w := sorted(values(Merge(got, local))); !slices.Equal(w, []string{"live", "new"}) {
		t.Errorf("merged with a replica still holding the dead siblings: %q", w)
	}
}

func TestLive(t *testing.T) {
	r := dht.Record{Versions: []dht.Version{
		{Dot: dht.Dot{Actor: 2, Counter: 1}, Value: []byte("b")},
		{Dot: dht.Dot{Actor: 1, Counter: 1}, Tombstone: true},
		{Dot: dht.Dot{Actor: 1, Counter: 2}, Value: []byte("a")},
	}}
	r.Versions = append(r.Versions, dht.Version{Dot: dht.Dot{Actor: 3, Counter: 1}, Value: []byte("c"), ExpiresAt: 10})
	for at, want := range map[int64][]string{9: {"a", "b", "c"}, 10: {"a", "b"}} {
		var got []string
		for _, v := range Live(r, at) {
			got = append(got, string(v.Value))
		}
		if !slices.Equal(got, want) {
			t.Errorf("Live at %d = %q, want %q", at, got, want)
		}
	}
	if Live(dht.Record{}, now0) != nil {
		t.Errorf("Live(empty) is not nil")
	}
}

func TestInputsNotModified(t *testing.T) {
	a := dht.Record{
		Versions: []dht.Version{{Dot: dht.Dot{Actor: 2, Counter: 2}, Value: []byte("b")}, {Dot: dht.Dot{Actor: 1, Counter: 1}, Value: []byte("a")}},
		Context:  []dht.Dot{{Actor: 2, Counter: 2}, {Actor: 1, Counter: 1}},
	}
	b := dht.Record{Context: []dht.Dot{{Actor: 3, Counter: 1}, {Actor: 1, Counter: 5}}}
	a0, b0 := cloneRecord(a), cloneRecord(b)
	_ = Merge(a, b)
	_ = Update(a, b.Context, put("c", 1), 1, now0)
	_ = Prune(a, 1)
	_ = ResolveLWW(a)
	_ = Compare(a, b)
	if !reflect.DeepEqual(a, a0) || !reflect.DeepEqual(b, b0) {
		t.Errorf("inputs modified: %+v %+v", a, b)
	}
}

func cloneRecord(r dht.Record) dht.Record {
	r.Versions = slices.Clone(r.Versions)
	r.Context = slices.Clone(r.Context)
	return r
}

// TestDiedBy: a record has been deleted since t when each version is a
// tombstone written by t or a value expired by t; in last-writer-wins
// mode only the version readers see counts.
func TestDiedBy(t *testing.T) {
	tomb := Update(dht.Record{}, nil, del(10), actorA, now0)
	exp := Update(dht.Record{}, nil, putTTL("x", 5, 20), actorB, now0)
	lasting := Update(dht.Record{}, nil, put("y", 1), actorC, now0)
	tests := []struct {
		name string
		r    dht.Record
		t    int64
		lww  bool
		want bool
	}{
		{"empty record", dht.Record{}, 100, false, false},
		{"a context and no version", dht.Record{Context: tomb.Context}, 0, false, true},
		{"tombstone before t", tomb, 10, false, true},
		{"tombstone after t", tomb, 9, false, false},
		{"expired by t", exp, 20, false, true},
		{"expires after t", exp, 19, false, false},
		{"tombstone and expired value", Merge(tomb, exp), 20, false, true},
		{"tombstone and expired value, t between", Merge(tomb, exp), 15, false, false},
		{"a value that never expires", Merge(tomb, lasting), 100, false, false},
		{"LWW: the latest is a tombstone over an older lasting value", Merge(tomb, lasting), 100, true, true},
		{"LWW: the latest is a lasting value", Merge(Update(dht.Record{}, nil, put("z", 50), actorC, now0), tomb), 100, true, false},
	}
	for _, tt := range tests {
		if got := DiedBy(tt.r, tt.t, tt.lww); got != tt.want {
			t.Errorf("%s: DiedBy(%d, lww %v) = %v, want %v", tt.name, tt.t, tt.lww, got, tt.want)
		}
	}
}
