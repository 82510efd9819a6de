package version

import (
	"math"
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

func put(v string, ts int64) dht.Version { return dht.Version{Value: []byte(v), Timestamp: ts} }

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
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
		return Update(r1, nil, put("v2", 2), actorA)
	},
	want:     []string{"v1", "v2"},
	wantLive: []string{"v1", "v2"},
}, {
	name: "write with the read's context replaces",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
		return Update(r1, r1.Context, put("v2", 2), actorA)
	},
	want:     []string{"v2"},
	wantLive: []string{"v2"},
}, {
	name: "concurrent writes through different coordinators then merge are siblings",
	run: func() dht.Record {
		ra := Update(dht.Record{}, nil, put("va", 1), actorA)
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB)
		return Merge(ra, rb)
	},
	want:     []string{"va", "vb"},
	wantLive: []string{"va", "vb"},
}, {
	name: "merge of stale and fresh gives fresh",
	run: func() dht.Record {
		stale := Update(dht.Record{}, nil, put("v1", 1), actorA)
		fresh := Update(stale, stale.Context, put("v2", 2), actorA)
		return Merge(stale, fresh)
	},
	want:     []string{"v2"},
	wantLive: []string{"v2"},
}, {
	name: "tombstone with context replaces the value",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
		return Update(r1, r1.Context, del(2), actorA)
	},
	want: []string{"-"},
}, {
	name: "concurrent delete and put are both kept, the put live",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
		onB := Merge(dht.Record{}, r1)
		d := Update(r1, r1.Context, del(2), actorA)
		p := Update(onB, onB.Context, put("v2", 2), actorB)
		return Merge(d, p)
	},
	want:     []string{"-", "v2"},
	wantLive: []string{"v2"},
}, {
	name: "write with the context of a merged read resolves siblings",
	run: func() dht.Record {
		ra := Update(dht.Record{}, nil, put("va", 1), actorA)
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB)
		read := Merge(ra, rb)
		return Merge(Update(ra, read.Context, put("vc", 2), actorA), rb)
	},
	want:     []string{"vc"},
	wantLive: []string{"vc"},
}, {
	name: "write with a stale context through another coordinator keeps the newer write",
	run: func() dht.Record {
		r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
		r2 := Update(r1, r1.Context, put("v2", 2), actorA)
		onB := Merge(dht.Record{}, r1)
		r3 := Update(onB, r1.Context, put("v3", 3), actorB)
		return Merge(r2, r3)
	},
	want:     []string{"v2", "v3"},
	wantLive: []string{"v2", "v3"},
}, {
	name: "client context drops a sibling the coordinator has not seen yet",
	run: func() dht.Record {
		rb := Update(dht.Record{}, nil, put("vb", 1), actorB)
		// The client read rb from B, then writes through A, which lacks it.
		ra := Update(dht.Record{}, rb.Context, put("va", 2), actorA)
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
			for _, v := range Live(got) {
				live = append(live, string(v.Value))
			}
			if g := sorted(live); !slices.Equal(g, sorted(tt.wantLive)) {
				t.Errorf("live = %q, want %q", g, sorted(tt.wantLive))
			}
			if got.Deleted() != (len(tt.wantLive) == 0) {
				t.Errorf("Deleted() = %v with live %q", got.Deleted(), tt.wantLive)
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
			got := Update(tt.local, tt.ctx, v, tt.actor)
			if !hasDot(got.Versions, tt.wantDot) {
				t.Errorf("versions %+v lack dot %+v", got.Versions, tt.wantDot)
			}
			if !slices.Equal(got.Context, tt.wantCtx) {
				t.Errorf("context = %+v, want %+v", got.Context, tt.wantCtx)
			}
			if got.ExpiresAt != 0 {
				t.Errorf("ExpiresAt = %d, want 0", got.ExpiresAt)
			}
			if !Descends(got, tt.local) {
				t.Errorf("result does not descend local")
			}
		})
	}
}

func TestCompare(t *testing.T) {
	r1 := Update(dht.Record{}, nil, put("v1", 1), actorA)
	r2 := Update(r1, r1.Context, put("v2", 2), actorA)
	rb := Update(dht.Record{}, nil, put("vb", 1), actorB)
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
		{"payload and expiry do not count", r1, dht.Record{Versions: r1.Versions, Context: r1.Context, ExpiresAt: 5}, Equal},
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
		{"single sibling", []dht.Version{v("only", 1, actorA, 1, false)}, "only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dht.Record{Versions: tt.vs, ExpiresAt: 77}
			got := ResolveLWW(r)
			if g := values(got); !slices.Equal(g, []string{tt.want}) {
				t.Errorf("siblings = %q, want [%q]", g, tt.want)
			}
			if want := Canonical(r).Context; !slices.Equal(got.Context, want) {
				t.Errorf("context = %+v, want %+v", got.Context, want)
			}
			if got.ExpiresAt != 77 {
				t.Errorf("ExpiresAt = %d, want 77", got.ExpiresAt)
			}
		})
	}
}

