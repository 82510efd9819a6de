package dht

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht/pb"
)

// Dot names one write event: the Counter-th write coordinated by Actor.
// Actor is ActorOf(peer ID) of the coordinating replica.
type Dot struct {
	Actor   uint64
	Counter uint64
}

// Version is one sibling of a key: a value or a tombstone, and the dot of
// the write that created it.
type Version struct {
	Value     []byte
	Tombstone bool
	Dot       Dot
	// Timestamp is the coordinator's wall clock at write time, unix
	// nanoseconds. It orders writes in last-writer-wins mode and is shown to
	// users; it never decides causality.
	Timestamp int64
	// WriteID identifies the client write (random, chosen by the node that
	// received it; 0 for none). A write retried through a second
	// coordinator keeps its ID, so replicas keep one version of it.
	WriteID uint64
}

// Record is the state of one key on one replica: its concurrent versions
// (siblings) and the causal context that summarises every write it has
// seen. A record whose versions are all tombstones is a deleted key that is
// kept until every replica holds the tombstone.
type Record struct {
	Versions []Version
	// Context is a version vector: for each actor, the highest counter seen.
	// At most one entry per actor.
	Context []Dot
	// ExpiresAt is the unix-nanosecond time after which the key is gone on
	// every replica; 0 means never.
	ExpiresAt int64
}

// Deleted reports whether every version is a tombstone (or there is none).
func (r Record) Deleted() bool {
	for _, v := range r.Versions {
		if !v.Tombstone {
			return false
		}
	}
	return true
}

// Expired reports whether the record has an expiry at or before now.
func (r Record) Expired(now time.Time) bool {
	return r.ExpiresAt != 0 && r.ExpiresAt <= now.UnixNano()
}

// Size is the number of value bytes the record carries.
func (r Record) Size() int {
	n := 0
	for _, v := range r.Versions {
		n += len(v.Value)
	}
	return n
}

// MaxRecordSize bounds a decoded record, so a corrupt or hostile input cannot
// make a node allocate without limit. It leaves room for siblings of
// maximum-size values.
const MaxRecordSize = 64 << 20

// MarshalRecord encodes r in its stored and wire form.
func MarshalRecord(r Record) ([]byte, error) {
	return proto.Marshal(RecordToPB(r))
}

// UnmarshalRecord decodes a record written by MarshalRecord.
func UnmarshalRecord(b []byte) (Record, error) {
	if len(b) > MaxRecordSize {
		return Record{}, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, len(b), MaxRecordSize)
	}
	var m pb.Record
	if err := proto.Unmarshal(b, &m); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
	}
	return RecordFromPB(&m), nil
}

// RecordToPB converts r to its protobuf message.
func RecordToPB(r Record) *pb.Record {
	m := &pb.Record{ExpiresAt: r.ExpiresAt}
	if len(r.Versions) > 0 {
		m.Versions = make([]*pb.Version, len(r.Versions))
		for i, v := range r.Versions {
			m.Versions[i] = &pb.Version{
				Value:     v.Value,
				Tombstone: v.Tombstone,
				Dot:       &pb.Dot{Actor: v.Dot.Actor, Counter: v.Dot.Counter},
				Timestamp: v.Timestamp,
				WriteId:   v.WriteID,
			}
		}
	}
	if len(r.Context) > 0 {
		m.Context = make([]*pb.Dot, len(r.Context))
		for i, d := range r.Context {
			m.Context[i] = &pb.Dot{Actor: d.Actor, Counter: d.Counter}
		}
	}
	return m
}

// RecordFromPB converts a protobuf message to a Record. A nil message is the
// empty record.
func RecordFromPB(m *pb.Record) Record {
	if m == nil {
		return Record{}
	}
	r := Record{ExpiresAt: m.GetExpiresAt()}
	if len(m.Versions) > 0 {
		r.Versions = make([]Version, len(m.Versions))
		for i, v := range m.Versions {
			r.Versions[i] = Version{
				Value:     v.GetValue(),
				Tombstone: v.GetTombstone(),
				Dot:       Dot{Actor: v.GetDot().GetActor(), Counter: v.GetDot().GetCounter()},
				Timestamp: v.GetTimestamp(),
				WriteID:   v.GetWriteId(),
			}
		}
	}
	if len(m.Context) > 0 {
		r.Context = make([]Dot, len(m.Context))
		for i, d := range m.Context {
			r.Context[i] = Dot{Actor: d.GetActor(), Counter: d.GetCounter()}
		}
	}
	return r
}
