package version

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ringkv/ringkv/dht"
)

func TestContextRoundTrip(t *testing.T) {
	many := make([]dht.Dot, MaxContextEntries)
	for i := range many {
		many[i] = dht.Dot{Actor: uint64(i) * 0x9E3779B97F4A7C15, Counter: MaxCounter - uint64(i)}
	}
	tests := []struct {
		name string
		in   []dht.Dot
		want []dht.Dot // nil: same as canonical in
	}{
		{name: "empty", in: nil},
		{name: "one", in: []dht.Dot{{Actor: 1, Counter: 1}}},
		{name: "unsorted with duplicates and zeros", in: []dht.Dot{{Actor: 9, Counter: 3}, {Actor: 1, Counter: 7}, {Actor: 9, Counter: 5}, {Actor: 4, Counter: 0}},
			want: []dht.Dot{{Actor: 1, Counter: 7}, {Actor: 9, Counter: 5}}},
		{name: "extreme values", in: []dht.Dot{{Actor: 0, Counter: MaxCounter}, {Actor: math.MaxUint64, Counter: 1}}},
		{name: "counters above MaxCounter are lowered", in: []dht.Dot{{Actor: 1, Counter: math.MaxUint64}, {Actor: 2, Counter: MaxCounter + 1}},
			want: []dht.Dot{{Actor: 1, Counter: MaxCounter}, {Actor: 2, Counter: MaxCounter}}},
		{name: "maximum entries with maximum counters", in: many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = canonContext(tt.in, nil)
			}
			s := EncodeContext(tt.in)
			if len(s) > MaxContextLen {
				t.Fatalf("encoded length %d > MaxContextLen", len(s))
			}
			if strings.ContainsAny(s, "+/=") {
				t.Errorf("encoding %q is not URL-safe", s)
			}
			got, err := DecodeContext(s)
			if err != nil {
				t.Fatalf("DecodeContext: %v", err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("round trip = %v, want %v", got, want)
			}
		})
	}
}

func TestEncodeContextBoundsEntries(t *testing.T) {
	in := make([]dht.Dot, MaxContextEntries+10)
	for i := range in {
		in[i] = dht.Dot{Actor: uint64(i), Counter: uint64(i) + 1}
	}
	got, err := DecodeContext(EncodeContext(in))
	if err != nil {
		t.Fatalf("DecodeContext: %v", err)
	}
	if len(got) != MaxContextEntries {
		t.Fatalf("%d entries, want %d", len(got), MaxContextEntries)
	}
	if got[0].Actor != 10 {
		t.Errorf("first kept actor %d, want 10 (smallest counters dropped)", got[0].Actor)
	}
}

// rawContext builds a context string from a body, appending a valid checksum.
func rawContext(body []byte) string {
	b := binary.BigEndian.AppendUint32(slices.Clone(body), uint32(xxhash.Sum64(body)>>32))
	return base64.RawURLEncoding.EncodeToString(b)
}

func entry(b []byte, actor, counter uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, actor)
	return binary.AppendUvarint(b, counter)
}

