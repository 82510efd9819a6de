package version

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ringkv/ringkv/dht"
)

// byteGen turns bytes into small records over few actors and counters, so
// that random and fuzzed records overlap often: shared dots, covered dots,
// the same dot with different payloads, extreme counters.
type byteGen struct{ b []byte }

func (g *byteGen) next() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

var (
	genActors   = []uint64{1, 2, 3, math.MaxUint64}
	genCounters = []uint64{0, 1, 2, 3, 4, 5, math.MaxUint64 - 1, math.MaxUint64}
	genValues   = [][]byte{nil, {}, []byte("x"), []byte("y")}
	genExpiry   = []int64{0, -5, 100, 200}
)

func (g *byteGen) dot() dht.Dot {
	return dht.Dot{Actor: genActors[g.next()%4], Counter: genCounters[g.next()%8]}
}

func (g *byteGen) record() dht.Record {
	var r dht.Record
	for range g.next() % 5 {
		f := g.next()
		r.Versions = append(r.Versions, dht.Version{
			Dot:       g.dot(),
			Value:     genValues[f%4],
			Tombstone: f&0x30 == 0x30,
			Timestamp: int64(f>>6) % 3,
			ExpiresAt: genExpiry[(f>>2)%4],
		})
	}
	for range g.next() % 5 {
		r.Context = append(r.Context, g.dot())
	}
	return r
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// checkLaws reports the first Merge law that a, b and c break.
func checkLaws(a, b, c dht.Record) error {
	ab, ba := Merge(a, b), Merge(b, a)
	if !reflect.DeepEqual(ab, Canonical(ab)) {
		return fmt.Errorf("output not canonical: %+v", ab)
	}
	if !reflect.DeepEqual(ab, ba) {
		return fmt.Errorf("not commutative:\n a=%+v\n b=%+v\n ab=%+v\n ba=%+v", a, b, ab, ba)
	}
	if aa := Merge(a, a); !reflect.DeepEqual(aa, Canonical(a)) {
		return fmt.Errorf("not idempotent:\n a=%+v\n aa=%+v", a, aa)
	}
	if abb := Merge(ab, b); !Identical(abb, ab) {
		return fmt.Errorf("merging b again changed the result:\n ab=%+v\n abb=%+v", ab, abb)
	}
	l, r := Merge(ab, c), Merge(a, Merge(b, c))
	if !reflect.DeepEqual(l, r) {
		return fmt.Errorf("not associative:\n a=%+v\n b=%+v\n c=%+v\n (ab)c=%+v\n a(bc)=%+v", a, b, c, l, r)
	}
	if !Descends(ab, a) || !Descends(ab, b) {
		return fmt.Errorf("merge does not descend its inputs: %v %v", Compare(ab, a), Compare(ab, b))
	}
	if o := Compare(a, b); (o == Before || o == Equal) != Descends(b, a) || (o == After || o == Equal) != Descends(a, b) {
		return fmt.Errorf("Compare %v disagrees with Descends", o)
	}
	if (Compare(a, b) == Equal) != sameState(stripPayload(Canonical(a)), stripPayload(Canonical(b))) {
		return fmt.Errorf("Compare Equal disagrees with dots and contexts")
	}
	return nil
}

func stripPayload(r dht.Record) dht.Record {
	for i := range r.Versions {
		r.Versions[i] = dht.Version{Dot: r.Versions[i].Dot}
	}
	return r
}

func TestMergeLaws(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		g := &byteGen{b: randomBytes(rng, 96)}
		a, b, c := g.record(), g.record(), g.record()
		if err := checkLaws(a, b, c); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// history simulates replicas of one key: clients write through random
// coordinators with the context of a read from random replicas (or none),
// some with a TTL, and replicas exchange states in random order while the
// clock moves on.
type history struct {
	rng      *rand.Rand
	replicas []dht.Record
	actors   []uint64
	writes   []written
	now      int64
}

type written struct {
	id  string
	dot dht.Dot
	ctx []dht.Dot // the client context it was written with
	v   dht.Version
}

func (h *history) read() dht.Record {
	var r dht.Record
	for i := range h.replicas {
		if h.rng.IntN(2) == 0 {
			r = Merge(r, h.replicas[i])
		}
	}
	return r
}

func (h *history) write(coord int) {
	var ctx []dht.Dot
	if h.rng.IntN(3) > 0 {
		ctx = h.read().Context
	}
	id := fmt.Sprintf("w%d", len(h.writes))
	v := put(id, h.rng.Int64N(100))
	switch h.rng.IntN(5) {
	case 0:
		v = dht.Version{Tombstone: true, Value: []byte(id)} // value kept to identify it
	case 1:
		v.ExpiresAt = h.now + 1 + h.rng.Int64N(20)
	}
	h.now += h.rng.Int64N(3)
	r := Update(h.replicas[coord], ctx, v, h.actors[coord], h.now)
	dot := dht.Dot{Actor: h.actors[coord], Counter: counterOf(r.Context, h.actors[coord])}
	h.replicas[coord] = r
	h.writes = append(h.writes, written{id: id, dot: dot, ctx: ctx, v: v})
}

func (h *history) exchange() {
	i, j := h.rng.IntN(len(h.replicas)), h.rng.IntN(len(h.replicas))
	switch h.rng.IntN(3) {
	case 0:
		h.replicas[j] = Merge(h.replicas[j], h.replicas[i])
	case 1:
		h.replicas[j] = Merge(h.replicas[i], h.replicas[j])
	default:
		m := Merge(h.replicas[i], h.replicas[j])
		h.replicas[i], h.replicas[j] = m, m
	}
}

// check verifies that the merge of all replicas holds exactly the writes
// that no later write's client context covered, except that a write dead
// by now (a tombstone or an expired value) may be gone: a later write
// drops the dead siblings it finds. With lossy set (pruning), only the
// no-loss half is checked.
func (h *history) check(lossy bool) error {
	var all dht.Record
	for _, p := range h.rng.Perm(len(h.replicas)) {
		all = Merge(all, h.replicas[p])
	}
	present := map[dht.Dot]string{}
	for _, v := range all.Versions {
		present[v.Dot] = string(v.Value)
	}
	for _, w := range h.writes {
		superseded := false
		for _, o := range h.writes {
			if o.id != w.id && covered(canonContext(o.ctx, nil), w.dot) {
				superseded = true
			}
		}
		got, ok := present[w.dot]
		switch {
		case !superseded && w.v.LiveAt(h.now) && (!ok || got != w.id):
			return fmt.Errorf("write %s %+v lost; final siblings %v", w.id, w.dot, values(all))
		case superseded && ok && !lossy:
			return fmt.Errorf("write %s %+v was overwritten but is still a sibling", w.id, w.dot)
		}
	}
	return nil
}

func TestNoAcknowledgedWriteLost(t *testing.T) {
	for seed := range uint64(400) {
		h := &history{rng: rand.New(rand.NewPCG(seed, 7)), replicas: make([]dht.Record, 3), actors: []uint64{actorA, actorB, actorC}}
		for range 40 {
			if h.rng.IntN(2) == 0 {
				h.write(h.rng.IntN(3))
			} else {
				h.exchange()
			}
		}
		if err := h.check(false); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestPruneLosesNoWrite: fallback actors write early, then only the
// replicas' own actors coordinate while every state is pruned hard, keeping
// those actors. False siblings may appear; no write may vanish.
func TestPruneLosesNoWrite(t *testing.T) {
	for seed := range uint64(300) {
		h := &history{rng: rand.New(rand.NewPCG(seed, 11)), replicas: make([]dht.Record, 3), actors: []uint64{10, 11, 12}}
		for range 15 {
			h.write(h.rng.IntN(3))
			h.exchange()
		}
		keep := []uint64{actorA, actorB, actorC}
		h.actors = keep
		for range 40 {
			if h.rng.IntN(2) == 0 {
				h.write(h.rng.IntN(3))
			} else {
				h.exchange()
			}
			for i := range h.replicas {
				h.replicas[i] = Prune(h.replicas[i], 3, keep...)
			}
		}
		if err := h.check(true); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestReplicasConverge: after random histories, replicas that gossip until
// nothing changes hold byte-identical records, expiries included.
func TestReplicasConverge(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 3))
		h := &history{rng: rng, replicas: make([]dht.Record, 4), actors: []uint64{1, 2, 3, 4}}
		for range 30 {
			if rng.IntN(2) == 0 {
				h.write(rng.IntN(4))
			} else {
				h.exchange()
			}
		}
		for changed := true; changed; {
			changed = false
			for i := range h.replicas {
				for j := range h.replicas {
					m := Merge(h.replicas[i], h.replicas[j])
					if !Identical(m, h.replicas[i]) {
						h.replicas[i], changed = m, true
					}
				}
			}
		}
		for i := range h.replicas {
			if !reflect.DeepEqual(h.replicas[i], h.replicas[0]) {
				t.Fatalf("seed %d: replica %d = %+v, replica 0 = %+v", seed, i, h.replicas[i], h.replicas[0])
			}
		}
	}
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0})
	f.Add([]byte{2, 0x30, 0, 1, 1, 0x40, 1, 2, 1, 1, 2, 3, 2, 2, 3, 1, 2, 1, 1, 2, 3})
	f.Add([]byte{4, 0xff, 3, 7, 0xf0, 3, 6, 1, 1, 1, 2, 2, 2, 4, 3, 7, 3, 6, 0, 5, 2, 4, 4, 3, 3, 3, 0, 1, 2, 1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &byteGen{b: data}
		a, b, c := g.record(), g.record(), g.record()
		if err := checkLaws(a, b, c); err != nil {
			t.Fatal(err)
		}
		actor := genActors[g.next()%4]
		u := Update(a, b.Context, dht.Version{Value: []byte("new")}, actor, now0)
		saturated := max(counterOf(Canonical(a).Context, actor), counterOf(canonContext(b.Context, nil), actor)) == math.MaxUint64
		if !saturated && !Descends(u, a) {
			t.Fatalf("Update result does not descend local: %+v -> %+v", a, u)
		}
		if !reflect.DeepEqual(u, Canonical(u)) {
			t.Fatalf("Update result not canonical: %+v", u)
		}
		if p := Prune(Merge(a, b), 1); !sameVersions(p.Versions, Merge(a, b).Versions) {
			t.Fatalf("Prune removed a sibling")
		}
	})
}

// benchRecords returns two replicas of a key with a few siblings each.
func benchRecords() (a, b dht.Record) {
	for i := range 3 {
		a = Update(a, nil, put("value-a", int64(i)), actorA, now0)
		b = Update(b, nil, put("value-b", int64(i)), actorB, now0)
	}
	return a, Merge(b, a)
}

func BenchmarkMerge(b *testing.B) {
	x, y := benchRecords()
	for b.Loop() {
		_ = Merge(x, y)
	}
}

func BenchmarkUpdate(b *testing.B) {
	x, y := benchRecords()
	for b.Loop() {
		_ = Update(y, x.Context, put("new", 9), actorC, now0)
	}
}

func BenchmarkDecodeContext(b *testing.B) {
	_, y := benchRecords()
	s := EncodeContext(y.Context)
	for b.Loop() {
		if _, err := DecodeContext(s); err != nil {
			b.Fatal(err)
		}
	}
}
