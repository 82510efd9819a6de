package replica_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
	"github.com/ringkv/ringkv/dht/version"
)

// The test harness: several Engines over one memnet.Network (Clone on),
// each with its own MemStore, registry and fakeView. Every placement is
// computed from rings the test builds, so a test names nodes by their
// role for a key (natural replica i, i-th other node in ring order) and
// never depends on which peer IDs the seed happens to produce.

// testSeed seeds the peer IDs of every test cluster.
const testSeed = 7

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// clockStart is where every fake clock starts.
var clockStart = time.Unix(1_700_000_000, 0)

func newFakeClock() *fakeClock { return &fakeClock{now: clockStart} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeView is one node's placement knowledge. Natural and Walk come from
// the serving ring, Pending from the future ring (nil when no join or
// leave is in progress), Alive from the member set minus the nodes the
// test marked dead. memnet faults are independent of it, so a test can
// make a node unreachable while the view still believes it alive.
type fakeView struct {
	self peer.ID
	n    int

	mu      sync.Mutex
	serving *ring.Ring       // guarded by mu
	future  *ring.Ring       // guarded by mu; nil: nothing moving
	members map[peer.ID]bool // guarded by mu
	dead    map[peer.ID]bool // guarded by mu
}

var _ replica.View = (*fakeView)(nil)

func (v *fakeView) rings() (serving, future *ring.Ring) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.serving, v.future
}

func (v *fakeView) Natural(pos uint64) []peer.ID {
	s, _ := v.rings()
	return s.PreferenceList(pos, v.n)
}

func (v *fakeView) Pending(pos uint64) []peer.ID {
	s, f := v.rings()
	if f == nil {
		return nil
	}
	nat := s.PreferenceList(pos, v.n)
	var out []peer.ID
	for _, id := range f.PreferenceList(pos, v.n) {
		if !slices.Contains(nat, id) {
			out = append(out, id)
		}
	}
	return out
}

func (v *fakeView) Walk(pos uint64, fn func(peer.ID) bool) {
	s, _ := v.rings()
	s.Walk(pos, fn)
}

func (v *fakeView) Alive(id peer.ID) bool {
	if id == v.self {
		return true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.members[id] && !v.dead[id]
}

// Down: the fake has no suspects, so down is not alive.
func (v *fakeView) Down(id peer.ID) bool { return !v.Alive(id) }

func (v *fakeView) setDead(dead bool, ids ...peer.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		v.dead[id] = dead
	}
}

func (v *fakeView) setRings(serving, future *ring.Ring) {
	v.mu.Lock()
	v.serving, v.future = serving, future
	v.mu.Unlock()
}

// tnode is one engine of a test cluster and everything it owns.
type tnode struct {
	id   peer.ID
	e    *replica.Engine
	st   *dhttest.MemStore
	ep   *memnet.Endpoint
	view *fakeView
	reg  *prometheus.Registry
}

// cluster is a set of engines over one memnet.
type cluster struct {
	t     testing.TB
	net   *memnet.Network
	clock *fakeClock
	cfg   replica.Config
	ring  *ring.Ring // the serving ring every view starts from
	ids   []peer.ID  // serving members, in seed order
	nodes map[peer.ID]*tnode
}

// testConfig is DefaultConfig with handoff left to the test (HandOff is
// called explicitly) and a repair wait long enough for any scheduler.
func testConfig() replica.Config {
	cfg := replica.DefaultConfig()
	cfg.HintInterval = time.Hour
	cfg.RepairWait = 5 * time.Second
	cfg.RequestTimeout = 5 * time.Second
	return cfg
}

// newCluster starts size engines with cfg (its Registerer is replaced by
// one registry per node) and closes them when the test ends.
func newCluster(t testing.TB, size int, cfg replica.Config) *cluster {
	t.Helper()
	c := &cluster{
		t: t, net: memnet.New(memnet.DefaultOptions()), clock: newFakeClock(), cfg: cfg,
		ids: ringtest.PeerIDs(testSeed, size), nodes: map[peer.ID]*tnode{},
	}
	c.ring = ring.New(ringtest.Nodes(testSeed, size, 0), 0)
	for _, id := range c.ids {
		c.start(id, dhttest.NewMemStore())
	}
	return c
}

