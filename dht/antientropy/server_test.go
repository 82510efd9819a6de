package antientropy

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
)

// serverNode returns a started syncer whose store holds keys records, and
// the peer ID to send requests as.
func serverNode(t testing.TB, keys int, reg prometheus.Registerer) (*tnode, peer.ID) {
	t.Helper()
	cfg := testConfig()
	cfg.Registerer = reg
	c := newCluster(t, 2, 2, 4, cfg)
	nd := c.nodes[c.ids[0]]
	for i := range keys {
		c.put(nd.id, keyName(i), write(dht.Record{}, actor(0), "v", c.clock.Now()))
	}
	return nd, c.ids[1]
}

func rootsReq(arcs ...*pb.SyncArc) *pb.SyncRequest {
	return &pb.SyncRequest{Op: &pb.SyncRequest_Roots{Roots: &pb.SyncRootsRequest{Arcs: arcs}}}
}

func levelReq(qs ...*pb.SyncLevelQuery) *pb.SyncRequest {
	return &pb.SyncRequest{Op: &pb.SyncRequest_Level{Level: &pb.SyncLevelRequest{Queries: qs}}}
}

func keysReq(r *pb.SyncKeysRequest) *pb.SyncRequest {
	return &pb.SyncRequest{Op: &pb.SyncRequest_Keys{Keys: r}}
}

func fetchReq(keys ...[]byte) *pb.SyncRequest {
	return &pb.SyncRequest{Op: &pb.SyncRequest_Fetch{Fetch: &pb.SyncFetchRequest{Keys: keys}}}
}

func pushReq(es ...*pb.SyncEntry) *pb.SyncRequest {
	return &pb.SyncRequest{Op: &pb.SyncRequest_Push{Push: &pb.SyncPushRequest{Entries: es}}}
}

var whole = &pb.SyncArc{Start: 5, End: 5, Depth: 3}

func TestBadRequestsRefused(t *testing.T) {
	many := func(n int, f func(int) *pb.SyncArc) []*pb.SyncArc {
		out := make([]*pb.SyncArc, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	rec := dht.RecordToPB(write(dht.Record{}, actor(0), "v", newFakeClock().Now()))
	tests := []struct {
		name string
		req  proto.Message
	}{
		{"not a sync request", &pb.KVRequest{}},
		{"empty request", &pb.SyncRequest{}},
		{"roots without arcs", rootsReq()},
		{"roots with too many arcs", rootsReq(many(maxArcs+1, func(int) *pb.SyncArc { return whole })...)},
		{"roots too deep", rootsReq(&pb.SyncArc{Start: 1, End: 2, Depth: merkle.MaxDepth + 1})},
		{"roots with a nil arc", rootsReq(whole, nil)},
		{"level without queries", levelReq()},
		{"level without arc", levelReq(&pb.SyncLevelQuery{Level: 1, Indexes: []uint32{0}})},
		{"level below the depth", levelReq(&pb.SyncLevelQuery{Arc: whole, Level: 4, Indexes: []uint32{0}})},
		{"level index out of range", levelReq(&pb.SyncLevelQuery{Arc: whole, Level: 2, Indexes: []uint32{0, 4}})},
		{"level index huge", levelReq(&pb.SyncLevelQuery{Arc: whole, Level: 2, Indexes: []uint32{math.MaxUint32}})},
		{"level of a clamped tree", levelReq(&pb.SyncLevelQuery{Arc: &pb.SyncArc{Start: 1, End: 3, Depth: 5}, Level: 3, Indexes: []uint32{0}})},
		{"level with too many indexes", levelReq(&pb.SyncLevelQuery{Arc: &pb.SyncArc{Depth: 16}, Level: 16, Indexes: make([]uint32, maxLevelIndexes+1)})},
		{"keys without spans", keysReq(&pb.SyncKeysRequest{})},
		{"keys with an inverted span", keysReq(&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 9, To: 3}}})},
		{"keys with a nil span", keysReq(&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{nil}})},
		{"keys cursor past the spans", keysReq(&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 0, To: 9}}, FromSpan: 1})},
		{"keys cursor key outside its span", keysReq(&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 0, To: 9}}, AfterKey: []byte("k")})},
		{"keys cursor key too long", keysReq(&pb.SyncKeysRequest{Spans: []*pb.SyncSpan{{From: 0, To: math.MaxUint64}}, AfterKey: make([]byte, 64<<10+1)})},
		{"keys with too many spans", keysReq(&pb.SyncKeysRequest{Spans: make([]*pb.SyncSpan, maxSpans+1)})},
		{"fetch without keys", fetchReq()},
		{"fetch an empty key", fetchReq([]byte("a"), nil)},
		{"fetch too many keys", fetchReq(make([][]byte, maxBatchKeys+1)...)},
		{"fetch a key too long", fetchReq(make([]byte, 64<<10+1))},
		{"push nothing", pushReq()},
		{"push without a record", pushReq(&pb.SyncEntry{Key: []byte("k")})},
		{"push an empty key", pushReq(&pb.SyncEntry{Record: rec})},
		{"push too many versions", pushReq(&pb.SyncEntry{Key: []byte("k"), Record: &pb.Record{Versions: make([]*pb.Version, maxRecordVersions+1)}})},
		{"push too large a context", pushReq(&pb.SyncEntry{Key: []byte("k"), Record: &pb.Record{Context: make([]*pb.Dot, maxRecordContext+1)}})},
	}
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Registerer = reg
	c := newCluster(t, 2, 2, 4, cfg)
	nd, from := c.nodes[c.ids[0]], c.ids[1]
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := nd.s.handle(context.Background(), from, tt.req)
			if !errors.Is(err, ErrBadRequest) || resp != nil {
				t.Fatalf("handle = %v, %v; want ErrBadRequest", resp, err)
			}
			if got := counterSum(t, reg, "ringkv_antientropy_refused_total", ""); got != i+1 {
				t.Fatalf("refused counter = %d after %d bad requests", got, i+1)
			}
		})
	}
	// Over the wire the caller gets a remote error, and the node still works.
	var resp pb.SyncResponse
	err := c.nodes[from].s.tr.Call(context.Background(), nd.id, Protocol, fetchReq(), &resp)
	var re *dht.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "bad request") {
		t.Fatalf("bad request over memnet = %v, want a remote error", err)
	}
	if _, err := nd.s.handle(context.Background(), from, rootsReq(whole)); err != nil {
		t.Fatalf("good request after bad ones: %v", err)
	}
}

