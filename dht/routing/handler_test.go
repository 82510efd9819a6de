package routing

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

// victim is a router with metrics in a small converged cluster, and an
// endpoint that is not a router, to send it anything.
type victim struct {
	c     *cluster
	r     *Router
	reg   *prometheus.Registry
	evil  peer.ID
	evilE dht.Transport
}

func newVictim(t testing.TB) *victim {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	c := newCluster(t, 6, 0, cfg)
	cfg.Registerer = reg
	r := c.add(ringtest.Nodes(999, 1, 0)[0], cfg)
	c.joinAll(context.Background(), 2)
	evil := ringtest.PeerID(666, 0)
	return &victim{c: c, r: r, reg: reg, evil: evil, evilE: c.net.Endpoint(evil)}
}

func (v *victim) refused(reason string) float64 {
	return counterValue(v.r.met.refused.WithLabelValues(reason))
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return math.NaN()
	}
	return m.GetCounter().GetValue()
}

func (v *victim) info(id peer.ID) *pb.PeerInfo {
	return &pb.PeerInfo{Id: []byte(id), Capacity: 1}
}

func TestHandlerRefusesBadRequests(t *testing.T) {
	v := newVictim(t)
	ctx := context.Background()
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	garbage := [][]byte{[]byte("not a peer id")}
	for _, tc := range []struct {
		name    string
		req     *pb.FindRequest
		reason  string
		wantErr bool
	}{
		{"garbage sender id", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte{0xff, 0xff}, Capacity: 1}}, reasonBadID, false},
		{"NaN capacity", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: math.NaN()}}, reasonCapacity, false},
		{"negative capacity", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: -1}}, reasonCapacity, false},
		{"huge capacity", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: 1e9}}, reasonCapacity, false},
		{"too many addrs", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: 1, Addrs: many(17, "/ip4/1.2.3.4")}}, reasonAddrs, false},
		{"huge addr", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: 1, Addrs: []string{strings.Repeat("a", 1<<16)}}}, reasonAddrs, false},
		{"huge zone", &pb.FindRequest{Pos: 1, From: &pb.PeerInfo{Id: []byte(v.evil), Capacity: 1, Zone: strings.Repeat("z", 65)}}, reasonZone, false},
		{"someone else's identity", &pb.FindRequest{Pos: 1, From: v.info(ringtest.PeerID(666, 1))}, reasonSender, false},
		{"garbage exclude", &pb.FindRequest{Pos: 1, Exclude: garbage}, reasonBadID, false},
		{"too many excluded", &pb.FindRequest{Pos: 1, Exclude: make([][]byte, 17)}, reasonTooMany, true},
		{"recursive neighbors", &pb.FindRequest{Pos: 1, Recursive: true, Neighbors: true}, reasonBadRequest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := v.refused(tc.reason)
			var resp pb.FindResponse
			err := v.evilE.Call(ctx, v.r.Self().ID, Protocol, tc.req, &resp)
			var re *dht.RemoteError
			switch {
			case tc.wantErr && !errors.As(err, &re):
				t.Fatalf("Call = %v, want a remote error", err)
			case !tc.wantErr && err != nil:
				t.Fatalf("Call = %v, want an answer despite the bad entry", err)
			}
			if got := v.refused(tc.reason) - before; got != 1 {
				t.Fatalf("refused{%s} grew by %v, want 1", tc.reason, got)
			}
			if !tc.wantErr && !resp.GetOwner() && len(resp.GetCandidates()) == 0 {
				t.Fatalf("no answer: %v", &resp)
			}
		})
	}
	for _, p := range v.r.Peers() {
		if p.ID == v.evil {
			t.Errorf("the victim learned the sender from refused info")
		}
	}
	// The victim still works.
	v.c.checkLookups(ctx, 50, Options{}, 8)
}