// start builds and starts an engine for id over st, with a fresh view of
// the cluster's serving ring.
func (c *cluster) start(id peer.ID, st *dhttest.MemStore) *tnode {
	c.t.Helper()
	return c.startWith(id, st, c.cfg)
}

// startWith is start with a configuration of id's own.
func (c *cluster) startWith(id peer.ID, st *dhttest.MemStore, cfg replica.Config) *tnode {
	c.t.Helper()
	members := map[peer.ID]bool{}
	for _, m := range c.ids {
		members[m] = true
	}
	for m := range c.nodes {
		members[m] = true
	}
	members[id] = true
	view := &fakeView{self: id, n: cfg.Replicas, serving: c.ring, members: members, dead: map[peer.ID]bool{}}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	ep := c.net.Endpoint(id)
	e, err := replica.New(cfg, id, ep, st, view, c.clock)
	if err != nil {
		c.t.Fatalf("new engine: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		c.t.Fatalf("start engine: %v", err)
	}
	c.t.Cleanup(func() { _ = e.Close() })
	n := &tnode{id: id, e: e, st: st, ep: ep, view: view, reg: reg}
	c.nodes[id] = n
	return n
}

// restart closes id's engine and starts a new one over the same store.
func (c *cluster) restart(id peer.ID) *tnode {
	c.t.Helper()
	return c.restartWithConfig(id, c.cfg)
}

// restartWithConfig is restart with a configuration of id's own.
func (c *cluster) restartWithConfig(id peer.ID, cfg replica.Config) *tnode {
	c.t.Helper()
	old := c.nodes[id]
	if err := old.e.Close(); err != nil {
		c.t.Fatalf("close: %v", err)
	}
	n := c.startWith(id, old.st, cfg)
	n.view.setRings(old.view.rings())
	return n
}

// addJoiner starts one more engine, joining: it is in every view's
// future ring but not in the serving ring.
func (c *cluster) addJoiner() peer.ID {
	c.t.Helper()
	id := ringtest.PeerID(testSeed, len(c.ids))
	n := c.start(id, dhttest.NewMemStore())
	future := c.ring.With(ring.Node{ID: id, Capacity: 1})
	n.view.setRings(c.ring, future)
	for _, other := range c.nodes {
		other.view.mu.Lock()
		other.view.members[id] = true
		other.view.future = future
		other.view.mu.Unlock()
	}
	return id
}

func (c *cluster) node(id peer.ID) *tnode {
	c.t.Helper()
	n, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("no node %s", id)
	}
	return n
}

// setDead marks ids dead (or alive again) in every node's view.
func (c *cluster) setDead(dead bool, ids ...peer.ID) {
	for _, n := range c.nodes {
		n.view.setDead(dead, ids...)
	}
}

// roles names the nodes of the serving ring by their place for one key.
type roles struct {
	key    []byte
	pos    uint64
	nat    []peer.ID // natural replicas, preference order
	others []peer.ID // every other serving node, in ring order from pos
}

func (c *cluster) roles(key string) roles {
	r := roles{key: []byte(key), pos: ring.KeyPos([]byte(key))}
	r.nat = c.ring.PreferenceList(r.pos, c.cfg.Replicas)
	c.ring.Walk(r.pos, func(id peer.ID) bool {
		if !slices.Contains(r.nat, id) {
			r.others = append(r.others, id)
		}
		return true
	})
	return r
}

