package store_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/store"
)

// testConfig is DefaultConfig in a fresh temporary directory, without
// fsync (tests that need it turn it on) and with a discarding logger.
func testConfig(t testing.TB) store.Config {
	cfg := store.DefaultConfig(t.TempDir())
	cfg.SyncWrites = false
	cfg.Logger = nil
	return cfg
}

// openStore opens cfg and closes the store when the test ends.
func openStore(t testing.TB, cfg store.Config) *store.Badger {
	t.Helper()
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test if it does not within timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rec is a one-version record holding value.
func rec(value string) dht.Record {
	return dht.Record{
		Versions: []dht.Version{{Value: []byte(value), Dot: dht.Dot{Actor: 7, Counter: 1}, Timestamp: 42}},
		Context:  []dht.Dot{{Actor: 7, Counter: 1}},
	}
}

// recValue is the value of a record made by rec.
func recValue(r dht.Record) string {
	if len(r.Versions) != 1 {
		return fmt.Sprintf("<%d versions>", len(r.Versions))
	}
	return string(r.Versions[0].Value)
}

// mustPut stores rec(value) under key.
func mustPut(t testing.TB, s *store.Badger, key, value string) {
	t.Helper()
	if err := s.Put(context.Background(), []byte(key), rec(value)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// scanAll returns the keys and values Scan yields for [start, end).
func scanAll(t testing.TB, s *store.Badger, start, end []byte) (keys [][]byte, values []string) {
	t.Helper()
	err := s.Scan(context.Background(), start, end, func(k []byte, r dht.Record) error {
		keys = append(keys, bytes.Clone(k))
		values = append(values, recValue(r))
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%x, %x): %v", start, end, err)
	}
	return keys, values
}