func TestLWWDropsLoserEverywhere(t *testing.T) {
	ra := Update(dht.Record{}, nil, put("a", 10), actorA)
	rb := Update(dht.Record{}, nil, put("b", 20), actorB)
	won := ResolveLWW(Merge(ra, rb))
	for _, other := range []dht.Record{ra, rb} {
		if got := values(ResolveLWW(Merge(other, won))); !slices.Equal(got, []string{"b"}) {
			t.Errorf("merge with %q = %q, want [b]", values(other), got)
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
		in: dht.Record{Versions: []dht.Version{{Dot: d(2, 1), Value: []byte("b")}, {Dot: d(1, 1), Value: []byte{}, Tombstone: true}},
			ExpiresAt: 9},
		want: dht.Record{Versions: []dht.Version{{Dot: d(1, 1), Tombstone: true}, {Dot: d(2, 1), Value: []byte("b")}},
			Context: []dht.Dot{d(1, 1), d(2, 1)}, ExpiresAt: 9},
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

func TestMergeExpiresAt(t *testing.T) {
	withExp := func(r dht.Record, e int64) dht.Record { r.ExpiresAt = e; return r }
	x := Update(dht.Record{}, nil, put("x", 1), actorA)
	y := Update(x, x.Context, put("y", 2), actorA) // overwrites x
	z := Update(dht.Record{}, nil, put("z", 1), actorB)
	tests := []struct {
		name string
		a, b dht.Record
		want int64
	}{
		{"newer write sets a TTL", withExp(x, 0), withExp(y, 100), 100},
		{"newer write clears the TTL", withExp(x, 100), withExp(y, 0), 0},
		{"newer write shortens the TTL", withExp(x, 300), withExp(y, 100), 100},
		{"empty replica takes the record's expiry", dht.Record{}, withExp(x, 100), 100},
		{"concurrent: later expiry", withExp(x, 100), withExp(z, 200), 200},
		{"concurrent: never wins", withExp(x, 0), withExp(z, 200), 0},
		{"equal states: later expiry", withExp(y, 100), withExp(y, 200), 200},
		{"equal states: never wins", withExp(y, 100), withExp(y, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(tt.a, tt.b).ExpiresAt; got != tt.want {
				t.Errorf("Merge(a, b).ExpiresAt = %d, want %d", got, tt.want)
			}
			if got := Merge(tt.b, tt.a).ExpiresAt; got != tt.want {
				t.Errorf("Merge(b, a).ExpiresAt = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMergeExpiresAtGrouping pins the one case where the expiry depends on
// the grouping of merges (see the package documentation), and checks that
// replicas holding the two results still converge.
func TestMergeExpiresAtGrouping(t *testing.T) {
	x := Update(dht.Record{}, nil, put("x", 1), actorA) // no TTL
	y := Update(x, x.Context, put("y", 2), actorA)
	y.ExpiresAt = 100 // overwrites x and sets a TTL
	z := Update(dht.Record{}, nil, put("z", 1), actorB)
	z.ExpiresAt = 100

	left := Merge(Merge(x, z), y)  // x's "never" meets z first and survives
	right := Merge(x, Merge(z, y)) // x is dominated and dropped
	if !sameState(left, right) {
		t.Fatalf("states differ: %+v vs %+v", left, right)
	}
	if left.ExpiresAt != 0 || right.ExpiresAt != 100 {
		t.Fatalf("ExpiresAt = %d and %d, want 0 and 100", left.ExpiresAt, right.ExpiresAt)
	}
	if a, b := Merge(left, right), Merge(right, left); !Identical(a, b) || a.ExpiresAt != 0 {
		t.Errorf("exchange gives %d and %d, want both 0", a.ExpiresAt, b.ExpiresAt)
	}
}

func TestLive(t *testing.T) {
	r := dht.Record{Versions: []dht.Version{
		{Dot: dht.Dot{Actor: 2, Counter: 1}, Value: []byte("b")},
		{Dot: dht.Dot{Actor: 1, Counter: 1}, Tombstone: true},
		{Dot: dht.Dot{Actor: 1, Counter: 2}, Value: []byte("a")},
	}}
	var got []string
	for _, v := range Live(r) {
		got = append(got, string(v.Value))
	}
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Live = %q, want %q", got, want)
	}
	if Live(dht.Record{}) != nil {
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
	_ = Update(a, b.Context, put("c", 1), 1)
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