// pendingKey returns a key for which joiner is a pending replica.
func (c *cluster) pendingKey(joiner peer.ID) string {
	c.t.Helper()
	future := c.ring.With(ring.Node{ID: joiner, Capacity: 1})
	for i := range 10000 {
		k := fmt.Sprintf("pending-%d", i)
		if slices.Contains(future.PreferenceList(ring.KeyPos([]byte(k)), c.cfg.Replicas), joiner) {
			return k
		}
	}
	c.t.Fatalf("no key with %s pending", joiner)
	return ""
}

// data returns id's replica record of key.
func (c *cluster) data(id peer.ID, key []byte) (dht.Record, bool) {
	c.t.Helper()
	return c.get(id, replica.DataKey(ring.KeyPos(key), key))
}

// hint returns the record id holds for owner as a hint.
func (c *cluster) hint(id peer.ID, key []byte, owner peer.ID) (dht.Record, bool) {
	c.t.Helper()
	return c.get(id, replica.HintKey(ring.KeyPos(key), key, owner))
}

func (c *cluster) get(id peer.ID, sk []byte) (dht.Record, bool) {
	c.t.Helper()
	rec, err := c.node(id).st.Get(context.Background(), sk)
	if errors.Is(err, dht.ErrNotFound) {
		return dht.Record{}, false
	}
	if err != nil {
		c.t.Fatalf("store get: %v", err)
	}
	return rec, true
}

// wrap replaces id's protocol handler with mw(engine handler).
func (c *cluster) wrap(id peer.ID, mw func(next dht.Handler) dht.Handler) {
	n := c.node(id)
	handle := func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
		return replica.Handle(ctx, n.e, from, req)
	}
	n.ep.Handle(replica.Protocol, func() proto.Message { return new(pb.KVRequest) }, mw(handle))
}

// gate makes id's handler wait until the returned release is called (or
// the call's context ends). release is idempotent and runs at cleanup,
// before the engines close.
func (c *cluster) gate(id peer.ID) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	c.wrap(id, func(next dht.Handler) dht.Handler {
		return func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return next(ctx, from, req)
		}
	})
	c.t.Cleanup(release)
	return release
}

// mkRecord is base overwritten by a write of value coordinated by a, ts
// nanoseconds after the fake clock's start, with base's context (so it
// descends base).
func mkRecord(base dht.Record, a peer.ID, value string, ts int64) dht.Record {
	return writeVersion(base, a, dht.Version{Value: []byte(value), Timestamp: ts})
}

// mkTombstone is a delete by actor a over base, with base's context.
func mkTombstone(base dht.Record, a peer.ID, ts int64) dht.Record {
	return writeVersion(base, a, dht.Version{Tombstone: true, Timestamp: ts})
}

// writeVersion writes v over base as actor a, its Timestamp counted from
// the fake clock's start.
func writeVersion(base dht.Record, a peer.ID, v dht.Version) dht.Record {
	v.Timestamp += clockStart.UnixNano()
	return version.Update(base, base.Context, v, dht.ActorOf(a), v.Timestamp)
}

// values returns the sibling values of rec, tombstones as "<tomb>", sorted.
func values(rec dht.Record) []string {
	var out []string
	for _, v := range rec.Versions {
		if v.Tombstone {
			out = append(out, "<tomb>")
			continue
		}
		out = append(out, string(v.Value))
	}
	slices.Sort(out)
	return out
}

// counter returns the value of a counter in reg: the sum over the series
// whose labels include every name=value pair of labels.
func counter(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
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
			if hasLabels(m, labels) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// poll waits until cond holds, checking every few milliseconds, and fails
// the test after timeout.
func poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTimeout bounds every poll; the conditions hold within milliseconds.
const waitTimeout = 10 * time.Second

// replicaRecords counts the records n stores as a replica or for others
// (data and hint keys), leaving out the engine's own metadata.
func replicaRecords(t *testing.T, n *tnode) int64 {
	t.Helper()
	var total int64
	for _, p := range [][]byte{replica.DataPrefix(), replica.HintPrefix()} {
		c, err := n.st.Count(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		total += c
	}
	return total
}
