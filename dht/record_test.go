package dht_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// TestRecordFromEarlierRelease: a record stored or sent with one expiry for
// the whole record (Record.expires_at) decodes with that expiry on every
// value version that has none of its own; tombstones and versions with
// their own expiry keep theirs, and encoding writes per-version expiries
// only.
func TestRecordFromEarlierRelease(t *testing.T) {
	old := &pb.Record{
		Versions: []*pb.Version{
			{Value: []byte("a"), Dot: &pb.Dot{Actor: 1, Counter: 1}},
			{Tombstone: true, Dot: &pb.Dot{Actor: 2, Counter: 1}},
			{Value: []byte("c"), Dot: &pb.Dot{Actor: 3, Counter: 1}, ExpiresAt: 7},
		},
		ExpiresAt: 99,
	}
	b, err := proto.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dht.UnmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{99, 0, 7} {
		if got := rec.Versions[i].ExpiresAt; got != want {
			t.Errorf("version %d: ExpiresAt %d, want %d", i, got, want)
		}
	}
	again, err := dht.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m pb.Record
	if err := proto.Unmarshal(again, &m); err != nil || m.ExpiresAt != 0 || m.Versions[0].ExpiresAt != 99 {
		t.Fatalf("re-encoded: record expiry %d, first version's %d (%v); want 0 and 99", m.ExpiresAt, m.Versions[0].GetExpiresAt(), err)
	}
}

func TestVersionLiveness(t *testing.T) {
	tests := []struct {
		name string
		v    dht.Version
		now  int64
		live bool
		died int64
		dies bool
	}{
		{"value", dht.Version{Value: []byte("v"), Timestamp: 5}, 100, true, 0, false},
		{"tombstone", dht.Version{Tombstone: true, Timestamp: 5}, 100, false, 5, true},
		{"value before its expiry", dht.Version{Value: []byte("v"), ExpiresAt: 50}, 49, true, 50, true},
		{"value at its expiry", dht.Version{Value: []byte("v"), ExpiresAt: 50}, 50, false, 50, true},
	}
	for _, tt := range tests {
		if got := tt.v.LiveAt(tt.now); got != tt.live {
			t.Errorf("%s: LiveAt(%d) = %v, want %v", tt.name, tt.now, got, tt.live)
		}
		if at, ok := tt.v.DiedAt(); at != tt.died || ok != tt.dies {
			t.Errorf("%s: DiedAt() = %d, %v; want %d, %v", tt.name, at, ok, tt.died, tt.dies)
		}
	}
	r := dht.Record{Versions: []dht.Version{{Tombstone: true}, {Value: []byte("v"), ExpiresAt: 50}}}
	if r.DeletedAt(49) || !r.DeletedAt(50) || !(dht.Record{}).DeletedAt(0) {
		t.Errorf("DeletedAt: %v at 49, %v at 50, empty %v; want false, true, true", r.DeletedAt(49), r.DeletedAt(50), (dht.Record{}).DeletedAt(0))
	}
}
