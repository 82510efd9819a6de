package replica_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// fuzzSeeds are valid requests of each op and a few malformed ones; the
// committed corpus in testdata/fuzz/FuzzHandleKVRequest holds the same
// encodings.
func fuzzSeeds() map[string]*pb.KVRequest {
	owner := []byte(ringtest.PeerID(testSeed, 99))
	return map[string]*pb.KVRequest{
		"coordinate_0": coordinateReq(&pb.CoordinateRequest{Key: []byte("k"), Value: []byte("v")}),
		"coordinate_1": coordinateReq(&pb.CoordinateRequest{Key: []byte("k"), Value: []byte("w"), W: 3, TtlMs: 60000,
			WriteId: 42, Context: []*pb.Dot{{Actor: 1, Counter: 7}}}),
		"coordinate_2": coordinateReq(&pb.CoordinateRequest{Key: []byte("gone"), Tombstone: true, W: 1}),
		"write_0":      writeReq(&pb.WriteRequest{Key: []byte("k"), Record: validRecord()}),
		"write_1":      writeReq(&pb.WriteRequest{Key: []byte("k"), Record: validRecord(), HintFor: owner}),
		"write_2": writeReq(&pb.WriteRequest{Key: []byte("gone"), Record: &pb.Record{
			Versions: []*pb.Version{{Tombstone: true, Dot: &pb.Dot{Actor: 2, Counter: 3}, Timestamp: 9}},
			Context:  []*pb.Dot{{Actor: 2, Counter: 3}}, ExpiresAt: 1,
		}}),
		"read_0":  readReq(&pb.ReadRequest{Key: []byte("k")}),
		"read_1":  readReq(&pb.ReadRequest{Key: []byte("absent")}),
		"purge_0": purgeReq(&pb.PurgeRequest{Key: []byte("gone"), Digest: 0x1234}),
		"bad_0":   {},
		"bad_1":   writeReq(&pb.WriteRequest{Key: []byte("k"), Record: validRecord(), HintFor: []byte("junk")}),
		"bad_2":   writeReq(&pb.WriteRequest{Key: []byte("k"), Record: recordWith(401, 0)}),
	}
}

// FuzzHandleKVRequest decodes arbitrary bytes as a KVRequest and hands it
// to a replica's handler, as the transport would. The handler must not
// panic, must refuse with ErrBadRequest (or ErrTooManySiblings once a key
// has collected enough blind writes), and otherwise answer with the
// response kind of the request.
//
// The engine keeps state between inputs (its store grows), so coverage is
// not a pure function of the input and the fuzzer's minimizer can spin;
// run it with a bounded minimization, e.g.
//
//	go test -run '^$' -fuzz FuzzHandleKVRequest -fuzztime 60s -fuzzminimizetime 100x ./dht/replica/
func FuzzHandleKVRequest(f *testing.F) {
	for _, m := range fuzzSeeds() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	cfg := testConfig()
	cfg.MaxSiblings = 8
	c := newCluster(f, 3, cfg)
	n, from := c.node(c.ids[0]), c.ids[1]
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.KVRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		resp, err := replica.Handle(context.Background(), n.e, from, &req)
		if err != nil {
			if !errors.Is(err, replica.ErrBadRequest) && !errors.Is(err, replica.ErrTooManySiblings) {
				t.Fatalf("handler error %v, want ErrBadRequest or ErrTooManySiblings", err)
			}
			return
		}
		r, ok := resp.(*pb.KVResponse)
		if !ok || r == nil {
			t.Fatalf("answer %T, want *pb.KVResponse", resp)
		}
		var match bool
		switch req.Op.(type) {
		case *pb.KVRequest_Coordinate:
			match = r.GetCoordinate() != nil
		case *pb.KVRequest_Write:
			match = r.GetWrite() != nil
		case *pb.KVRequest_Read:
			match = r.GetRead() != nil && (r.GetRead().GetFound() || r.GetRead().GetRecord() == nil)
		case *pb.KVRequest_Purge:
			match = r.GetPurge() != nil
		}
		if !match {
			t.Fatalf("request %v answered with %v", &req, r)
		}
	})
}
