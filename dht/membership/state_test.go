package membership

import (
	"context"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/pb"
)

// testTokens is a stand-in for dht/ring's derivation.
func testTokens(id peer.ID, capacity float64) (int, uint64) {
	return int(capacity * 8), xxhash.Sum64String(string(id))
}

// manualNode is one Manual Memberlist on its own network, with a registry.
type manualNode struct {
	m   *Memberlist
	net *memnet.Network
	clk *fakeClock
	reg *prometheus.Registry
	ids []peer.ID // ids[0] is the node
}

func newManualNode(t testing.TB) *manualNode {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.Manual = true
	cfg.SerialProbes = true
	cfg.Seed = 1
	cfg.Tokens = testTokens
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	n := &manualNode{net: memnet.New(memnet.DefaultOptions()), clk: newFakeClock(), reg: reg, ids: testIDs(t, 4)}
	m, err := New(cfg, dht.Member{ID: n.ids[0], Capacity: 1}, n.net.Endpoint(n.ids[0]), n.clk)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	n.m = m
	return n
}

// member builds a valid update about id.
func (n *manualNode) member(id peer.ID, s dht.State, inc uint64) update {
	c, d := testTokens(id, 1)
	return update{
		member:     dht.Member{ID: id, Addrs: []string{"/memnet/" + id.String()}, Capacity: 1, State: s, Incarnation: inc},
		tokenCount: uint32(c), tokenDigest: d, from: n.ids[3],
	}
}

func (n *manualNode) apply(us ...update) {
	now := n.clk.Now()
	n.m.mu.Lock()
	for _, u := range us {
		n.m.applyLocked(u, now)
	}
	n.m.mu.Unlock()
	n.m.flushEvents()
}

// refused returns ringkv_membership_refused_total{reason}.
func (n *manualNode) refused(t testing.TB, reason string) float64 {
	t.Helper()
	fams, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "ringkv_membership_refused_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestPrecedence(t *testing.T) {
	const (
		N = dht.StateNormal
		L = dht.StateLeaving
		S = dht.StateSuspect
		D = dht.StateDead
		X = dht.StateLeft
	)
	tests := []struct {
		name     string
		start    dht.State // 0: unknown member
		startInc uint64
		upd      dht.State
		updInc   uint64
		want     dht.State // 0: still unknown
		wantInc  uint64
		event    bool
	}{
		{"unknown alive is added", 0, 0, N, 3, N, 3, true},
		{"unknown suspect is dropped", 0, 0, S, 3, 0, 0, false},
		{"unknown dead is dropped", 0, 0, D, 3, 0, 0, false},
		{"unknown left is dropped", 0, 0, X, 3, 0, 0, false},
		{"suspect beats alive at same inc", N, 1, S, 1, S, 1, true},
		{"older suspect ignored", N, 2, S, 1, N, 2, false},
		{"alive does not clear suspect at same inc", S, 1, N, 1, S, 1, false},
		{"higher alive refutes suspect", S, 1, N, 2, N, 2, true},
		{"dead beats suspect", S, 1, D, 1, D, 1, true},
		{"suspect does not revive dead", D, 1, S, 1, D, 1, false},
		{"alive at same inc stays dead", D, 1, N, 1, D, 1, false},
		{"higher alive resurrects dead", D, 1, N, 2, N, 2, true},
		{"left beats dead at same inc", D, 1, X, 1, X, 1, true},
		{"dead does not override left", X, 1, D, 1, X, 1, false},
		{"alive states do not compete at same inc", N, 1, L, 1, N, 1, false},
		{"higher inc changes alive state", N, 1, L, 2, L, 2, true},
		{"higher suspect over dead", D, 1, S, 2, S, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newManualNode(t)
			x := n.ids[1]
			if tc.start != 0 {
				n.apply(n.member(x, N, 0))
				if tc.start != N || tc.startInc != 0 {
					n.apply(n.member(x, N, tc.startInc))
					n.apply(n.member(x, tc.start, tc.startInc))
				}
			}
			var events []Event
			n.m.Subscribe(func(ev Event) { events = append(events, ev) })
			n.apply(n.member(x, tc.upd, tc.updInc))
			got, ok := n.m.Member(x)
			if tc.want == 0 {
				if ok {
					t.Fatalf("member added as %v", got.State)
				}
				return
			}
			if !ok || got.State != tc.want || got.Incarnation != tc.wantInc {
				t.Fatalf("got %v@%d (known %v), want %v@%d", got.State, got.Incarnation, ok, tc.want, tc.wantInc)
			}
			if (len(events) > 0) != tc.event {
				t.Fatalf("events = %+v, want event %v", events, tc.event)
			}
		})
	}
}