// evilAnswers makes the evil endpoint answer every routing request with
// resp, and the victim know the evil peer as its only peer.
func (v *victim) evilAnswers(t *testing.T, resp *pb.FindResponse) *Router {
	t.Helper()
	v.evilE.Handle(Protocol, newFindRequest, func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
		return resp, nil
	})
	cfg := testConfig()
	cfg.Registerer = prometheus.NewRegistry()
	lone := v.c.add(ringtest.Nodes(4242, 1, 0)[0], cfg)
	lone.Observe(Peer{ID: v.evil, Capacity: 1})
	return lone
}

func TestLookupSurvivesBadAnswers(t *testing.T) {
	ctx := context.Background()
	bad := func(mut func(*pb.PeerInfo)) []*pb.PeerInfo {
		m := &pb.PeerInfo{Id: []byte(ringtest.PeerID(666, 7)), Capacity: 1}
		mut(m)
		return []*pb.PeerInfo{m}
	}
	thousand := make([]*pb.PeerInfo, 1000)
	for i := range thousand {
		thousand[i] = &pb.PeerInfo{Id: []byte(ringtest.PeerID(666, 100+i)), Capacity: 1}
	}
	for _, tc := range []struct {
		name   string
		resp   *pb.FindResponse
		reason string
	}{
		{"1000 candidates", &pb.FindResponse{Candidates: thousand}, reasonTooMany},
		{"NaN capacity", &pb.FindResponse{Candidates: bad(func(m *pb.PeerInfo) { m.Capacity = math.NaN() })}, reasonCapacity},
		{"negative capacity", &pb.FindResponse{Candidates: bad(func(m *pb.PeerInfo) { m.Capacity = -3 })}, reasonCapacity},
		{"huge addrs", &pb.FindResponse{Candidates: bad(func(m *pb.PeerInfo) { m.Addrs = []string{strings.Repeat("x", 4096)} })}, reasonAddrs},
		{"garbage id", &pb.FindResponse{Candidates: bad(func(m *pb.PeerInfo) { m.Id = []byte("garbage") })}, reasonBadID},
		{"owner without replicas", &pb.FindResponse{Owner: true}, reasonBadAnswer},
		{"owner naming another", &pb.FindResponse{Owner: true, Replicas: bad(func(*pb.PeerInfo) {})}, reasonBadAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVictim(t)
			lone := v.evilAnswers(t, tc.resp)
			var pos uint64
			for pos = 1; lone.IsOwner(pos); pos += 1 << 57 {
			}
			res, err := lone.Lookup(ctx, pos, Options{Trace: true})
			if !errors.Is(err, ErrLookupFailed) {
				t.Fatalf("Lookup = %+v, %v; want ErrLookupFailed", res, err)
			}
			if got := counterValue(lone.met.refused.WithLabelValues(tc.reason)); got < 1 {
				t.Fatalf("refused{%s} = %v, want >= 1", tc.reason, got)
			}
			if got := counterValue(lone.met.lookups.WithLabelValues(outcomeFailed)); got != 1 {
				t.Fatalf("failed lookups = %v, want 1", got)
			}
			if n := lone.Size(); n > 1 {
				t.Fatalf("the lone router learned %d peers from a bad answer", n)
			}
		})
	}
}

func TestRecursiveHopLimit(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.VNodes, cfg.CacheSize = 1, 0
	c := newCluster(t, 32, 0, cfg)
	c.joinAll(ctx, 3)
	r := c.routers[0]
	// A request that may not be forwarded is answered only by the owner.
	var pos uint64
	for pos = 1; r.IsOwner(pos); pos += 1 << 58 {
	}
	req := &pb.FindRequest{Pos: pos, Recursive: true, Ttl: 0}
	var resp pb.FindResponse
	err := c.net.Endpoint(ringtest.PeerID(666, 2)).Call(ctx, r.Self().ID, Protocol, req, &resp)
	var re *dht.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, ErrHopLimit.Error()) {
		t.Fatalf("ttl 0 at a non-owner: %v, want a remote hop-limit error", err)
	}
	st := c.checkLookups(ctx, 200, Options{Recursive: true, Trace: true}, 9)
	t.Logf("recursive, 32 nodes V1 no cache: %v", st)
}

