package store

import (
	"bytes"
	"testing"
)

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