// TestStaleAccusationProbedNext checks that a dead claim at an older
// incarnation moves the accused to the front of the probe order.
func TestStaleAccusationProbedNext(t *testing.T) {
	n := newManualNode(t)
	for _, id := range n.ids[1:] {
		n.apply(n.member(id, dht.StateNormal, 2))
	}
	n.m.mu.Lock()
	first := n.m.nextProbeTargetLocked().ID
	n.m.mu.Unlock()
	accused := n.ids[1]
	if first == accused {
		accused = n.ids[2]
	}
	n.apply(n.member(accused, dht.StateDead, 1))
	if m, _ := n.m.Member(accused); m.State != dht.StateNormal || m.Incarnation != 2 {
		t.Fatalf("stale claim applied: %v@%d", m.State, m.Incarnation)
	}
	n.m.mu.Lock()
	next := n.m.nextProbeTargetLocked().ID
	n.m.mu.Unlock()
	if next != accused {
		t.Fatalf("next probe target %s, want the accused %s", short(next), short(accused))
	}
}

func TestSelfRefutation(t *testing.T) {
	tests := []struct {
		name    string
		state   dht.State
		inc     uint64
		addrs   []string // nil: the node's own
		wantInc uint64
	}{
		{"suspect at current inc", dht.StateSuspect, 3, nil, 4},
		{"dead at higher inc", dht.StateDead, 5, nil, 6},
		{"left claim is refuted", dht.StateLeft, 3, nil, 4},
		{"stale suspect ignored", dht.StateSuspect, 2, nil, 3},
		{"own state echoed back", dht.StateNormal, 3, nil, 3},
		{"stale details at same inc", dht.StateNormal, 3, []string{"/ip4/10.0.0.1/tcp/1"}, 4},
		{"remembered higher inc after restart", dht.StateNormal, 7, nil, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newManualNode(t)
			n.m.mu.Lock()
			n.m.members[n.ids[0]].Incarnation = 3
			n.m.mu.Unlock()
			u := n.member(n.ids[0], tc.state, tc.inc)
			if tc.addrs == nil {
				u.member.Addrs = n.m.Local().Addrs
			} else {
				u.member.Addrs = tc.addrs
			}
			n.apply(u)
			me := n.m.Local()
			if me.Incarnation != tc.wantInc || me.State != dht.StateNormal {
				t.Fatalf("self = %v@%d, want normal@%d", me.State, me.Incarnation, tc.wantInc)
			}
		})
	}
}

// TestRefutationOverTheWire feeds "you are suspect" to the SWIM handler and
// checks that the answer carries the refutation.
func TestRefutationOverTheWire(t *testing.T) {
	n := newManualNode(t)
	sender := n.ids[1]
	n.apply(n.member(sender, dht.StateNormal, 0))
	before := n.m.Local().Incarnation
	claim := n.member(n.ids[0], dht.StateSuspect, before)
	claim.member.Addrs = n.m.Local().Addrs
	req := gossipReq(claim)
	resp, err := n.m.handleSWIM(context.Background(), sender, req)
	if err != nil {
		t.Fatal(err)
	}
	after := n.m.Local()
	if after.Incarnation != before+1 || after.State != dht.StateNormal {
		t.Fatalf("after suspicion: %v@%d, want normal@%d", after.State, after.Incarnation, before+1)
	}
	found := false
	for _, u := range resp.(*pb.SwimAck).GetUpdates() {
		if peer.ID(u.GetMember().GetId()) == n.ids[0] && u.GetMember().GetIncarnation() == before+1 &&
			dht.State(u.GetMember().GetState()) == dht.StateNormal {
			found = true
		}
	}
	if !found {
		t.Fatal("the ack does not carry the refutation")
	}
	if h := n.m.HealthScore(); h != 1 {
		t.Fatalf("health score after refuting = %d, want 1", h)
	}
}

