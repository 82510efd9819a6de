package antientropy

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// Fuzz targets for every request decoder path: arbitrary bytes are
// decoded as the request message and handed to the handler, which must
// answer with a well-formed response or refuse with ErrBadRequest, and
// never panic. The handler's recover would hide a panic, so the targets
// also require that nothing was refused for reason "panic".

// seedRequests are valid and borderline requests of each kind.
func seedRequests() map[string][]proto.Message {
	rec := dht.RecordToPB(write(dht.Record{}, actor(0), "v", newFakeClock().Now()))
	return map[string][]proto.Message{
		"roots": {
			&pb.SyncRootsRequest{Arcs: []*pb.SyncArc{whole, {Start: 1 << 63, End: 1 << 62, Depth: 4}}},
			&pb.SyncRootsRequest{Arcs: []*pb.SyncArc{{Start: 1, End: 2, Depth: 16}}},
			&pb.SyncRootsRequest{Arcs: []*pb.SyncArc{{Depth: 17}}},
		},
		"level": {
			&pb.SyncLevelRequest{Queries: []*pb.SyncLevelQuery{{Arc: whole, Level: 2, Indexes: []uint32{0, 1, 3}}}},
			&pb.SyncLevelRequest{Queries: []*pb.SyncLevelQuery{{Arc: whole, Level: 3, Indexes: []uint32{8}}}},
			&pb.SyncLevelRequest{Queries: []*pb.SyncLevelQuery{{Arc: &pb.SyncArc{Start: 1, End: 3, Depth: 9}, Level: 1, Indexes: []uint32{1}}}},
		},
		"keys": {
			&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 0, To: 1 << 63}, {From: 1<<63 + 1, To: 1<<64 - 1}}, Limit: 3},
			&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 0, To: 1<<64 - 1}}, AfterKey: []byte("key-00007")},
			&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 9, To: 1}}, FromSpan: 3},
		},
		"fetch": {
			&pb.SyncFetchRequest{Keys: [][]byte{[]byte("key-00001"), []byte("absent")}},
			&pb.SyncFetchRequest{Keys: [][]byte{{}}},
		},
		"push": {
			&pb.SyncPushRequest{Entries: []*pb.SyncEntry{{Key: []byte("key-00001"), Record: rec}}},
			&pb.SyncPushRequest{Entries: []*pb.SyncEntry{{Key: []byte("k")}}},
			&pb.SyncPushRequest{Entries: []*pb.SyncEntry{{Key: []byte("k"), Record: &pb.Record{Versions: []*pb.Version{{Tombstone: true}}}}}},
		},
	}
}

// fuzzHandler runs data, decoded by decode into a request, through a
// node's handler and checks the answer.
func fuzzHandler(f *testing.F, kind string, decode func([]byte) (*pb.SyncRequest, bool), check func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse)) {
	for _, m := range seedRequests()[kind] {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	reg := prometheus.NewRegistry()
	nd, from := serverNode(f, 40, reg)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, ok := decode(data)
		if !ok {
			return
		}
		resp, err := nd.s.handle(context.Background(), from, req)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("handler error %v, want ErrBadRequest", err)
			}
			if p := counterSum(t, reg, "ringkv_antientropy_refused_total", "panic"); p > 0 {
				t.Fatalf("handler panicked: %v", err)
			}
			return
		}
		out, ok := resp.(*pb.SyncResponse)
		if !ok {
			t.Fatalf("answer %T", resp)
		}
		check(t, req, out)
	})
}

func FuzzRoots(f *testing.F) {
	fuzzHandler(f, "roots", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncRootsRequest
		return &pb.SyncRequest{Op: &pb.SyncRequest_Roots{Roots: &m}}, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		n := len(req.GetRoots().Arcs)
		if r := resp.GetRoots(); len(r.GetRoots()) != n || len(r.GetCounts()) != n {
			t.Fatalf("%d arcs answered with %d roots and %d counts", n, len(r.GetRoots()), len(r.GetCounts()))
		}
	})
}

func FuzzLevel(f *testing.F) {
	fuzzHandler(f, "level", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncLevelRequest
		return &pb.SyncRequest{Op: &pb.SyncRequest_Level{Level: &m}}, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		qs, rs := req.GetLevel().Queries, resp.GetLevel().GetResults()
		if len(rs) != len(qs) {
			t.Fatalf("%d queries answered with %d results", len(qs), len(rs))
		}
		for i, q := range qs {
			if len(rs[i].GetHashes()) != len(q.Indexes) {
				t.Fatalf("query %d: %d hashes for %d indexes", i, len(rs[i].GetHashes()), len(q.Indexes))
			}
		}
	})
}

func FuzzKeys(f *testing.F) {
	fuzzHandler(f, "keys", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncKeysRequest
		return &pb.SyncRequest{Op: &pb.SyncRequest_Keys{Keys: &m}}, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		limit := int(req.GetKeys().Limit)
		r := resp.GetKeys()
		if r == nil || (limit > 0 && len(r.Entries) > limit) || (r.More && len(r.Entries) == 0) {
			t.Fatalf("keys answer %v for limit %d", r, limit)
		}
	})
}

func FuzzFetch(f *testing.F) {
	fuzzHandler(f, "fetch", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncFetchRequest
		return &pb.SyncRequest{Op: &pb.SyncRequest_Fetch{Fetch: &m}}, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		keys, recs := req.GetFetch().Keys, resp.GetFetch().GetRecords()
		if len(recs) == 0 || len(recs) > len(keys) {
			t.Fatalf("%d keys answered with %d records", len(keys), len(recs))
		}
		for i, r := range recs {
			if string(r.Key) != string(keys[i]) || r.Found != (r.Record != nil) {
				t.Fatalf("record %d does not answer key %d", i, i)
			}
		}
	})
}

func FuzzPush(f *testing.F) {
	fuzzHandler(f, "push", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncPushRequest
		return &pb.SyncRequest{Op: &pb.SyncRequest_Push{Push: &m}}, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		if r := resp.GetPush(); r == nil || int(r.Applied) > len(req.GetPush().Entries) {
			t.Fatalf("push of %d entries answered %v", len(req.GetPush().Entries), r)
		}
	})
}

func FuzzSyncRequest(f *testing.F) {
	for kind, ms := range seedRequests() {
		for _, m := range ms {
			var req pb.SyncRequest
			switch kind {
			case "roots":
				req.Op = &pb.SyncRequest_Roots{Roots: m.(*pb.SyncRootsRequest)}
			case "level":
				req.Op = &pb.SyncRequest_Level{Level: m.(*pb.SyncLevelRequest)}
			case "keys":
				req.Op = &pb.SyncRequest_Keys{Keys: m.(*pb.SyncKeysRequest)}
			case "fetch":
				req.Op = &pb.SyncRequest_Fetch{Fetch: m.(*pb.SyncFetchRequest)}
			case "push":
				req.Op = &pb.SyncRequest_Push{Push: m.(*pb.SyncPushRequest)}
			}
			b, err := proto.Marshal(&req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	fuzzHandler(f, "", func(b []byte) (*pb.SyncRequest, bool) {
		var m pb.SyncRequest
		return &m, proto.Unmarshal(b, &m) == nil
	}, func(t *testing.T, req *pb.SyncRequest, resp *pb.SyncResponse) {
		if resp.Result == nil {
			t.Fatalf("answer without a result to %v", req)
		}
	})
}
