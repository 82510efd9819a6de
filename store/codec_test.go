package store

import (
	"bytes"
	"math"
	"testing"
	"time"
)

func TestBadgerExpiry(t *testing.T) {
	sec := int64(time.Second)
	tests := []struct {
		ns   int64
		want uint64
	}{
		{0, 0},
		{-1, 1},
		{math.MinInt64, 1},
		{1, 1},
		{sec, 1},
		{sec + 1, 2},
		{1700000000*sec + 500, 1700000001},
		{1700000000 * sec, 1700000000},
		{math.MaxInt64, math.MaxInt64/uint64(sec) + 1},
	}
	for _, tt := range tests {
		if got := badgerExpiry(tt.ns); got != tt.want {
			t.Errorf("badgerExpiry(%d) = %d, want %d", tt.ns, got, tt.want)
		}
	}
}

func TestClassifyExpiry(t *testing.T) {
	at := func(s, ns int64) time.Time { return time.Unix(s, ns) }
	tests := []struct {
		name string
		sec  uint64
		now  time.Time
		want expiry
	}{
		{"never", 0, at(100, 0), expiryLive},
		{"well before", 200, at(100, 0), expiryLive},
		{"at start of the last second", 101, at(100, 0), expiryLive},
		{"inside the last second", 101, at(100, 1), expiryUnsure},
		{"end of the last second", 101, at(100, int64(time.Second)-1), expiryUnsure},
		{"at the second", 101, at(101, 0), expiryExpired},
		{"after", 101, at(500, 0), expiryExpired},
		{"beyond int64 nanoseconds", math.MaxUint64, at(100, 0), expiryLive},
	}
	for _, tt := range tests {
		if got := classifyExpiry(tt.sec, tt.now); got != tt.want {
			t.Errorf("%s: classifyExpiry(%d, %v) = %d, want %d", tt.name, tt.sec, tt.now.UnixNano(), got, tt.want)
		}
	}
}

// TestClassifyAgreesWithExact checks the keys-only shortcut against the
// exact rule (expired iff ExpiresAt <= now) around second boundaries.
func TestClassifyAgreesWithExact(t *testing.T) {
	base := int64(1_700_000_000) * int64(time.Second)
	offsets := []int64{-int64(time.Second) - 1, -int64(time.Second), -1, 0, 1, int64(time.Second) / 2, int64(time.Second), int64(time.Second) + 1}
	for _, e := range offsets {
		for _, n := range offsets {
			expiresAt, now := base+e, base+n
			exact := expiresAt <= now
			switch classifyExpiry(badgerExpiry(expiresAt), time.Unix(0, now)) {
			case expiryLive:
				if exact {
					t.Errorf("expiresAt %+d now %+d: shortcut says live, record expired", e, n)
				}
			case expiryExpired:
				if !exact {
					t.Errorf("expiresAt %+d now %+d: shortcut says expired, record live", e, n)
				}
			}
		}
	}
}

func TestScanBoundsAndPrefix(t *testing.T) {
	tests := []struct {
		start, end     []byte
		lo, hi, common []byte
	}{
		{nil, nil, []byte("r"), []byte("s"), nil},
		{[]byte("a"), nil, []byte("ra"), []byte("s"), nil},
		{[]byte("ab"), []byte("ac"), []byte("rab"), []byte("rac"), []byte("ra")},
		{[]byte{0xff}, []byte{0xff, 0x00}, []byte("r\xff"), []byte("r\xff\x00"), []byte("r\xff")},
	}
	for _, tt := range tests {
		lo, hi := scanBounds(tt.start, tt.end)
		cp := commonPrefix(lo, hi)
		if !bytes.Equal(lo, tt.lo) || !bytes.Equal(hi, tt.hi) {
			t.Errorf("scanBounds(%q, %q) = %q, %q; want %q, %q", tt.start, tt.end, lo, hi, tt.lo, tt.hi)
		}
		if want := tt.common; want == nil && !bytes.Equal(cp, nil) || want != nil && !bytes.Equal(cp, want) {
			t.Errorf("commonPrefix(%q, %q) = %q, want %q", lo, hi, cp, want)
		}
	}
}