// counterSum sums the series of counter name whose labels include value
// (every series when value is "").
func counterSum(t testing.TB, reg prometheus.Gatherer, name, value string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := value == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == value
			}
			if match {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return int(total)
}

func TestKeysPagination(t *testing.T) {
	nd, from := serverNode(t, 300, nil)
	all := nd.st.records(t)
	spans := []*pb.SyncSpan{{From: 1 << 63, To: math.MaxUint64}, {From: 0, To: 1<<62 - 1}, {From: 1 << 62, To: 1<<63 - 1}}
	want := len(all) // the spans cover the ring
	for _, limit := range []uint32{1, 7, 64, 0} {
		req := &pb.SyncKeysRequest{Spans: spans, Limit: limit}
		var got []string
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatalf("limit %d: pagination does not end", limit)
			}
			resp, err := nd.s.handle(context.Background(), from, keysReq(req))
			if err != nil {
				t.Fatalf("limit %d: %v", limit, err)
			}
			page := resp.(*pb.SyncResponse).GetKeys()
			if limit > 0 && len(page.Entries) > int(limit) {
				t.Fatalf("limit %d: page of %d", limit, len(page.Entries))
			}
			for _, e := range page.Entries {
				if e.Digest != digest(all[string(e.Key)]) {
					t.Fatalf("digest of %s differs from the record's", e.Key)
				}
				got = append(got, string(e.Key))
			}
			if !page.More {
				break
			}
			last := page.Entries[len(page.Entries)-1].Key
			req.AfterKey = last
			req.FromSpan = uint32(slices.IndexFunc(spans, func(s *pb.SyncSpan) bool {
				p := ring.KeyPos(last)
				return s.From <= p && p <= s.To
			}))
		}
		if len(got) != want {
			t.Fatalf("limit %d: listed %d keys, want %d", limit, len(got), want)
		}
		seen := map[string]bool{}
		for _, k := range got {
			if seen[k] {
				t.Fatalf("limit %d: %s listed twice", limit, k)
			}
			seen[k] = true
		}
	}
}

func TestFetchBoundedByBytes(t *testing.T) {
	cfg := testConfig()
	cfg.BatchBytes = 1 << 10
	c := newCluster(t, 2, 2, 4, cfg)
	nd := c.nodes[c.ids[0]]
	var keys [][]byte
	for i := range 10 {
		c.put(nd.id, keyName(i), write(dht.Record{}, actor(0), strings.Repeat("v", 300), c.clock.Now()))
		keys = append(keys, []byte(keyName(i)))
	}
	keys = append(keys, []byte("absent"))
	total := 0
	for len(keys) > 0 {
		resp, err := nd.s.handle(context.Background(), c.ids[1], fetchReq(keys...))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		recs := resp.(*pb.SyncResponse).GetFetch().GetRecords()
		if len(recs) == 0 || len(recs) > 4 {
			t.Fatalf("%d records in a 1 KiB page of 300-byte values", len(recs))
		}
		for i, r := range recs {
			if string(r.Key) != string(keys[i]) || r.Found != (string(r.Key) != "absent") {
				t.Fatalf("record %d: key %s found %v", i, r.Key, r.Found)
			}
		}
		total += len(recs)
		keys = keys[len(recs):]
	}
	if total != 11 {
		t.Fatalf("fetched %d answers, want 11", total)
	}
}

