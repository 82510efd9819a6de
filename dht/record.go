package dht

import (
	"fmt"

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
	// ExpiresAt is the unix-nanosecond time from which the version is dead
	// (a TTL write); 0 means never. A dead version reads as a tombstone: it
	// is not shown, and it stays in the record, context and all, until
	// tombstone collection purges the record from every replica at once.
	ExpiresAt int64
}

// LiveAt reports whether v is a value that has not expired at now (unix
// nanoseconds): neither a tombstone nor past its expiry.
func (v Version) LiveAt(now int64) bool {
	return !v.Tombstone && (v.ExpiresAt == 0 || v.ExpiresAt > now)
}

// DiedAt returns when v stopped being live, in unix nanoseconds: a
// tombstone's write time or a value's expiry; ok is false for a value that
// never expires.
func (v Version) DiedAt() (at int64, ok bool) {
	switch {
	case v.Tombstone:
		return v.Timestamp, true
	case v.ExpiresAt != 0:
		return v.ExpiresAt, true
	}
	return 0, false
}

// Record is the state of one key on one replica: its concurrent versions
// (siblings) and the causal context that summarises every write it has
// seen. A record none of whose versions is live (all tombstones or
// expired) is a deleted key, kept until every replica holds it.
type Record struct {
	Versions []Version
	// Context is a version vector: for each actor, the highest counter seen.
	// At most one entry per actor.
	Context []Dot
}

// DeletedAt reports whether no version of r is live at now (unix
// nanoseconds): every one is a tombstone or has expired, or there is none.
func (r Record) DeletedAt(now int64) bool {
	for _, v := range r.Versions {
		if v.LiveAt(now) {
			return false
		}
	}
	return true
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
	m := &pb.Record{}
	if len(r.Versions) > 0 {
		m.Versions = make([]*pb.Version, len(r.Versions))
		for i, v := range r.Versions {
			m.Versions[i] = &pb.Version{
				Value:     v.Value,
				Tombstone: v.Tombstone,
				Dot:       &pb.Dot{Actor: v.Dot.Actor, Counter: v.Dot.Counter},
				Timestamp: v.Timestamp,
				WriteId:   v.WriteID,
				ExpiresAt: v.ExpiresAt,
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
// empty record. A record-wide expiry (written by earlier releases) becomes
// the expiry of every value version that has none of its own.
func RecordFromPB(m *pb.Record) Record {
	if m == nil {
		return Record{}
	}
	var r Record
	if len(m.Versions) > 0 {
		r.Versions = make([]Version, len(m.Versions))
		for i, v := range m.Versions {
			r.Versions[i] = Version{
				Value:     v.GetValue(),
				Tombstone: v.GetTombstone(),
				Dot:       Dot{Actor: v.GetDot().GetActor(), Counter: v.GetDot().GetCounter()},
				Timestamp: v.GetTimestamp(),
				WriteID:   v.GetWriteId(),
				ExpiresAt: v.GetExpiresAt(),
			}
			if r.Versions[i].ExpiresAt == 0 && !r.Versions[i].Tombstone {
				r.Versions[i].ExpiresAt = m.GetExpiresAt()
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
