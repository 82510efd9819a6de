package replica_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
)

// Requests a peer may send that break the protocol: each is refused with
// ErrBadRequest, counted under ringkv_replica_refused_total{reason}, and
// changes nothing.

func coordinateReq(m *pb.CoordinateRequest) *pb.KVRequest {
	return &pb.KVRequest{Op: &pb.KVRequest_Coordinate{Coordinate: m}}
}

func writeReq(m *pb.WriteRequest) *pb.KVRequest {
	return &pb.KVRequest{Op: &pb.KVRequest_Write{Write: m}}
}

func readReq(m *pb.ReadRequest) *pb.KVRequest {
	return &pb.KVRequest{Op: &pb.KVRequest_Read{Read: m}}
}

func purgeReq(m *pb.PurgeRequest) *pb.KVRequest {
	return &pb.KVRequest{Op: &pb.KVRequest_Purge{Purge: m}}
}

// validRecord is a well-formed one-version record.
func validRecord() *pb.Record {
	return &pb.Record{
		Versions: []*pb.Version{{Value: []byte("v"), Dot: &pb.Dot{Actor: 1, Counter: 1}, Timestamp: 1}},
		Context:  []*pb.Dot{{Actor: 1, Counter: 1}},
	}
}

// recordWith returns a record of n versions and m context entries.
func recordWith(n, m int) *pb.Record {
	r := &pb.Record{}
	for i := range n {
		r.Versions = append(r.Versions, &pb.Version{Value: []byte("v"), Dot: &pb.Dot{Actor: uint64(i + 1), Counter: 1}})
	}
	for i := range m {
		r.Context = append(r.Context, &pb.Dot{Actor: uint64(i + 1), Counter: 1})
	}
	return r
}

func TestHandleBadRequest(t *testing.T) {
	cfg := testConfig()
	cfg.MaxKeySize = 16
	cfg.MaxValueSize = 32
	cfg.MaxSiblings = 3
	long := []byte(strings.Repeat("k", cfg.MaxKeySize+1))
	k := []byte("key")
	tests := []struct {
		name   string
		req    proto.Message
		reason string // "" when the refusal is not counted
	}{
		{"not a KVRequest", &pb.Record{}, ""},
		{"empty request", &pb.KVRequest{}, "empty"},
		{"coordinate: empty key", coordinateReq(&pb.CoordinateRequest{Value: []byte("v")}), "key"},
		{"coordinate: oversized key", coordinateReq(&pb.CoordinateRequest{Key: long}), "key"},
		{"coordinate: oversized value", coordinateReq(&pb.CoordinateRequest{Key: k, Value: make([]byte, cfg.MaxValueSize+1)}), "coordinate"},
		{"coordinate: W above 64", coordinateReq(&pb.CoordinateRequest{Key: k, W: 65}), "coordinate"},
		{"coordinate: oversized context", coordinateReq(&pb.CoordinateRequest{Key: k, Context: recordWith(0, 1001).Context}), "coordinate"},
		{"write: empty key", writeReq(&pb.WriteRequest{Record: validRecord()}), "key"},
		{"write: oversized key", writeReq(&pb.WriteRequest{Key: long, Record: validRecord()}), "key"},
		{"write: no record", writeReq(&pb.WriteRequest{Key: k}), "record"},
		{"write: too many versions", writeReq(&pb.WriteRequest{Key: k, Record: recordWith(4*cfg.MaxSiblings+1, 0)}), "record"},
		{"write: too many context entries", writeReq(&pb.WriteRequest{Key: k, Record: recordWith(1, 4001)}), "record"},
		{"write: hint_for not a peer ID", writeReq(&pb.WriteRequest{Key: k, Record: validRecord(), HintFor: []byte("not a peer")}), "hint_for"},
		{"read: empty key", readReq(&pb.ReadRequest{}), "key"},
		{"read: oversized key", readReq(&pb.ReadRequest{Key: long}), "key"},
		{"purge: empty key", purgeReq(&pb.PurgeRequest{Digest: 1}), "key"},
		{"purge: oversized key", purgeReq(&pb.PurgeRequest{Key: long}), "key"},
	}
	c := newCluster(t, 3, cfg)
	n := c.node(c.ids[0])
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter(t, n.reg, "ringkv_replica_refused_total", "reason", tt.reason)
			if _, err := handleNoPanic(n.e, tt.req); !errors.Is(err, replica.ErrBadRequest) {
				t.Fatalf("err %v, want ErrBadRequest", err)
			}
			if tt.reason == "" {
				return
			}
			if got := counter(t, n.reg, "ringkv_replica_refused_total", "reason", tt.reason); got != before+1 {
				t.Fatalf("refused{reason=%s} went from %v to %v, want +1", tt.reason, before, got)
			}
		})
	}
	if got := replicaRecords(t, n); got != 0 {
		t.Fatalf("refused requests stored %d records", got)
	}
}

// TestHandleWriteOversizedValue sends a record whose value exceeds
// MaxValueSize in a replica write.
func TestHandleWriteOversizedValue(t *testing.T) {
	cfg := testConfig()
	cfg.MaxValueSize = 32
	c := newCluster(t, 3, cfg)
	n := c.node(c.ids[0])
	rec := validRecord()
	rec.Versions[0].Value = make([]byte, cfg.MaxValueSize+1)
	if _, err := handleNoPanic(n.e, writeReq(&pb.WriteRequest{Key: []byte("k"), Record: rec})); !errors.Is(err, replica.ErrBadRequest) {
		t.Fatalf("err %v, want ErrBadRequest", err)
	}
	if got := counter(t, n.reg, "ringkv_replica_refused_total", "reason", "record"); got != 1 {
		t.Fatalf("refused{reason=record} = %v, want 1", got)
	}
	if replicaRecords(t, n) != 0 {
		t.Fatal("the oversized value was stored")
	}
}

