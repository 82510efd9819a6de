package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/dht"
)

func TestScanRanges(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	// Stored out of order; binary keys around the edges of the byte range.
	all := [][]byte{
		{0xff, 0xff}, {0x00}, []byte("b"), {0xff}, {}, []byte("a"), {0x00, 0x00}, []byte("ab"), {0x00, 0xff}, []byte("c"),
	}
	for _, k := range all {
		if err := s.Put(ctx, k, rec(fmt.Sprintf("%x", k))); err != nil {
			t.Fatal(err)
		}
	}
	ordered := `["" "\x00" "\x00\x00" "\x00\xff" "a" "ab" "b" "c" "\xff" "\xff\xff"]`
	tests := []struct {
		name       string
		start, end []byte
		want       string
	}{
		{"everything", nil, nil, ordered},
		{"empty start is the first key", []byte{}, nil, ordered},
		{"start inclusive end exclusive", []byte("a"), []byte("c"), `["a" "ab" "b"]`},
		{"nil end is unbounded", []byte("b"), nil, `["b" "c" "\xff" "\xff\xff"]`},
		{"zero bytes", []byte{0x00}, []byte{0x01}, `["\x00" "\x00\x00" "\x00\xff"]`},
		{"0xff keys", []byte{0xff}, nil, `["\xff" "\xff\xff"]`},
		{"end below all but the empty key", nil, []byte{0x00}, `[""]`},
		{"start between keys", []byte("aa"), []byte("b\x00"), `["ab" "b"]`},
		{"start equals end", []byte("b"), []byte("b"), "[]"},
		{"start after end", []byte("c"), []byte("a"), "[]"},
		{"empty end", nil, []byte{}, "[]"},
		{"past the last key", []byte{0xff, 0xff, 0x00}, nil, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, values := scanAll(t, s, tt.start, tt.end)
			if got := fmt.Sprintf("%q", keys); got != tt.want {
				t.Fatalf("Scan(%x, %x) keys = %s, want %s", tt.start, tt.end, got, tt.want)
			}
			for i, k := range keys {
				if values[i] != fmt.Sprintf("%x", k) {
					t.Fatalf("key %x has value %q", k, values[i])
				}
			}
		})
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	for i := range 10 {
		mustPut(t, s, fmt.Sprint(i), "v")
	}
	stop := errors.New("enough")
	var seen []string
	err := s.Scan(ctx, nil, nil, func(k []byte, _ dht.Record) error {
		seen = append(seen, string(k))
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Scan = %v, want the callback's error itself", err)
	}
	if fmt.Sprint(seen) != "[0 1 2]" {
		t.Fatalf("Scan visited %v after stopping, want [0 1 2]", seen)
	}
}

// TestScanCallbackMayWrite checks that a callback can write to the store.
func TestScanCallbackMayWrite(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	for i := range 5 {
		mustPut(t, s, fmt.Sprint("k", i), "old")
	}
	// Rewriting every key from the callback must neither deadlock nor make
	// the scan see its own writes (it reads one snapshot).
	n := 0
	err := s.Scan(ctx, nil, nil, func(k []byte, r dht.Record) error {
		n++
		if recValue(r) != "old" {
			return fmt.Errorf("scan saw its own write on %s", k)
		}
		if err := s.Put(ctx, bytes.Clone(k), rec("new")); err != nil {
			return err
		}
		return s.Put(ctx, append(bytes.Clone(k), 'x'), rec("new"))
	})
	if err != nil || n != 5 {
		t.Fatalf("Scan = %v after %d keys, want nil after 5", err, n)
	}
	if c, err := s.Count(ctx, nil); err != nil || c != 10 {
		t.Fatalf("Count = %d, %v; want 10", c, err)
	}
}

func TestCount(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	for _, k := range []string{"a/1", "a/2", "a/3", "ab", "b/1", "\x00", "\xff\xff"} {
		mustPut(t, s, k, "v")
	}
	if err := s.Delete(ctx, []byte("a/3")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix []byte
		want   int64
	}{
		{nil, 6},
		{[]byte{}, 6},
		{[]byte("a"), 3},
		{[]byte("a/"), 2},
		{[]byte("a/1"), 1},
		{[]byte("a/10"), 0},
		{[]byte("b"), 1},
		{[]byte("c"), 0},
		{[]byte{0x00}, 1},
		{[]byte{0xff}, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			got, err := s.Count(ctx, tt.prefix)
			if err != nil || got != tt.want {
				t.Fatalf("Count(%q) = %d, %v; want %d", tt.prefix, got, err, tt.want)
			}
		})
	}
}