// FuzzFindRequest feeds arbitrary bytes, decoded as a FindRequest, to the
// handler of a router in a converged cluster.
func FuzzFindRequest(f *testing.F) {
	seeds := []*pb.FindRequest{
		{Pos: 42},
		{Pos: 1 << 63, Neighbors: true, From: &pb.PeerInfo{Id: []byte(ringtest.PeerID(666, 0)), Capacity: 1}},
		{Pos: 7, Recursive: true, Ttl: 5, Trace: true},
		{Pos: 9, Exclude: [][]byte{[]byte(ringtest.PeerID(1, 1)), []byte("junk")}},
		{Pos: 3, From: &pb.PeerInfo{Id: []byte("junk"), Capacity: math.Inf(1), Addrs: []string{"/ip4/1.2.3.4/tcp/1"}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v := newVictim(f)
	from := ringtest.PeerID(666, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.FindRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		out, err := v.r.handleFind(context.Background(), from, &req)
		if err != nil {
			return
		}
		resp := out.(*pb.FindResponse)
		for _, list := range [][]*pb.PeerInfo{resp.Replicas, resp.Candidates, resp.Neighbors} {
			if len(list) > MaxWirePeers {
				t.Fatalf("answer lists %d peers", len(list))
			}
		}
		if n, bound := v.r.Size(), v.r.MaxSize(); n > bound {
			t.Fatalf("Size %d over bound %d", n, bound)
		}
	})
}

// FuzzFindResponse feeds arbitrary bytes, decoded as a FindResponse, to
// every place an answer is merged: an iterative round, a recursive answer
// and a stabilization answer.
func FuzzFindResponse(f *testing.F) {
	id := func(i int) []byte { return []byte(ringtest.PeerID(666, i)) }
	seeds := []*pb.FindResponse{
		{Candidates: []*pb.PeerInfo{{Id: id(1), Capacity: 1}, {Id: id(2), Capacity: 2, Zone: "z"}}},
		{Owner: true, Replicas: []*pb.PeerInfo{{Id: id(0), Capacity: 1}, {Id: id(3), Capacity: 1}}},
		{Owner: true, Replicas: []*pb.PeerInfo{{Id: id(4), Capacity: 1}},
			Path: []*pb.HopInfo{{Peer: id(5), Answer: pb.HopAnswer_HOP_ANSWER_CLOSER, LatencyUs: 10}}},
		{Neighbors: []*pb.PeerInfo{{Id: id(6), Capacity: 0.5}}, SpanStart: 5, SpanEnd: 1},
		{Candidates: []*pb.PeerInfo{{Id: []byte("junk"), Capacity: math.NaN()}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := testConfig()
	c := newCluster(f, 1, 0, cfg)
	r := c.routers[0]
	evil := &peerRec{Peer: Peer{ID: ringtest.PeerID(666, 0), Capacity: 1}, toks: []uint64{100}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp pb.FindResponse
		if proto.Unmarshal(b, &resp) != nil {
			return
		}
		s := &search{r: r, pos: 50, trace: true, cands: make(map[peer.ID]*cand)}
		s.add(evil)
		s.merge(context.Background(), s.cands[evil.ID], reply{resp: &resp})
		if s.best != nil && (len(s.bestRS) == 0 || s.bestRS[0].ID != evil.ID) {
			t.Fatalf("accepted an owner answer naming %v", s.bestRS)
		}
		for _, x := range s.cands {
			if checkPeer(x.rec.Peer) != "" {
				t.Fatalf("invalid candidate %+v on the shortlist", x.rec.Peer)
			}
		}
		if r.checkRecursive(evil.ID, &resp) == nil {
			_ = hopsOf(resp.GetPath())
		}
		if recs, ok := r.decodeRecs(resp.GetNeighbors()); ok {
			r.observeRecs(nil, recs)
		}
		if n, bound := r.Size(), r.MaxSize(); n > bound {
			t.Fatalf("Size %d over bound %d", n, bound)
		}
	})
}