func TestDecodeContextRejects(t *testing.T) {
	valid := EncodeContext([]dht.Dot{{Actor: 1, Counter: 2}, {Actor: 3, Counter: 4}})
	tests := []struct {
		name string
		in   string
	}{
		{"garbage", "hello world!"},
		{"padded base64", valid + "=="},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(EncodeContext([]dht.Dot{{Actor: math.MaxUint64, Counter: math.MaxUint64}})) + "+/"},
		{"too long", strings.Repeat("A", MaxContextLen+1)},
		{"too short", base64.RawURLEncoding.EncodeToString([]byte{1, 1})},
		{"truncated", valid[:len(valid)-3]},
		{"edited", "B" + valid[1:]},
		{"bad checksum", base64.RawURLEncoding.EncodeToString(append(entry([]byte{1, 1}, 1, 1), 0, 0, 0, 0))},
		{"unknown format", rawContext(entry([]byte{2, 1}, 1, 1))},
		{"zero entries", rawContext([]byte{1, 0})},
		{"negative length", rawContext(entry(binary.AppendUvarint([]byte{1}, math.MaxUint64), 1, 1))},
		{"count above limit", rawContext(entry(binary.AppendUvarint([]byte{1}, MaxContextEntries+1), 1, 1))},
		{"count above bytes", rawContext(entry([]byte{1, 2}, 1, 1))},
		{"bad count varint", rawContext([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})},
		{"duplicate actors", rawContext(entry(entry([]byte{1, 2}, 5, 1), 5, 2))},
		{"unsorted actors", rawContext(entry(entry([]byte{1, 2}, 6, 1), 5, 2))},
		{"zero counter", rawContext(entry([]byte{1, 1}, 5, 0))},
		{"counter above MaxCounter", rawContext(entry([]byte{1, 1}, 5, MaxCounter+1))},
		{"non-minimal counter", rawContext(append(binary.BigEndian.AppendUint64([]byte{1, 1}, 5), 0x81, 0x00))},
		{"bad counter varint", rawContext(append(binary.BigEndian.AppendUint64([]byte{1, 1}, 5), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))},
		{"trailing bytes", rawContext(append(entry([]byte{1, 1}, 5, 1), 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeContext(tt.in)
			if !errors.Is(err, ErrBadContext) {
				t.Fatalf("DecodeContext = %v, %v; want ErrBadContext", got, err)
			}
			if !strings.HasPrefix(err.Error(), ErrBadContext.Error()) {
				t.Errorf("error %q does not start with the user message", err)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	d := func(a, c uint64) dht.Dot { return dht.Dot{Actor: a, Counter: c} }
	sib := func(a, c uint64) dht.Version { return dht.Version{Dot: d(a, c), Value: []byte{byte(a)}} }
	ctx := []dht.Dot{d(1, 9), d(2, 1), d(3, 5), d(4, 2), d(5, 7)}
	tests := []struct {
		name    string
		r       dht.Record
		max     int
		keep    []uint64
		wantCtx []dht.Dot
	}{
		{"within bound", dht.Record{Context: ctx}, 5, nil, ctx},
		{"drops smallest counters", dht.Record{Context: ctx}, 3, nil, []dht.Dot{d(1, 9), d(3, 5), d(5, 7)}},
		{"keeps sibling actors", dht.Record{Versions: []dht.Version{sib(2, 1)}, Context: ctx}, 3, nil, []dht.Dot{d(1, 9), d(2, 1), d(5, 7)}},
		{"keeps listed actors", dht.Record{Context: ctx}, 3, []uint64{4}, []dht.Dot{d(1, 9), d(4, 2), d(5, 7)}},
		{"cannot go below protected", dht.Record{Versions: []dht.Version{sib(2, 1), sib(4, 2)}, Context: ctx}, 1, []uint64{1}, []dht.Dot{d(1, 9), d(2, 1), d(4, 2)}},
		{"default bound", dht.Record{Context: ctx}, 0, nil, ctx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Prune(tt.r, tt.max, tt.keep...)
			if !slices.Equal(got.Context, tt.wantCtx) {
				t.Errorf("context = %v, want %v", got.Context, tt.wantCtx)
			}
			if !sameVersions(got.Versions, Canonical(tt.r).Versions) {
				t.Errorf("versions changed: %v", got.Versions)
			}
		})
	}
}

// TestPruneOnlyFalseSiblings: after pruning, an overwritten write held by a
// stale replica comes back as a sibling, and the newer write stays.
func TestPruneOnlyFalseSiblings(t *testing.T) {
	old := Update(dht.Record{}, nil, put("old", 1), actorB, now0)
	stale := Merge(dht.Record{}, old)
	fresh := Update(old, old.Context, put("new", 2), actorA, now0)
	pruned := Prune(fresh, 1, actorA)
	if len(pruned.Context) != 1 {
		t.Fatalf("context not pruned: %v", pruned.Context)
	}
	got := sorted(values(Merge(pruned, stale)))
	if want := []string{"new", "old"}; !slices.Equal(got, want) {
		t.Errorf("merge after prune = %q, want %q", got, want)
	}
}

func sameVersions(a, b []dht.Version) bool {
	return sameState(dht.Record{Versions: a}, dht.Record{Versions: b})
}

func FuzzDecodeContext(f *testing.F) {
	f.Add("")
	f.Add(EncodeContext([]dht.Dot{{Actor: 1, Counter: 1}}))
	f.Add(EncodeContext([]dht.Dot{{Actor: 1, Counter: 300}, {Actor: math.MaxUint64, Counter: math.MaxUint64}}))
	f.Add(rawContext(entry(entry([]byte{1, 2}, 5, 1), 5, 2)))
	f.Add("AQEAAAAAAAAAAQE")
	f.Add("not a context")
	f.Fuzz(func(t *testing.T, s string) {
		dots, err := DecodeContext(s)
		if err != nil {
			if !errors.Is(err, ErrBadContext) {
				t.Fatalf("error %v does not wrap ErrBadContext", err)
			}
			return
		}
		if len(dots) > MaxContextEntries {
			t.Fatalf("%d entries accepted", len(dots))
		}
		if !slices.Equal(dots, canonContext(dots, nil)) {
			t.Fatalf("decoded context not canonical: %v", dots)
		}
		if got := EncodeContext(dots); got != s {
			t.Fatalf("re-encoding %q gives %q", s, got)
		}
	})
}
