package replica_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

func TestDataKey(t *testing.T) {
	tests := []struct {
		name string
		pos  uint64
		key  string
	}{
		{"zero position", 0, "a"},
		{"last position", math.MaxUint64, "zzz"},
		{"binary key", 1 << 40, "\x00\xff\x00"},
		{"long key", 12345, string(bytes.Repeat([]byte("k"), 70000))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sk := replica.DataKey(tt.pos, []byte(tt.key))
			if !bytes.HasPrefix(sk, replica.DataPrefix()) {
				t.Fatalf("data key %x lacks the data prefix", sk[:9])
			}
			pos, key, ok := replica.ParseDataKey(sk)
			if !ok || pos != tt.pos || string(key) != tt.key {
				t.Fatalf("parsed %d %q %v", pos, key, ok)
			}
			start, end := replica.DataSpan(tt.pos, tt.pos)
			if bytes.Compare(sk, start) < 0 || (end != nil && bytes.Compare(sk, end) >= 0) {
				t.Fatalf("data key outside DataSpan(%d, %d)", tt.pos, tt.pos)
			}
		})
	}
}

func TestParseDataKeyRejects(t *testing.T) {
	tests := []struct {
		name string
		sk   []byte
	}{
		{"empty", nil},
		{"kind only", []byte{'d'}},
		{"no user key", replica.DataKey(7, nil)},
		{"hint kind", append([]byte{'h'}, replica.DataKey(7, []byte("k"))[1:]...)},
		{"unknown kind", append([]byte{'x'}, replica.DataKey(7, []byte("k"))[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, ok := replica.ParseDataKey(tt.sk); ok {
				t.Fatalf("ParseDataKey(%x) accepted", tt.sk)
			}
		})
	}
}

// TestDataSpan checks that a span holds exactly the data keys of its
// positions, so one ring arc is one store range.
func TestDataSpan(t *testing.T) {
	tests := []struct {
		name     string
		from, to uint64
	}{
		{"one position", 100, 100},
		{"range", 100, 200},
		{"from zero", 0, 5},
		{"to the last position", math.MaxUint64 - 3, math.MaxUint64},
		{"whole ring", 0, math.MaxUint64},
	}
	in := func(sk, start, end []byte) bool {
		return bytes.Compare(sk, start) >= 0 && (end == nil || bytes.Compare(sk, end) < 0)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := replica.DataSpan(tt.from, tt.to)
			for _, pos := range []uint64{tt.from, tt.to, tt.from + (tt.to-tt.from)/2} {
				if !in(replica.DataKey(pos, []byte("\xff\xff")), start, end) {
					t.Fatalf("position %d outside its span", pos)
				}
			}
			if tt.from > 0 && in(replica.DataKey(tt.from-1, []byte("\xff")), start, end) {
				t.Fatal("position before the span inside it")
			}
			if tt.to < math.MaxUint64 && in(replica.DataKey(tt.to+1, []byte("a")), start, end) {
				t.Fatal("position after the span inside it")
			}
			if in(replica.HintKey(tt.from, []byte("a"), ringtest.PeerID(1, 0)), start, end) {
				t.Fatal("hint key inside a data span")
			}
		})
	}
}

func TestHintKey(t *testing.T) {
	owner := ringtest.PeerID(1, 0)
	tests := []struct {
		name   string
		pos    uint64
		key    string
		target peer.ID
	}{
		{"plain", 42, "key", owner},
		{"key that looks like a peer ID", 1, string(owner), ringtest.PeerID(1, 1)},
		{"longest representable key", math.MaxUint64, string(bytes.Repeat([]byte("k"), math.MaxUint16)), owner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sk := replica.HintKey(tt.pos, []byte(tt.key), tt.target)
			if !bytes.HasPrefix(sk, replica.HintPrefix()) {
				t.Fatal("hint key lacks the hint prefix")
			}
			pos, key, target, ok := replica.ParseHintKey(sk)
			if !ok || pos != tt.pos || string(key) != tt.key || target != tt.target {
				t.Fatalf("parsed %d %q %s %v", pos, key, target, ok)
			}
		})
	}
}

func TestParseHintKeyRejects(t *testing.T) {
	full := replica.HintKey(9, []byte("key"), ringtest.PeerID(1, 0))
	tests := []struct {
		name string
		sk   []byte
	}{
		{"empty", nil},
		{"header only", full[:11]},
		{"no target", full[:11+3]},
		{"key cut short", full[:12]},
		{"data kind", replica.DataKey(9, []byte("key-and-more-bytes"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, ok := replica.ParseHintKey(tt.sk); ok {
				t.Fatalf("ParseHintKey(%x) accepted", tt.sk)
			}
		})
	}
}

// FuzzParseDataKey: a data key that parses re-encodes to itself.
func FuzzParseDataKey(f *testing.F) {
	f.Add(replica.DataKey(1, []byte("k")))
	f.Add(replica.DataKey(math.MaxUint64, []byte("\x00")))
	f.Add([]byte{'d', 0, 0})
	f.Add([]byte{'h'})
	f.Fuzz(func(t *testing.T, sk []byte) {
		pos, key, ok := replica.ParseDataKey(sk)
		if !ok {
			return
		}
		if got := replica.DataKey(pos, key); !bytes.Equal(got, sk) {
			t.Fatalf("DataKey(ParseDataKey(%x)) = %x", sk, got)
		}
	})
}

// FuzzParseHintKey: a hint key that parses re-encodes to itself.
func FuzzParseHintKey(f *testing.F) {
	f.Add(replica.HintKey(1, []byte("k"), ringtest.PeerID(1, 0)))
	f.Add(replica.HintKey(0, []byte("\xff\xff"), "x"))
	f.Add([]byte{'h', 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1})
	f.Add([]byte{'d'})
	f.Fuzz(func(t *testing.T, sk []byte) {
		pos, key, target, ok := replica.ParseHintKey(sk)
		if !ok {
			return
		}
		if target == "" {
			t.Fatalf("ParseHintKey(%x) accepted an empty target", sk)
		}
		if got := replica.HintKey(pos, key, target); !bytes.Equal(got, sk) {
			t.Fatalf("HintKey(ParseHintKey(%x)) = %x", sk, got)
		}
	})
}
