package ring

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Real token collisions cannot be produced on purpose (they need a 64-bit
// SHA-256 prefix collision), so the tie-break is tested on built entries.
func TestTokenCollisionTieBreak(t *testing.T) {
	r := &Ring{
		vnodes: 2,
		nodes:  []Node{{ID: "a", Capacity: 1}, {ID: "b", Capacity: 1}, {ID: "c", Capacity: 1}},
		index:  map[peer.ID]int32{"a": 0, "b": 1, "c": 2},
	}
	// b and a both derive 5; c derives 7 twice (a collision with itself).
	entries := []tokenEntry{{9, 1}, {5, 1}, {7, 2}, {5, 0}, {7, 2}, {3, 0}}
	r.fillTokens(sortEntries(entries))

	if want := []uint64{3, 5, 7, 9}; !slices.Equal(r.tokens, want) {
		t.Fatalf("tokens = %v, want %v", r.tokens, want)
	}
	if want := []int32{0, 0, 2, 1}; !slices.Equal(r.owner, want) {
		t.Errorf("owners = %v, want %v (the smaller ID keeps a shared token)", r.owner, want)
	}
	tests := []struct {
		id       peer.ID
		tokens   []uint64
		reusable bool
	}{
		{"a", []uint64{3, 5}, true},
		{"b", []uint64{9}, false},
		{"c", []uint64{7}, false},
	}
	for _, tt := range tests {
		if got := r.TokensOf(tt.id); !slices.Equal(got, tt.tokens) {
			t.Errorf("TokensOf(%s) = %v, want %v", tt.id, got, tt.tokens)
		}
		if got := r.reusableTokens(tt.id, 2) != nil; got != tt.reusable {
			t.Errorf("reusableTokens(%s) = %v, want %v", tt.id, got, tt.reusable)
		}
	}
}

func TestSortEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		gen  func(i int) tokenEntry
		n    int
	}{
		{"small", func(int) tokenEntry { return tokenEntry{rng.Uint64(), rng.Int32N(50)} }, 100},
		{"uniform", func(int) tokenEntry { return tokenEntry{rng.Uint64(), rng.Int32N(50)} }, 20000},
		{"crowded bucket", func(int) tokenEntry { return tokenEntry{rng.Uint64N(1 << 20), rng.Int32N(50)} }, 5000},
		{"duplicates", func(i int) tokenEntry { return tokenEntry{uint64(i % 97), rng.Int32N(5)} }, 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := make([]tokenEntry, tt.n)
			for i := range e {
				e[i] = tt.gen(i)
			}
			want := slices.Clone(e)
			slices.SortFunc(want, compareEntries)
			if got := sortEntries(e); !slices.Equal(got, want) {
				t.Error("bucket sort disagrees with slices.SortFunc")
			}
		})
	}
}

func TestIdxSet(t *testing.T) {
	for _, size := range []int{1, 8, 9, 64, 65, 1000} {
		var s idxSet
		for round := range 2 {
			s.reset(size)
			for x := range size {
				if !s.add(int32(x)) {
					t.Fatalf("size %d round %d: add(%d) reported present", size, round, x)
				}
				if s.add(int32(x)) || s.add(0) {
					t.Fatalf("size %d round %d: re-add of a member reported absent", size, round)
				}
				if s.len() != x+1 {
					t.Fatalf("size %d round %d: len %d after %d adds", size, round, s.len(), x+1)
				}
			}
		}
	}
}