// TestHandleNilOp sends each op with its message unset. The wire cannot
// produce it (an empty field decodes to an empty message), but a local
// caller without cloning can, and a handler must not trust its input.
func TestHandleNilOp(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	n := c.node(c.ids[0])
	for _, req := range []*pb.KVRequest{
		coordinateReq(nil), writeReq(nil), readReq(nil), purgeReq(nil),
	} {
		t.Run(fmt.Sprintf("%T", req.Op), func(t *testing.T) {
			if _, err := handleNoPanic(n.e, req); !errors.Is(err, replica.ErrBadRequest) {
				t.Fatalf("err %v, want ErrBadRequest", err)
			}
		})
	}
}

// handleNoPanic runs the engine's handler and turns a panic into a test
// error naming it.
func handleNoPanic(e *replica.Engine, req proto.Message) (resp proto.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return replica.Handle(context.Background(), e, "", req)
}

// TestHandleBadRequestOverWire sends a malformed request through the
// transport: the caller gets a RemoteError naming the refusal.
func TestHandleBadRequestOverWire(t *testing.T) {
	c := newCluster(t, 2, testConfig())
	var resp pb.KVResponse
	err := c.node(c.ids[0]).ep.Call(context.Background(), c.ids[1], replica.Protocol, readReq(&pb.ReadRequest{}), &resp)
	var re *dht.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, replica.ErrBadRequest.Error()) {
		t.Fatalf("err %v, want a RemoteError for a bad request", err)
	}
}

// TestHandleValid checks the answer to one well-formed request of each op.
func TestHandleValid(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	n := c.node(c.ids[0])
	k := []byte("valid-key")
	tests := []struct {
		name  string
		req   *pb.KVRequest
		check func(*pb.KVResponse) bool
	}{
		{"coordinate", coordinateReq(&pb.CoordinateRequest{Key: k, Value: []byte("v"), W: 3}), func(r *pb.KVResponse) bool {
			return r.GetCoordinate().GetAcks() == 3 && len(r.GetCoordinate().GetContext()) > 0
		}},
		{"write", writeReq(&pb.WriteRequest{Key: k, Record: validRecord()}), func(r *pb.KVResponse) bool {
			return r.GetWrite() != nil
		}},
		{"read", readReq(&pb.ReadRequest{Key: k}), func(r *pb.KVResponse) bool {
			return r.GetRead().GetFound() && len(r.GetRead().GetRecord().GetVersions()) == 2
		}},
		{"purge of a live key", purgeReq(&pb.PurgeRequest{Key: k, Digest: 1}), func(r *pb.KVResponse) bool {
			return r.GetPurge() != nil && !r.GetPurge().GetPurged()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := handleNoPanic(n.e, tt.req)
			if err != nil {
				t.Fatalf("handle: %v", err)
			}
			if r, ok := resp.(*pb.KVResponse); !ok || !tt.check(r) {
				t.Fatalf("unexpected answer %v", resp)
			}
		})
	}
}

// TestHandleWriteBatch sends one batch holding concurrent writes of one
// key, an invalid write and a hint: the invalid write fails alone, both
// writes of the key survive as siblings, and the hint is stored and
// indexed.
func TestHandleWriteBatch(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	n := c.node(c.ids[0])
	k, hk := []byte("batch-key"), []byte("batch-hinted")
	a := mkRecord(dht.Record{}, c.ids[1], "a", 1)
	b := mkRecord(dht.Record{}, c.ids[2], "b", 2)
	req := &pb.KVRequest{Op: &pb.KVRequest_WriteBatch{WriteBatch: &pb.WriteBatchRequest{Writes: []*pb.WriteRequest{
		{Key: k, Record: dht.RecordToPB(a)},
		{Record: validRecord()}, // no key
		{Key: k, Record: dht.RecordToPB(b)},
		{Key: hk, Record: dht.RecordToPB(a), HintFor: []byte(c.ids[1])},
	}}}}
	resp, err := handleNoPanic(n.e, req)
	if err != nil {
		t.Fatalf("handle: %v", err)
	}
	errs := resp.(*pb.KVResponse).GetWriteBatch().GetErrors()
	if len(errs) != 4 || errs[0] != "" || errs[2] != "" || errs[3] != "" || !strings.Contains(errs[1], replica.ErrBadRequest.Error()) {
		t.Fatalf("errors = %q, want only the second to fail with a bad request", errs)
	}
	if rec, ok := c.data(c.ids[0], k); !ok || fmt.Sprint(values(rec)) != "[a b]" {
		t.Fatalf("record of %s = %v (found %v), want siblings [a b]", k, values(rec), ok)
	}
	if rec, ok := c.hint(c.ids[0], hk, c.ids[1]); !ok || fmt.Sprint(values(rec)) != "[a]" {
		t.Fatalf("hint for %s = %v (found %v), want [a]", c.ids[1], values(rec), ok)
	}
	if got := n.e.Hints(); got != 1 {
		t.Fatalf("Hints() = %d, want 1", got)
	}
	// The same batch again changes nothing and fails nothing.
	resp, err = handleNoPanic(n.e, req)
	if err != nil {
		t.Fatal(err)
	}
	if errs := resp.(*pb.KVResponse).GetWriteBatch().GetErrors(); errs[0] != "" || errs[2] != "" || errs[3] != "" {
		t.Fatalf("resent batch errors = %q", errs)
	}
	if rec, _ := c.data(c.ids[0], k); fmt.Sprint(values(rec)) != "[a b]" {
		t.Fatalf("after resending: %v, want [a b]", values(rec))
	}
}
