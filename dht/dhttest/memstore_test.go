package dhttest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
)

func rec(value string) dht.Record {
	return dht.Record{
		Versions: []dht.Version{{Value: []byte(value), Dot: dht.Dot{Actor: 1, Counter: 1}}},
		Context:  []dht.Dot{{Actor: 1, Counter: 1}},
	}
}

func value(r dht.Record) string {
	if len(r.Versions) == 0 {
		return ""
	}
	return string(r.Versions[0].Value)
}

// scanKeys returns the keys Scan visits in [start, end).
func scanKeys(t *testing.T, s *dhttest.MemStore, start, end []byte) []string {
	t.Helper()
	var out []string
	err := s.Scan(context.Background(), start, end, func(k []byte, _ dht.Record) error {
		out = append(out, string(k))
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

func TestMemStoreOps(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		ops       func(s *dhttest.MemStore) error
		get       string
		wantValue string // "" means ErrNotFound
		wantScan  []string
		wantCount int64 // live records with prefix "k"
	}{
		{
			name:     "empty",
			ops:      func(*dhttest.MemStore) error { return nil },
			get:      "k1",
			wantScan: nil,
		},
		{
			name: "put get",
			ops: func(s *dhttest.MemStore) error {
				return s.Put(ctx, []byte("k1"), rec("a"))
			},
			get: "k1", wantValue: "a", wantScan: []string{"k1"}, wantCount: 1,
		},
		{
			name: "replace",
			ops: func(s *dhttest.MemStore) error {
				return errors.Join(s.Put(ctx, []byte("k1"), rec("a")), s.Put(ctx, []byte("k1"), rec("b")))
			},
			get: "k1", wantValue: "b", wantScan: []string{"k1"}, wantCount: 1,
		},
		{
			name: "delete and delete absent",
			ops: func(s *dhttest.MemStore) error {
				return errors.Join(s.Put(ctx, []byte("k1"), rec("a")), s.Delete(ctx, []byte("k1")), s.Delete(ctx, []byte("zz")))
			},
			get: "k1",
		},
		{
			name: "ordered batch",
			ops: func(s *dhttest.MemStore) error {
				return s.PutBatch(ctx, []dht.Entry{
					{Key: []byte("k3"), Record: rec("3")},
					{Key: []byte("a"), Record: rec("a")},
					{Key: []byte("k1"), Record: rec("1")},
					{Key: []byte("k2"), Record: rec("2")},
				})
			},
			get: "k2", wantValue: "2", wantScan: []string{"a", "k1", "k2", "k3"}, wantCount: 3,
		},
		{
			name: "batch refused whole",
			ops: func(s *dhttest.MemStore) error {
				err := s.PutBatch(ctx, []dht.Entry{{Key: []byte("k1"), Record: rec("a")}, {Key: nil}})
				if err == nil {
					return errors.New("batch with an empty key accepted")
				}
				return nil
			},
			get: "k1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dhttest.NewMemStore()
			if err := tt.ops(s); err != nil {
				t.Fatal(err)
			}
			r, err := s.Get(ctx, []byte(tt.get))
			switch {
			case tt.wantValue == "" && !errors.Is(err, dht.ErrNotFound):
				t.Errorf("Get(%q) = %q, %v; want ErrNotFound", tt.get, value(r), err)
			case tt.wantValue != "" && (err != nil || value(r) != tt.wantValue):
				t.Errorf("Get(%q) = %q, %v; want %q", tt.get, value(r), err, tt.wantValue)
			}
			if got := scanKeys(t, s, nil, nil); fmt.Sprint(got) != fmt.Sprint(tt.wantScan) {
				t.Errorf("Scan = %q, want %q", got, tt.wantScan)
			}
			if n, err := s.Count(ctx, []byte("k")); err != nil || n != tt.wantCount {
				t.Errorf("Count(k) = %d, %v; want %d", n, err, tt.wantCount)
			}
		})
	}
}

func TestMemStoreScanBounds(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	var all []string
	for i := range 300 { // more than one Scan chunk
		k := fmt.Sprintf("k%03d", i)
		all = append(all, k)
		if err := s.Put(ctx, []byte(k), rec(k)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		start, end string
		want       []string
	}{
		{"", "", all},
		{"k100", "k103", all[100:103]},
		{"k0995", "k101", all[100:101]},
		{"k299", "", all[299:]},
		{"l", "", nil},
		{"k150", "k150", nil},
	}
	for _, tt := range tests {
		var end []byte
		if tt.end != "" {
			end = []byte(tt.end)
		}
		got := scanKeys(t, s, []byte(tt.start), end)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Scan[%q, %q) = %d keys %q..., want %d", tt.start, tt.end, len(got), head(got), len(tt.want))
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.Scan(ctx, nil, nil, func([]byte, dht.Record) error {
		if n++; n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("Scan stopped after %d calls with %v, want 5 and the callback's error", n, err)
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

// TestMemStoreScanWritesDuringScan checks that fn may write to the store
// it scans (no deadlock), and that the key buffer is not valid after fn.
func TestMemStoreScanWritesDuringScan(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	for i := range 200 {
		if err := s.Put(ctx, fmt.Appendf(nil, "k%03d", i), rec("v")); err != nil {
			t.Fatal(err)
		}
	}
	var kept [][]byte
	err := s.Scan(ctx, nil, nil, func(k []byte, _ dht.Record) error {
		kept = append(kept, k)
		return s.Delete(ctx, k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 || s.Size() != 0 {
		t.Errorf("after deleting during a scan: %d records, %d bytes; want none", s.Len(), s.Size())
	}
	if len(kept) != 200 || bytes.Equal(kept[0], []byte("k000")) {
		t.Errorf("a key kept past its callback still reads %q", kept[0])
	}
}

func TestMemStoreSize(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	r := rec("value")
	enc, err := dht.MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, []byte("key"), r); err != nil {
		t.Fatal(err)
	}
	if want := int64(len("key") + len(enc)); s.Size() != want {
		t.Errorf("Size = %d, want key+encoded record = %d", s.Size(), want)
	}
	if err := s.Delete(ctx, []byte("key")); err != nil || s.Size() != 0 || s.Len() != 0 {
		t.Errorf("after delete: Size %d Len %d, %v; want 0, 0", s.Size(), s.Len(), err)
	}
}

func TestMemStoreRecordsAreCopies(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	r := rec("abc")
	if err := s.Put(ctx, []byte("k"), r); err != nil {
		t.Fatal(err)
	}
	r.Versions[0].Value[0] = 'X'
	got, err := s.Get(ctx, []byte("k"))
	if err != nil || value(got) != "abc" {
		t.Fatalf("stored record changed with the caller's: %q, %v", value(got), err)
	}
	got.Versions[0].Value[0] = 'Y'
	again, _ := s.Get(ctx, []byte("k"))
	if value(again) != "abc" {
		t.Fatalf("stored record changed with a reader's: %q", value(again))
	}
}

func TestMemStoreOnWrite(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	var mu sync.Mutex
	var seen []string
	s.OnWrite(func(k []byte) {
		mu.Lock()
		seen = append(seen, string(k))
		mu.Unlock()
	})
	_ = s.Put(ctx, []byte("a"), rec("1"))
	_ = s.PutBatch(ctx, []dht.Entry{{Key: []byte("b"), Record: rec("2")}, {Key: []byte("c"), Record: rec("3")}})
	_ = s.Delete(ctx, []byte("a"))
	s.OnWrite(nil)
	_ = s.Put(ctx, []byte("d"), rec("4"))
	if fmt.Sprint(seen) != "[a b c a]" {
		t.Errorf("OnWrite saw %q, want [a b c a]", seen)
	}
}

func TestMemStoreConcurrent(t *testing.T) {
	ctx := context.Background()
	s := dhttest.NewMemStore()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				k := fmt.Appendf(nil, "w%d-%03d", w, i)
				if err := s.Put(ctx, k, rec("v")); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Get(ctx, k); err != nil {
					t.Error(err)
					return
				}
				_ = s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { return nil })
			}
		})
	}
	wg.Wait()
	if n, _ := s.Count(ctx, []byte("w")); n != 400 {
		t.Errorf("Count = %d after 4x100 concurrent puts, want 400", n)
	}
}

// FuzzMemStore runs a program of puts, batches and deletes decoded from
// the input against MemStore and a map, and checks they agree on Get,
// Scan order and Count.
func FuzzMemStore(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 1, 3, 0})
	f.Add([]byte{0, 5, 0, 5, 0, 5, 2, 0, 3, 9})
	f.Add([]byte("\x00\x01\x00\x02\x00\x03\x01\x02\x02\x01\x03\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, prog []byte) {
		ctx := context.Background()
		s := dhttest.NewMemStore()
		model := map[string]dht.Record{}
		for len(prog) >= 2 {
			op, arg := prog[0]%3, prog[1]
			prog = prog[2:]
			key := fmt.Sprintf("k%02d", arg%32)
			switch op {
			case 0: // put
				r := rec(fmt.Sprint(arg))
				model[key] = r
				if err := s.Put(ctx, []byte(key), r); err != nil {
					t.Fatal(err)
				}
			case 1: // a batch of this key and the next
				next := fmt.Sprintf("k%02d", (arg+1)%32)
				r := rec(fmt.Sprint(arg))
				model[key], model[next] = r, r
				if err := s.PutBatch(ctx, []dht.Entry{{Key: []byte(key), Record: r}, {Key: []byte(next), Record: r}}); err != nil {
					t.Fatal(err)
				}
			case 2:
				delete(model, key)
				if err := s.Delete(ctx, []byte(key)); err != nil {
					t.Fatal(err)
				}
			}
		}
		var want []string
		for k := range model {
			want = append(want, k)
		}
		sort.Strings(want)
		if got := scanKeys(t, s, nil, nil); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Scan = %q, model has %q", got, want)
		}
		for _, k := range want {
			r, err := s.Get(ctx, []byte(k))
			if err != nil || value(r) != value(model[k]) {
				t.Fatalf("Get(%q) = %q, %v; model has %q", k, value(r), err, value(model[k]))
			}
		}
		if n, _ := s.Count(ctx, []byte("k")); n != int64(len(want)) {
			t.Fatalf("Count = %d, model has %d keys", n, len(want))
		}
	})
}
