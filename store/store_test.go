package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

func TestPutGetDelete(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	tests := []struct {
		name string
		key  []byte
		rec  dht.Record
	}{
		{"plain", []byte("k1"), rec("v1")},
		{"empty key", []byte{}, rec("empty")},
		{"binary key", []byte{0x00, 0xff, 0x00}, rec("bin")},
		{"empty record", []byte("nothing"), dht.Record{}},
		{"tombstone", []byte("gone"), dht.Record{Versions: []dht.Version{{Tombstone: true, Dot: dht.Dot{Actor: 1, Counter: 2}}}}},
		{"siblings", []byte("sib"), dht.Record{
			Versions: []dht.Version{{Value: []byte("a"), Dot: dht.Dot{Actor: 1, Counter: 1}}, {Value: []byte("b"), Dot: dht.Dot{Actor: 2, Counter: 1}}},
			Context:  []dht.Dot{{Actor: 1, Counter: 1}, {Actor: 2, Counter: 1}},
		}},
		{"large value in value log", []byte("big"), dht.Record{Versions: []dht.Version{{Value: bytes.Repeat([]byte("x"), 3<<20)}}}},
		{"max key", bytes.Repeat([]byte{0xff}, store.MaxKeySize), rec("long key")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Put(ctx, tt.key, tt.rec); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := s.Get(ctx, tt.key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !recordsEqual(got, tt.rec) {
				t.Fatalf("Get = %+v, want %+v", got, tt.rec)
			}
			if err := s.Delete(ctx, tt.key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.Get(ctx, tt.key); !errors.Is(err, dht.ErrNotFound) {
				t.Fatalf("Get after Delete: err = %v, want dht.ErrNotFound", err)
			}
		})
	}
}

// recordsEqual compares records by their stored form, so nil and empty
// slices are equal.
func recordsEqual(a, b dht.Record) bool {
	ea, err1 := dht.MarshalRecord(a)
	eb, err2 := dht.MarshalRecord(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

func TestGetMissingAndDeleteAbsent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	if _, err := s.Get(ctx, []byte("never")); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("Get(never written): err = %v, want dht.ErrNotFound", err)
	}
	if err := s.Delete(ctx, []byte("never")); err != nil {
		t.Fatalf("Delete(absent) = %v, want nil", err)
	}
}

func TestOverwrite(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	for i := range 5 {
		mustPut(t, s, "k", fmt.Sprint("v", i))
	}
	got, err := s.Get(ctx, []byte("k"))
	if err != nil || recValue(got) != "v4" {
		t.Fatalf("Get = %q, %v; want v4", recValue(got), err)
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1", n, err)
	}
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	long := make([]byte, store.MaxKeySize+1)
	huge := dht.Record{Versions: []dht.Version{{Value: make([]byte, dht.MaxRecordSize)}}}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"put long key", func() error { return s.Put(ctx, long, rec("v")) }, store.ErrInvalidKey},
		{"get long key", func() error { _, err := s.Get(ctx, long); return err }, store.ErrInvalidKey},
		{"delete long key", func() error { return s.Delete(ctx, long) }, store.ErrInvalidKey},
		{"batch long key", func() error {
			return s.PutBatch(ctx, []dht.Entry{{Key: []byte("ok"), Record: rec("v")}, {Key: long, Record: rec("v")}})
		}, store.ErrInvalidKey},
		{"record too large", func() error { return s.Put(ctx, []byte("huge"), huge) }, dht.ErrRecordTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 0 {
		t.Fatalf("Count after rejected writes = %d, %v; want 0", n, err)
	}
}

func TestPutBatch(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	entries := []dht.Entry{
		{Key: []byte("a"), Record: rec("1")},
		{Key: []byte("b"), Record: rec("2")},
		{Key: []byte("a"), Record: rec("3")}, // later entry wins
	}
	if err := s.PutBatch(ctx, entries); err != nil {
		t.Fatalf("PutBatch: %v", err)
	}
	keys, values := scanAll(t, s, nil, nil)
	if got := fmt.Sprintf("%q %q", keys, values); got != `["a" "b"] ["3" "2"]` {
		t.Fatalf("after batch: %s", got)
	}
	if err := s.PutBatch(ctx, nil); err != nil {
		t.Fatalf("PutBatch(nil) = %v", err)
	}
}

func TestPutBatchTooLargeWritesNothing(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	s := openStore(t, cfg)
	// Values below ValueThreshold count in full against the batch limit.
	value := strings.Repeat("v", int(cfg.ValueThreshold)/2)
	n := int(s.MaxBatchBytes())/len(value) + 10
	entries := make([]dht.Entry, n)
	for i := range entries {
		entries[i] = dht.Entry{Key: fmt.Appendf(nil, "k%06d", i), Record: rec(value)}
	}
	if err := s.PutBatch(ctx, entries); !errors.Is(err, store.ErrBatchTooLarge) {
		t.Fatalf("PutBatch(%d entries) = %v, want ErrBatchTooLarge", n, err)
	}
	if c, err := s.Count(ctx, nil); err != nil || c != 0 {
		t.Fatalf("Count after failed batch = %d, %v; want 0", c, err)
	}
	if err := s.PutBatch(ctx, entries[:n/2]); err != nil {
		t.Fatalf("PutBatch(half) = %v", err)
	}
}

// TestPutBatchAtomicToReaders checks that a concurrent Scan sees every batch
// whole: all keys of one generation or all of the next, never a mix.
func TestPutBatchAtomicToReaders(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	const keys, generations = 20, 200
	batch := func(g int) []dht.Entry {
		e := make([]dht.Entry, keys)
		for i := range e {
			e[i] = dht.Entry{Key: fmt.Appendf(nil, "k%02d", i), Record: rec(fmt.Sprint(g))}
		}
		return e
	}
	if err := s.PutBatch(ctx, batch(0)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for g := 1; g <= generations; g++ {
			if err := s.PutBatch(ctx, batch(g)); err != nil {
				t.Errorf("PutBatch(%d): %v", g, err)
				return
			}
		}
	}()
	scans := 0
	for done := false; !done; scans++ {
		_, values := scanAll(t, s, nil, nil)
		if len(values) != keys {
			t.Fatalf("scan saw %d keys, want %d", len(values), keys)
		}
		for _, v := range values {
			if v != values[0] {
				t.Fatalf("scan saw a partial batch: %q", values)
			}
		}
		done = values[0] == fmt.Sprint(generations)
	}
	wg.Wait()
	t.Logf("%d consistent scans", scans)
}

func TestReopenKeepsData(t *testing.T) {
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprint("sync=", sync), func(t *testing.T) {
			ctx := context.Background()
			cfg := testConfig(t)
			cfg.SyncWrites = sync
			s, err := store.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, "kept", "v")
			mustPut(t, s, "deleted", "v")
			if err := s.Delete(ctx, []byte("deleted")); err != nil {
				t.Fatal(err)
			}
			big := strings.Repeat("x", 64<<10) // goes to the value log
			mustPut(t, s, "big", big)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s = openStore(t, cfg)
			if got, err := s.Get(ctx, []byte("kept")); err != nil || recValue(got) != "v" {
				t.Fatalf("Get(kept) after reopen = %q, %v", recValue(got), err)
			}
			if got, err := s.Get(ctx, []byte("big")); err != nil || recValue(got) != big {
				t.Fatalf("Get(big) after reopen: %v", err)
			}
			if _, err := s.Get(ctx, []byte("deleted")); !errors.Is(err, dht.ErrNotFound) {
				t.Fatalf("Get(deleted) after reopen: err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.SyncWrites = true
	s := openStore(t, cfg)
	const writers, perWriter = 16, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				key := fmt.Appendf(nil, "w%02d-%03d", w, i)
				if err := s.Put(ctx, key, rec(string(key))); err != nil {
					t.Errorf("Put(%s): %v", key, err)
					return
				}
				// Everyone also fights over one key.
				if err := s.Put(ctx, []byte("shared"), rec(string(key))); err != nil {
					t.Errorf("Put(shared): %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n, err := s.Count(ctx, []byte("w"))
	if err != nil || n != writers*perWriter {
		t.Fatalf("Count(w) = %d, %v; want %d", n, err, writers*perWriter)
	}
	for w := range writers {
		key := fmt.Appendf(nil, "w%02d-%03d", w, perWriter-1)
		if got, err := s.Get(ctx, key); err != nil || recValue(got) != string(key) {
			t.Fatalf("Get(%s) = %q, %v", key, recValue(got), err)
		}
	}
	if _, err := s.Get(ctx, []byte("shared")); err != nil {
		t.Fatalf("Get(shared): %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openStore(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Put":      func() error { return s.Put(ctx, []byte("k"), rec("v")) },
		"PutBatch": func() error { return s.PutBatch(ctx, []dht.Entry{{Key: []byte("k")}}) },
		"Delete":   func() error { return s.Delete(ctx, []byte("k")) },
		"Get":      func() error { _, err := s.Get(ctx, []byte("k")); return err },
		"Scan":     func() error { return s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { return nil }) },
		"Count":    func() error { _, err := s.Count(ctx, nil); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx: err = %v, want context.Canceled", name, err)
		}
	}
}

func TestUseAfterClose(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	var wg sync.WaitGroup
	for range 3 { // concurrent and repeated Close are fine
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"Put":      func() error { return s.Put(ctx, []byte("k"), rec("v")) },
		"PutBatch": func() error { return s.PutBatch(ctx, []dht.Entry{{Key: []byte("k")}}) },
		"Delete":   func() error { return s.Delete(ctx, []byte("k")) },
		"Get":      func() error { _, err := s.Get(ctx, []byte("k")); return err },
		"Scan":     func() error { return s.Scan(ctx, nil, nil, func([]byte, dht.Record) error { return nil }) },
		"Count":    func() error { _, err := s.Count(ctx, nil); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, store.ErrClosed) || !errors.Is(err, dht.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want store.ErrClosed and dht.ErrClosed", name, err)
		}
	}
}

// TestCloseDuringScanCallback checks that a call made from a Scan callback
// while Close waits is refused rather than deadlocking.
func TestCloseDuringScanCallback(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	closed := make(chan error, 1)
	var inner error
	err = s.Scan(ctx, nil, nil, func(k []byte, _ dht.Record) error {
		if string(k) != "a" {
			_, inner = s.Get(ctx, []byte("a"))
			return nil
		}
		go func() { closed <- s.Close() }()
		// Close is now waiting for this Scan; wait until it refuses calls.
		waitFor(t, 5*time.Second, "Close to start refusing calls", func() bool {
			_, err := s.Count(ctx, nil)
			return errors.Is(err, store.ErrClosed)
		})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if !errors.Is(inner, store.ErrClosed) {
		t.Fatalf("Get inside Scan during Close: err = %v, want ErrClosed", inner)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testConfig(t))
	mustPut(t, s, "a", "fine")
	// 0xff 0xff is an invalid protobuf tag (field 0 / truncated varint).
	if err := s.PutRawForTest([]byte("b"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, []byte("b")); !errors.Is(err, dht.ErrCorruptRecord) {
		t.Fatalf("Get(corrupt): err = %v, want dht.ErrCorruptRecord", err)
	}
	var seen []string
	err := s.Scan(ctx, nil, nil, func(k []byte, _ dht.Record) error {
		seen = append(seen, string(k))
		return nil
	})
	if !errors.Is(err, dht.ErrCorruptRecord) {
		t.Fatalf("Scan over corrupt record: err = %v, want dht.ErrCorruptRecord", err)
	}
	if len(seen) != 1 || seen[0] != "a" {
		t.Fatalf("Scan yielded %q before the corrupt record, want [a]", seen)
	}
	if got, err := s.Get(ctx, []byte("a")); err != nil || recValue(got) != "fine" {
		t.Fatalf("Get(a) next to corrupt record = %q, %v", recValue(got), err)
	}
}

func TestSize(t *testing.T) {
	cfg := testConfig(t)
	cfg.SyncWrites = true // fsync makes the file system allocate blocks now
	s := openStore(t, cfg)
	empty := s.Size()
	if empty <= 0 {
		t.Fatalf("Size of empty store = %d, want > 0 (manifest, logs)", empty)
	}
	value := strings.Repeat("z", 64<<10)
	for i := range 64 { // 4 MiB
		mustPut(t, s, fmt.Sprint("k", i), value)
	}
	waitFor(t, 10*time.Second, "Size to grow by 4 MiB", func() bool { return s.Size() >= empty+4<<20 })
	t.Logf("Size: empty %d bytes, after 4 MiB of records %d bytes", empty, s.Size())
}

// PutEach stores each valid entry, fails a bad one alone, and after Close
// fails them all.
func TestPutEach(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.SyncWrites = true
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	entries := []dht.Entry{
		{Key: []byte("a"), Record: rec("1")},
		{Key: []byte(strings.Repeat("k", store.MaxKeySize+1)), Record: rec("too long a key")},
		{Key: []byte("b"), Record: rec("2")},
		{Key: []byte("a"), Record: rec("3")}, // later entries of a key win
	}
	errs := s.PutEach(ctx, entries)
	if len(errs) != 4 || errs[0] != nil || errs[1] == nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("PutEach errors = %v, want only the second to fail", errs)
	}
	for key, want := range map[string]string{"a": "3", "b": "2"} {
		if got, err := s.Get(ctx, []byte(key)); err != nil || recValue(got) != want {
			t.Fatalf("Get(%s) = %q, %v; want %q", key, recValue(got), err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, err := range s.PutEach(ctx, entries[:1]) {
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("PutEach after Close: errs[%d] = %v, want ErrClosed", i, err)
		}
	}
}