func TestSuspicionTimeouts(t *testing.T) {
	const min, max = time.Second, 6 * time.Second
	tests := []struct {
		n, k int
		want time.Duration
	}{
		{0, 0, min},
		{0, 3, max},
		{3, 3, min},
		{5, 3, min},
	}
	for _, tc := range tests {
		if got := suspicionTotal(tc.n, tc.k, min, max); got != tc.want {
			t.Errorf("suspicionTotal(%d, %d) = %v, want %v", tc.n, tc.k, got, tc.want)
		}
	}
	if got := suspicionTotal(1, 3, min, max); got <= min || got >= max {
		t.Errorf("one of three confirmations: %v, want strictly between", got)
	}

	now := time.Unix(0, 0)
	s := newSuspicion("a", 2, min, max, now)
	if !s.deadline.Equal(now.Add(max)) {
		t.Fatalf("fresh deadline %v, want max", s.deadline.Sub(now))
	}
	confirms := []struct {
		from    peer.ID
		counted bool
	}{{"a", false}, {"b", true}, {"b", false}, {"c", true}, {"d", false}}
	prev := s.deadline
	for _, c := range confirms {
		if got := s.confirm(c.from); got != c.counted {
			t.Fatalf("confirm(%s) = %v, want %v", c.from, got, c.counted)
		}
		if s.deadline.After(prev) {
			t.Fatal("a confirmation extended the deadline")
		}
		prev = s.deadline
	}
	if !s.deadline.Equal(now.Add(min)) {
		t.Fatalf("after k confirmations deadline is %v, want min", s.deadline.Sub(now))
	}

	cases := []struct {
		mult, n int
		want    time.Duration
	}{{3, 1, 300 * time.Millisecond}, {3, 10, 300 * time.Millisecond}, {3, 100, 600 * time.Millisecond}}
	for _, c := range cases {
		if got := suspicionTimeout(c.mult, c.n, 100*time.Millisecond); got != c.want {
			t.Errorf("suspicionTimeout(%d, %d) = %v, want %v", c.mult, c.n, got, c.want)
		}
	}
	limits := []struct{ mult, n, want int }{{4, 1, 4}, {4, 9, 4}, {4, 10, 8}, {4, 50, 8}, {4, 1000, 16}}
	for _, c := range limits {
		if got := retransmitLimit(c.mult, c.n); got != c.want {
			t.Errorf("retransmitLimit(%d, %d) = %d, want %d", c.mult, c.n, got, c.want)
		}
	}
}

func TestBroadcastQueue(t *testing.T) {
	q := newBroadcastQueue()
	mk := func(id string, inc uint64) update {
		return update{member: dht.Member{ID: peer.ID(id), Incarnation: inc}}
	}
	q.push(mk("a", 1))
	q.push(mk("b", 1))
	q.push(mk("a", 2)) // replaces a@1
	if q.len() != 2 {
		t.Fatalf("len = %d, want 2", q.len())
	}
	got := q.take(1, 2, "")
	if len(got) != 1 || got[0].member.ID != "a" || got[0].member.Incarnation != 2 {
		t.Fatalf("first take = %+v, want newest a@2", got)
	}
	got = q.take(1, 2, "")
	if len(got) != 1 || got[0].member.ID != "b" {
		t.Fatalf("second take = %+v, want least-sent b", got)
	}
	if got := q.take(5, 2, "b"); len(got) != 1 || got[0].member.ID != "a" {
		t.Fatalf("take skipping b = %+v", got)
	}
	if q.len() != 1 {
		t.Fatalf("a was sent twice and should be gone; len = %d", q.len())
	}
	q.take(5, 2, "")
	if q.len() != 0 {
		t.Fatalf("len = %d after every update reached the limit", q.len())
	}
	q.push(mk("c", 1))
	q.drop("c")
	if q.take(5, 2, "") != nil {
		t.Fatal("dropped update was sent")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		ok     bool
	}{
		{"lan", func(*Config) {}, true},
		{"timeout above interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, false},
		{"zero interval", func(c *Config) { c.ProbeInterval = 0 }, false},
		{"gossip slower than probes", func(c *Config) { c.GossipInterval = 2 * c.ProbeInterval }, false},
		{"no gossip nodes", func(c *Config) { c.GossipNodes = 0 }, false},
		{"push-pull too fast", func(c *Config) { c.PushPullInterval = c.ProbeInterval / 2 }, false},
		{"reap before push-pull", func(c *Config) { c.DeadReapTimeout = c.PushPullInterval / 2 }, false},
		{"too many updates", func(c *Config) { c.MaxUpdatesPerMessage = MaxWireUpdates + 1 }, false},
		{"awareness off", func(c *Config) { c.AwarenessMaxMultiplier = 1 }, true},
		{"bad suspicion mult", func(c *Config) { c.SuspicionMult = 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultLANConfig()
			tc.modify(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
	if err := DefaultLocalConfig().Validate(); err != nil {
		t.Fatalf("DefaultLocalConfig: %v", err)
	}
}

func TestNewValidatesSelf(t *testing.T) {
	net := memnet.New(memnet.DefaultOptions())
	ids := testIDs(t, 2)
	ep := net.Endpoint(ids[0])
	tests := []struct {
		name string
		self dht.Member
		ok   bool
	}{
		{"defaults", dht.Member{}, true},
		{"other id", dht.Member{ID: ids[1]}, false},
		{"dead", dht.Member{State: dht.StateDead}, false},
		{"huge capacity", dht.Member{Capacity: 100}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(DefaultLocalConfig(), tc.self, ep, dht.SystemClock{})
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok %v", err, tc.ok)
			}
			if m != nil {
				if l := m.Local(); l.State != dht.StateNormal || l.Capacity != 1 || len(l.Addrs) != 1 {
					t.Fatalf("defaults not applied: %+v", l)
				}
				if err := m.Close(); err != nil || m.Close() != nil {
					t.Fatal("Close is not idempotent")
				}
			}
		})
	}
}