func TestPushApplies(t *testing.T) {
	nd, from := serverNode(t, 0, nil)
	rec := write(dht.Record{}, actor(0), "v", newFakeClock().Now())
	entry := &pb.SyncEntry{Key: []byte("k"), Record: dht.RecordToPB(rec)}
	for i, want := range []uint32{1, 0} {
		resp, err := nd.s.handle(context.Background(), from, pushReq(entry))
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if got := resp.(*pb.SyncResponse).GetPush().GetApplied(); got != want {
			t.Fatalf("push %d applied %d, want %d", i, got, want)
		}
	}
	got, found, err := getLocal(context.Background(), nd.st, []byte("k"))
	if err != nil || !found || digest(got) != digest(rec) {
		t.Fatalf("pushed record not stored: %v %v", found, err)
	}
}

func TestRootsAndLevelAgreeWithTree(t *testing.T) {
	nd, from := serverNode(t, 500, nil)
	arc := &pb.SyncArc{Start: 1 << 60, End: 1 << 59, Depth: 6}
	tree, err := buildTree(context.Background(), nd.st, arc.Start, arc.End, int(arc.Depth))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := nd.s.handle(context.Background(), from, rootsReq(arc, whole))
	if err != nil {
		t.Fatalf("roots: %v", err)
	}
	roots := resp.(*pb.SyncResponse).GetRoots()
	if roots.Roots[0] != tree.Root() || roots.Counts[0] != uint64(tree.Len()) || roots.Counts[1] != 500 {
		t.Fatalf("roots %v counts %v; tree root %#x len %d", roots.Roots, roots.Counts, tree.Root(), tree.Len())
	}
	if nd.s.cache.len() != 2 {
		t.Fatalf("%d trees cached after Roots, want 2", nd.s.cache.len())
	}
	idx := []uint32{0, 5, 63}
	resp, err = nd.s.handle(context.Background(), from, levelReq(&pb.SyncLevelQuery{Arc: arc, Level: 6, Indexes: idx}))
	if err != nil {
		t.Fatalf("level: %v", err)
	}
	want, _ := tree.Nodes(6, []int{0, 5, 63})
	if got := resp.(*pb.SyncResponse).GetLevel().Results[0].Hashes; !slices.Equal(got, want) {
		t.Fatalf("level hashes %v, want %v", got, want)
	}
}

func TestBadResponsesRejected(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(req *pb.SyncRequest, resp *pb.SyncResponse)
	}{
		{"roots answer too short", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetRoots(); x != nil {
				x.Roots = x.Roots[:len(x.Roots)-1]
			}
		}},
		{"level answer too short", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetLevel(); x != nil {
				x.Results[0].Hashes = x.Results[0].Hashes[1:]
			}
		}},
		{"keys outside the spans", func(req *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetKeys(); x != nil {
				sp := req.GetKeys().Spans[0]
				for i := 0; ; i++ {
					k := []byte(keyName(100000 + i))
					if p := ring.KeyPos(k); p < sp.From || p > sp.To {
						x.Entries = append(x.Entries, &pb.SyncKeyDigest{Key: k})
						return
					}
				}
			}
		}},
		{"keys out of order", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetKeys(); x != nil && len(x.Entries) > 1 {
				slices.Reverse(x.Entries)
			} else if x != nil && len(x.Entries) == 1 {
				x.Entries = append(x.Entries, x.Entries[0])
			}
		}},
		{"empty page with more", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetKeys(); x != nil {
				x.Entries, x.More = nil, true
			}
		}},
		{"fetch answers another key", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetFetch(); x != nil {
				x.Records[0].Key = []byte("other")
			}
		}},
		{"fetch answers nothing", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetFetch(); x != nil {
				x.Records = nil
			}
		}},
		{"fetch answers a hostile record", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if x := r.GetFetch(); x != nil {
				x.Records[0].Record = &pb.Record{Versions: make([]*pb.Version, maxRecordVersions+1)}
			}
		}},
		{"answer of the wrong kind", func(_ *pb.SyncRequest, r *pb.SyncResponse) {
			if r.GetPush() == nil {
				r.Result = &pb.SyncResponse_Push{Push: &pb.SyncPushResponse{}}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, 2, 4, testConfig())
			a, b := c.nodes[c.ids[0]], c.nodes[c.ids[1]]
			ts := c.clock.Now()
			for i := range 300 {
				rec := write(dht.Record{}, actor(0), "v", ts)
				c.put(a.id, keyName(i), rec)
				if i%3 != 0 {
					c.put(b.id, keyName(i), write(rec, actor(1), "w", ts))
				}
			}
			c.w.net.Endpoint(b.id).Handle(Protocol, func() proto.Message { return new(pb.SyncRequest) },
				func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
					resp, err := b.s.handle(ctx, from, req)
					if err == nil {
						tt.corrupt(req.(*pb.SyncRequest), resp.(*pb.SyncResponse))
					}
					return resp, err
				})
			_, err := a.s.Round(context.Background(), nil)
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("Round against a corrupting peer = %v, want ErrBadResponse", err)
			}
		})
	}
}
