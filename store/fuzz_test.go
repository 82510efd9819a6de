package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ringkv/ringkv/dht"
)

// seedRecords are valid stored forms for the fuzz corpora.
func seedRecords(f *testing.F) [][]byte {
	f.Helper()
	recs := []dht.Record{
		{},
		rec("v"),
		{Versions: []dht.Version{{Tombstone: true, Dot: dht.Dot{Actor: 1, Counter: 9}}}},
		{
			Versions: []dht.Version{{Value: []byte("a"), Dot: dht.Dot{Actor: 1, Counter: 1}, ExpiresAt: 1},
				{Value: []byte{0, 0xff}, Dot: dht.Dot{Actor: 2, Counter: 3}, Timestamp: -1, ExpiresAt: 1 << 62}},
			Context: []dht.Dot{{Actor: 1, Counter: 1}, {Actor: 2, Counter: 3}},
		},
	}
	var out [][]byte
	for _, r := range recs {
		b, err := dht.MarshalRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte{0xff, 0xff}, []byte{0x0a, 0x80}, []byte{0x1a, 0x02, 0x08})
}

// FuzzRecordRoundTrip checks the stored form: whatever decodes re-encodes
// to bytes that decode to the same record, and nothing panics.
func FuzzRecordRoundTrip(f *testing.F) {
	for _, b := range seedRecords(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := dht.UnmarshalRecord(b)
		if err != nil {
			if !errors.Is(err, dht.ErrCorruptRecord) && !errors.Is(err, dht.ErrRecordTooLarge) {
				t.Fatalf("UnmarshalRecord error %v wraps neither ErrCorruptRecord nor ErrRecordTooLarge", err)
			}
			return
		}
		enc, err := dht.MarshalRecord(r)
		if err != nil {
			t.Fatalf("MarshalRecord of a decoded record: %v", err)
		}
		r2, err := dht.UnmarshalRecord(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, err := dht.MarshalRecord(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %x vs %x (%v)", enc, enc2, err)
		}
	})
}

// FuzzStoredBytes writes arbitrary bytes as a stored record and reads them
// back through Get, Scan and Count: each either yields a record or fails
// with dht.ErrCorruptRecord, and none panics.
func FuzzStoredBytes(f *testing.F) {
	for _, b := range seedRecords(f) {
		f.Add(b)
	}
	s := openStore(f, testConfig(f))
	ctx := context.Background()
	key := []byte("fuzz")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := s.PutRawForTest(key, b); err != nil {
			t.Fatal(err)
		}
		check := func(op string, err error) {
			if err != nil && !errors.Is(err, dht.ErrCorruptRecord) && !errors.Is(err, dht.ErrNotFound) {
				t.Fatalf("%s: %v, want a record, ErrNotFound or ErrCorruptRecord", op, err)
			}
		}
		got, err := s.Get(ctx, key)
		check("Get", err)
		if err == nil {
			if _, err := dht.MarshalRecord(got); err != nil {
				t.Fatalf("record from Get does not encode: %v", err)
			}
		}
		check("Scan", s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { return nil }))
		_, err = s.Count(ctx, nil)
		check("Count", err)
	})
}
