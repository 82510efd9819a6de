package antientropy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
	"github.com/ringkv/ringkv/dht/version"
)

// memStore is an in-memory dht.Store: records kept marshalled, as a real
// store would, under keys kept sorted.
type memStore struct {
	mu   sync.RWMutex
	keys []string          // sorted; guarded by mu
	recs map[string][]byte // guarded by mu
}

var _ dht.Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{recs: map[string][]byte{}} }

func (m *memStore) Get(_ context.Context, key []byte) (dht.Record, error) {
	m.mu.RLock()
	b, ok := m.recs[string(key)]
	m.mu.RUnlock()
	if !ok {
		return dht.Record{}, dht.ErrNotFound
	}
	return dht.UnmarshalRecord(b)
}

func (m *memStore) Put(ctx context.Context, key []byte, rec dht.Record) error {
	return m.PutBatch(ctx, []dht.Entry{{Key: key, Record: rec}})
}

func (m *memStore) PutEach(ctx context.Context, entries []dht.Entry) []error {
	errs := make([]error, len(entries))
	for i, e := range entries {
		errs[i] = m.Put(ctx, e.Key, e.Record)
	}
	return errs
}

func (m *memStore) PutBatch(_ context.Context, entries []dht.Entry) error {
	bs := make([][]byte, len(entries))
	for i, e := range entries {
		b, err := dht.MarshalRecord(e.Record)
		if err != nil {
			return err
		}
		bs[i] = b
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var fresh []string
	for i, e := range entries {
		k := string(e.Key)
		if _, ok := m.recs[k]; !ok {
			fresh = append(fresh, k)
		}
		m.recs[k] = bs[i]
	}
	if len(fresh) > 16 {
		m.keys = append(m.keys, fresh...)
		sort.Strings(m.keys)
		m.keys = slices.Compact(m.keys)
		return nil
	}
	for _, k := range fresh {
		i, found := slices.BinarySearch(m.keys, k)
		if !found {
			m.keys = slices.Insert(m.keys, i, k)
		}
	}
	return nil
}

func (m *memStore) Delete(_ context.Context, key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := string(key)
	if _, ok := m.recs[k]; !ok {
		return nil
	}
	delete(m.recs, k)
	if i, found := slices.BinarySearch(m.keys, k); found {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	return nil
}

func (m *memStore) Scan(ctx context.Context, start, end []byte, fn func(key []byte, rec dht.Record) error) error {
	m.mu.RLock()
	i := sort.SearchStrings(m.keys, string(start))
	j := len(m.keys)
	if end != nil {
		j = sort.SearchStrings(m.keys, string(end))
	}
	keys := slices.Clone(m.keys[i:max(i, j)])
	bs := make([][]byte, len(keys))
	for k, key := range keys {
		bs[k] = m.recs[key]
	}
	m.mu.RUnlock()
	for k, key := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := dht.UnmarshalRecord(bs[k])
		if err != nil {
			return err
		}
		if err := fn([]byte(key), rec); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Count(_ context.Context, prefix []byte) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var n int64
	for _, k := range m.keys {
		if strings.HasPrefix(k, string(prefix)) {
			n++
		}
	}
	return n, nil
}

func (m *memStore) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var n int64
	for k, b := range m.recs {
		n += int64(len(k) + len(b))
	}
	return n
}

// records returns every replica record as user key -> record.
func (m *memStore) records(t testing.TB) map[string]dht.Record {
	t.Helper()
	out := map[string]dht.Record{}
	err := m.Scan(context.Background(), replica.DataPrefix(), []byte{'e'}, func(sk []byte, rec dht.Record) error {
		_, key, ok := replica.ParseDataKey(sk)
		if ok {
			out[string(key)] = rec
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

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

// world is the placement every test node shares: the rings, N, and the
// nodes the failure detector has marked down.
type world struct {
	net *memnet.Network

	mu      sync.Mutex
	serving *ring.Ring       // guarded by mu
	future  *ring.Ring       // guarded by mu
	n       int              // guarded by mu
	down    map[peer.ID]bool // guarded by mu
}

func (w *world) setRings(serving, future *ring.Ring) {
	w.mu.Lock()
	w.serving, w.future = serving, future
	w.mu.Unlock()
}

func (w *world) setDown(id peer.ID, down bool) {
	w.mu.Lock()
	w.down[id] = down
	w.mu.Unlock()
}

// placement is one node's view of the world.
type placement struct {
	w    *world
	self peer.ID
}

func (p placement) Self() peer.ID { return p.self }

func (p placement) Serving() *ring.Ring {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.w.serving
}

func (p placement) Future() *ring.Ring {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.w.future
}

func (p placement) Replicas() int {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.w.n
}

func (p placement) Alive(id peer.ID) bool {
	p.w.mu.Lock()
	down := p.w.down[id]
	p.w.mu.Unlock()
	return !down && p.w.net.Alive(id)
}

// testKV is the fake replica's protocol for remote reads and purges.
const testKV dht.Protocol = "/ringkv-test/kv/1.0.0"

// fakeReplica is a minimal replica engine over a store: Apply merges
// under one lock, Purge deletes a tombstone with a matching digest, and
// remote reads and purges go over the memnet (so kills and partitions
// apply to them).
type fakeReplica struct {
	self peer.ID
	st   dht.Store
	tr   dht.Transport
	lww  bool       // the cluster's conflict mode, as the engine's Config.LWW
	mu   sync.Mutex // guards read-merge-write
}

var _ Replica = (*fakeReplica)(nil)

func (r *fakeReplica) Apply(ctx context.Context, key []byte, pos uint64, rec dht.Record) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sk := replica.DataKey(pos, key)
	cur, err := r.st.Get(ctx, sk)
	existed := err == nil
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		return false, err
	}
	merged := version.Merge(cur, rec)
	if existed && version.Identical(merged, cur) {
		return false, nil
	}
	return true, r.st.Put(ctx, sk, merged)
}

func (r *fakeReplica) Purge(ctx context.Context, key []byte, digest uint64) (bool, error) {
	return r.deleteIf(ctx, key, func(rec dht.Record) bool {
		return version.DiedBy(rec, math.MaxInt64, r.lww) && merkle.RecordDigest(rec) == digest
	})
}

func (r *fakeReplica) Release(ctx context.Context, key []byte, digest uint64) (bool, error) {
	return r.deleteIf(ctx, key, func(rec dht.Record) bool { return merkle.RecordDigest(rec) == digest })
}

func (r *fakeReplica) deleteIf(ctx context.Context, key []byte, ok func(dht.Record) bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sk := dataKey(key)
	rec, err := r.st.Get(ctx, sk)
	if errors.Is(err, dht.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !ok(rec) {
		return false, nil
	}
	return true, r.st.Delete(ctx, sk)
}

func (r *fakeReplica) CallPurge(ctx context.Context, id peer.ID, key []byte, digest uint64) (bool, error) {
	if id == r.self {
		return r.Purge(ctx, key, digest)
	}
	var resp pb.KVResponse
	req := &pb.KVRequest{Op: &pb.KVRequest_Purge{Purge: &pb.PurgeRequest{Key: key, Digest: digest}}}
	if err := r.tr.Call(ctx, id, testKV, req, &resp); err != nil {
		return false, err
	}
	return resp.GetPurge().GetPurged(), nil
}

func (r *fakeReplica) ReadReplica(ctx context.Context, id peer.ID, key []byte) (dht.Record, bool, error) {
	if id == r.self {
		return getLocal(ctx, r.st, key)
	}
	var resp pb.KVResponse
	req := &pb.KVRequest{Op: &pb.KVRequest_Read{Read: &pb.ReadRequest{Key: key}}}
	if err := r.tr.Call(ctx, id, testKV, req, &resp); err != nil {
		return dht.Record{}, false, err
	}
	return dht.RecordFromPB(resp.GetRead().GetRecord()), resp.GetRead().GetFound(), nil
}

func (r *fakeReplica) handle(ctx context.Context, _ peer.ID, req proto.Message) (proto.Message, error) {
	switch op := req.(*pb.KVRequest).Op.(type) {
	case *pb.KVRequest_Read:
		rec, found, err := getLocal(ctx, r.st, op.Read.Key)
		if err != nil {
			return nil, err
		}
		out := &pb.ReadResponse{Found: found}
		if found {
			out.Record = dht.RecordToPB(rec)
		}
		return &pb.KVResponse{Result: &pb.KVResponse_Read{Read: out}}, nil
	case *pb.KVRequest_Purge:
		ok, err := r.Purge(ctx, op.Purge.Key, op.Purge.Digest)
		if err != nil {
			return nil, err
		}
		return &pb.KVResponse{Result: &pb.KVResponse_Purge{Purge: &pb.PurgeResponse{Purged: ok}}}, nil
	}
	return nil, errors.New("fake replica: unsupported request")
}

// tnode is one test node.
type tnode struct {
	id  peer.ID
	st  *memStore
	rep *fakeReplica
	s   *Syncer
}

// cluster is a set of test nodes on one memnet.
type cluster struct {
	t      testing.TB
	w      *world
	clock  *fakeClock
	cfg    Config
	vnodes int
	nodes  map[peer.ID]*tnode
	ids    []peer.ID // the serving members at creation, sorted
}

// testConfig is LocalConfig without the background loop.
func testConfig() Config {
	c := LocalConfig()
	c.Interval = 0
	return c
}

// newCluster starts count nodes, all serving, with N = n.
func newCluster(t testing.TB, count, n, vnodes int, cfg Config) *cluster {
	t.Helper()
	c := &cluster{
		t: t, clock: newFakeClock(), cfg: cfg, vnodes: vnodes, nodes: map[peer.ID]*tnode{},
		w: &world{net: memnet.New(memnet.DefaultOptions()), n: n, down: map[peer.ID]bool{}},
	}
	c.ids = ringtest.PeerIDs(7, count)
	slices.Sort(c.ids)
	r := c.ringOf(c.ids...)
	c.w.setRings(r, r)
	for _, id := range c.ids {
		c.add(id)
	}
	return c
}

// ringOf builds the ring of ids.
func (c *cluster) ringOf(ids ...peer.ID) *ring.Ring {
	nodes := make([]ring.Node, len(ids))
	for i, id := range ids {
		nodes[i] = ring.Node{ID: id, Capacity: 1}
	}
	return ring.New(nodes, c.vnodes)
}

// add starts a node with id (it joins no ring by itself).
func (c *cluster) add(id peer.ID) *tnode {
	c.t.Helper()
	ep := c.w.net.Endpoint(id)
	st := newMemStore()
	rep := &fakeReplica{self: id, st: st, tr: ep, lww: c.cfg.LWW}
	ep.Handle(testKV, func() proto.Message { return new(pb.KVRequest) }, rep.handle)
	s, err := New(c.cfg, placement{w: c.w, self: id}, rep, ep, st, c.clock)
	if err != nil {
		c.t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		c.t.Fatalf("Start: %v", err)
	}
	c.t.Cleanup(func() { _ = s.Close() })
	nd := &tnode{id: id, st: st, rep: rep, s: s}
	c.nodes[id] = nd
	return nd
}

// put stores rec as id's replica record of key, bypassing everything.
func (c *cluster) put(id peer.ID, key string, rec dht.Record) {
	c.t.Helper()
	if err := c.nodes[id].st.Put(context.Background(), dataKey([]byte(key)), rec); err != nil {
		c.t.Fatalf("put: %v", err)
	}
}

// natural returns the serving replicas of key.
func (c *cluster) natural(key string) []peer.ID {
	return placement{w: c.w}.Serving().PreferenceList(ring.KeyPos([]byte(key)), c.w.n)
}

// future returns the future replicas of key.
func (c *cluster) future(key string) []peer.ID {
	return placement{w: c.w}.Future().PreferenceList(ring.KeyPos([]byte(key)), c.w.n)
}

// roundAll runs one Round on every node in ID order and returns the total
// progress.
func (c *cluster) roundAll() Progress {
	c.t.Helper()
	var total Progress
	for _, id := range c.sortedIDs() {
		p, err := c.nodes[id].s.Round(context.Background(), nil)
		if err != nil {
			c.t.Fatalf("Round on %s: %v", id, err)
		}
		total.KeysSent += p.KeysSent
		total.KeysReceived += p.KeysReceived
		total.Bytes += p.Bytes
		total.RangesDone += p.RangesDone
		total.RangesTotal += p.RangesTotal
	}
	return total
}

func (c *cluster) sortedIDs() []peer.ID {
	ids := make([]peer.ID, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Record builders. Each write is what a coordinator with actor would make.

func actor(i int) uint64 { return uint64(1000 + i) }

// write overwrites local causally (the client read local).
func write(local dht.Record, a uint64, value string, ts time.Time) dht.Record {
	return version.Update(local, local.Context, dht.Version{Value: []byte(value), Timestamp: ts.UnixNano()}, a, ts.UnixNano())
}

// expiring overwrites local causally with a value that dies at exp.
func expiring(local dht.Record, a uint64, value string, ts, exp time.Time) dht.Record {
	v := dht.Version{Value: []byte(value), Timestamp: ts.UnixNano(), ExpiresAt: exp.UnixNano()}
	return version.Update(local, local.Context, v, a, ts.UnixNano())
}

// del deletes local causally.
func del(local dht.Record, a uint64, ts time.Time) dht.Record {
	return version.Update(local, local.Context, dht.Version{Tombstone: true, Timestamp: ts.UnixNano()}, a, ts.UnixNano())
}

// mergeAll merges records.
func mergeAll(recs ...dht.Record) dht.Record {
	var out dht.Record
	for _, r := range recs {
		out = version.Merge(out, r)
	}
	return out
}

func digest(r dht.Record) uint64 { return merkle.RecordDigest(r) }

func keyName(i int) string { return fmt.Sprintf("key-%05d", i) }

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
