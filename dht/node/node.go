package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/membership"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/routing"
	"github.com/ringkv/ringkv/dht/version"
)

// Errors the node returns besides dht.ErrNotFound and replica's.
var (
	// ErrBadContext: the client's causal context does not decode.
	ErrBadContext = version.ErrBadContext
	// ErrUnavailable: the operation cannot be served now.
	ErrUnavailable = errors.New("node: unavailable")
	// ErrTooManySiblings: the write would leave the key with more
	// concurrent versions than allowed; read it and write with its context.
	ErrTooManySiblings = replica.ErrTooManySiblings
	// ErrOutcomeUnknown: the replica coordinating a write took it and did
	// not answer; the write may or may not have been applied.
	ErrOutcomeUnknown = replica.ErrOutcomeUnknown
)

// QuorumError is replica.QuorumError: fewer replicas answered than required.
type QuorumError = replica.QuorumError

// Node is one ringkv node's distributed layer: membership, routing and
// replication over one transport and one store. New builds it, Start
// brings it up, Close takes it down.
type Node struct {
	cfg   Config
	self  peer.ID
	tr    dht.Transport
	st    dht.Store
	clock dht.Clock
	log   *slog.Logger

	view  *view
	ml    *membership.Memberlist
	rt    *routing.Router
	eng   *replica.Engine
	maint *maintainer

	joining atomic.Bool // the pull of a first join has started
	// rejoining is set while a restarted node waits to learn the cluster's
	// members (see membershipPending); started is when New ran.
	rejoining atomic.Bool
	started   time.Time
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeMu   sync.Mutex
	closed    bool
}

// New builds a node over tr and st. A node configured to join an existing
// cluster (Config.Join) that has never completed a join starts in state
// Joining: it takes writes but serves no reads until it has pulled its
// data, after its first successful Join. Every other node, including one
// restarting after a crash, starts Normal: what it missed arrives by
// hinted handoff, read repair and anti-entropy. A node that restarts with
// peers to ask (Config.Join or Config.Peers) first learns the cluster's
// members from them (see NotReady).
func New(cfg Config, tr dht.Transport, st dht.Store, clk dht.Clock) (*Node, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if clk == nil {
		clk = dht.SystemClock{}
	}
	n := &Node{cfg: cfg, self: tr.Self(), tr: tr, st: st, clock: clk, log: cfg.Logger}
	self := dht.Member{ID: n.self, Addrs: tr.LocalAddrs(), Zone: cfg.Zone, Capacity: cfg.Capacity, State: dht.StateNormal}
	if cfg.Join && !joinedBefore(st) {
		self.State = dht.StateJoining
	}
	n.rejoining.Store(self.State == dht.StateNormal && (cfg.Join || cfg.Peers))
	n.started = time.Now()
	n.view = newView(self, cfg.Replicas, cfg.VNodes)
	mcfg := cfg.Membership
	mcfg.StartIncomplete = self.State == dht.StateJoining || n.rejoining.Load()
	if n.ml, err = membership.New(mcfg, self, tr, clk); err != nil {
		return nil, err
	}
	routeSelf := routing.Peer{ID: n.self, Addrs: self.Addrs, Zone: cfg.Zone, Capacity: cfg.Capacity}
	if n.rt, err = routing.New(cfg.Routing, routeSelf, tr, clk); err != nil {
		return nil, err
	}
	rcfg := cfg.Replica
	rcfg.Coordinates = func() bool { return n.membershipPending() == "" }
	if n.eng, err = replica.New(rcfg, n.self, tr, st, n.view, clk); err != nil {
		return nil, err
	}
	if n.maint, err = newMaintainer(n); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Start registers every protocol and starts the background work.
func (n *Node) Start(ctx context.Context) error {
	n.ml.Subscribe(n.onMember)
	if err := n.eng.Start(ctx); err != nil {
		return err
	}
	if err := n.rt.Start(ctx); err != nil {
		return err
	}
	if err := n.ml.Start(ctx); err != nil {
		return err
	}
	if err := n.maint.start(n.ctx); err != nil {
		return err
	}
	if n.ml.Local().State == dht.StateNormal {
		if err := markJoined(ctx, n.st); err != nil {
			return err
		}
	}
	if n.rejoining.Load() {
		n.goBackground(n.awaitMembership)
	}
	n.goBackground(n.reportStorage)
	return nil
}

// membershipPending explains why a restarted node does not serve yet, or
// "". Until its member list is complete (membership.Complete) it knows
// only the members gossip happened to name since it started, and
// preference lists drawn from them would put an acknowledged write on
// nodes that a read through any other node never asks. It waits at most
// RejoinWait for a peer to answer, then serves with what it knows.
func (n *Node) membershipPending() string {
	if !n.rejoining.Load() {
		return ""
	}
	waited := time.Since(n.started)
	switch {
	case n.ml.Complete():
		// The events of the merge that completed the list may still be on
		// their way to the view: take the list itself.
		members := n.ml.Members()
		for _, m := range members {
			n.view.update(m)
		}
		if n.rejoining.CompareAndSwap(true, false) {
			n.log.Info("learned the cluster's members; serving", "members", len(members), "after", waited.Round(time.Millisecond))
		}
	case waited >= n.cfg.RejoinWait:
		n.ml.MarkComplete()
		if n.rejoining.CompareAndSwap(true, false) {
			n.log.Warn("no peer with the cluster's member list answered; serving with the members this node knows",
				"waited", n.cfg.RejoinWait, "members", len(n.ml.Members()))
		}
	default:
		return "rejoining: learning the cluster's members from its peers"
	}
	return ""
}

// awaitMembership ends a restarted node's wait as soon as its member list
// is complete, or after RejoinWait, so that the node turns ready (and says
// so in its log) without waiting for a request.
func (n *Node) awaitMembership(ctx context.Context) {
	t := time.NewTicker(membershipPoll)
	defer t.Stop()
	for n.membershipPending() != "" {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// membershipPoll is how often a restarted node checks whether it has
// learned the cluster's members.
const membershipPoll = 20 * time.Millisecond

// serving refuses client requests, as unavailable, while the node learns
// the members.
func (n *Node) serving() error {
	if why := n.membershipPending(); why != "" {
		return fmt.Errorf("%w: %s; retry in a moment, or through another node", ErrUnavailable, why)
	}
	return nil
}

// metaJoined marks, in the store, a node that has completed a join: when
// it restarts it is a member coming back, not a new node.
var metaJoined = []byte("m/joined")

func joinedBefore(st dht.Store) bool {
	_, err := st.Get(context.Background(), metaJoined)
	return err == nil
}

func markJoined(ctx context.Context, st dht.Store) error {
	return st.Put(ctx, metaJoined, dht.Record{Versions: []dht.Version{{Value: []byte("1"), Dot: dht.Dot{Actor: 1, Counter: 1}}}})
}

// Join joins the cluster through seed, a peer the transport can already
// reach. A node in state Joining then pulls its arcs from their current
// holders and becomes Normal. Join may be called for several seeds, also
// concurrently.
func (n *Node) Join(ctx context.Context, seed peer.ID) error {
	if _, err := n.ml.Join(ctx, []peer.ID{seed}); err != nil {
		return err
	}
	if m, ok := n.ml.Member(seed); ok {
		n.rt.Observe(routing.Peer{ID: m.ID, Addrs: m.Addrs, Zone: m.Zone, Capacity: m.Capacity})
	}
	if n.ml.Local().State == dht.StateJoining && n.joining.CompareAndSwap(false, true) {
		n.goBackground(n.finishJoin)
	}
	return nil
}

// finishJoin waits for gossip to spread the join (JoinSettle), pulls the
// node's arcs and then announces it Normal.
func (n *Node) finishJoin(ctx context.Context) {
	settle := time.NewTimer(n.cfg.JoinSettle)
	select {
	case <-settle.C:
	case <-ctx.Done():
		settle.Stop()
		return
	}
	if err := n.maint.bootstrap(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("pulling data for the join failed; serving with what anti-entropy brings", "err", err)
	}
	if err := n.ml.SetState(dht.StateNormal); err != nil {
		n.log.Warn("announcing the join", "err", err)
		return
	}
	n.view.update(n.ml.Local())
	if err := markJoined(ctx, n.st); err != nil {
		n.log.Warn("recording the join", "err", err)
	}
	n.log.Info("joined the cluster", "members", n.ml.NumLive())
}

// onMember follows membership into the view and the routing state.
func (n *Node) onMember(ev membership.Event) {
	m := ev.Member
	n.view.update(m)
	if m.ID == n.self {
		return
	}
	switch m.State {
	case dht.StateLeft, dht.StateDead:
		n.rt.Forget(m.ID)
	default:
		n.rt.Observe(routing.Peer{ID: m.ID, Addrs: m.Addrs, Zone: m.Zone, Capacity: m.Capacity})
	}
}

// reportStorage gossips the store's size now and then.
func (n *Node) reportStorage(ctx context.Context) {
	t := time.NewTicker(n.cfg.StorageReportInterval)
	defer t.Stop()
	for {
		n.ml.SetStorage(n.st.Size())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) goBackground(fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.ctx)
	}()
}

// Close stops everything the node started, in reverse order. Idempotent.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.cancel()
	n.wg.Wait()
	return errors.Join(n.maint.close(), n.ml.Close(), n.rt.Close(), n.eng.Close())
}

// Self is the node's peer ID.
func (n *Node) Self() peer.ID { return n.self }

// NotReady explains why the node should not take client traffic, or "".
func (n *Node) NotReady() string {
	if why := n.membershipPending(); why != "" {
		return why
	}
	switch n.ml.Local().State {
	case dht.StateJoining:
		return "joining: pulling this node's data from its replicas"
	case dht.StateLeaving:
		return "leaving: handing this node's data off"
	case dht.StateLeft:
		return "left the cluster"
	}
	return ""
}

// Put writes value under key.
func (n *Node) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResult, error) {
	return n.write(ctx, replica.Write{Key: key, Value: value, W: o.W, TTL: o.TTL}, o.Context)
}

// Delete writes a tombstone for key. Without a causal context it first
// reads the key from R replicas and deletes every version found, as a
// delete is meant to (a blind tombstone would only be a sibling of the
// value it was meant to remove).
func (n *Node) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResult, error) {
	if err := n.serving(); err != nil {
		return WriteResult{}, err
	}
	if o.Context == "" {
		res, err := n.eng.Read(ctx, key, 0)
		if err != nil {
			return WriteResult{}, err
		}
		o.Context = version.EncodeContext(res.Record.Context)
	}
	return n.write(ctx, replica.Write{Key: key, Tombstone: true, W: o.W}, o.Context)
}

func (n *Node) write(ctx context.Context, w replica.Write, cctx string) (WriteResult, error) {
	if err := n.serving(); err != nil {
		return WriteResult{}, err
	}
	dots, err := version.DecodeContext(cctx)
	if err != nil {
		return WriteResult{}, err
	}
	w.Context = dots
	res, err := n.eng.Write(ctx, w)
	out := WriteResult{Context: version.EncodeContext(res.Context), Acks: res.Acks, Hinted: res.Hinted, Coordinator: res.Coordinator}
	if errors.Is(err, replica.ErrUnavailable) {
		return out, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return out, err
}

// Get reads key from R replicas. When the key is not found (never
// written, deleted or expired) the result still says who answered.
func (n *Node) Get(ctx context.Context, key []byte, o ReadOptions) (ReadResult, error) {
	if err := n.serving(); err != nil {
		return ReadResult{}, err
	}
	res, err := n.eng.Read(ctx, key, o.R)
	if err != nil {
		return ReadResult{}, err
	}
	live := version.Live(res.Record, n.clock.Now().UnixNano())
	if len(live) == 0 {
		return ReadResult{Answered: res.Answered, Hinted: res.Hinted}, dht.ErrNotFound
	}
	out := ReadResult{Siblings: live, Context: version.EncodeContext(res.Record.Context), Answered: res.Answered, Hinted: res.Hinted}
	var last int64
	for _, v := range live {
		if v.ExpiresAt == 0 {
			return out, nil // some sibling never expires: neither does the key
		}
		last = max(last, v.ExpiresAt)
	}
	out.ExpiresAt = time.Unix(0, last)
	return out, nil
}

// LocateOptions tune a lookup.
type LocateOptions struct {
	Trace     bool // record every hop
	Recursive bool // each hop forwards instead of answering the asker
}

// Locate finds key's directory node and replica set through the routing
// layer, hop by hop.
func (n *Node) Locate(ctx context.Context, key []byte, o LocateOptions) (Location, error) {
	pos := ring.KeyPos(key)
	res, err := n.rt.Lookup(ctx, pos, routing.Options{Trace: o.Trace, Recursive: o.Recursive})
	if err != nil {
		return Location{}, fmt.Errorf("%w: lookup: %v", ErrUnavailable, err)
	}
	loc := Location{Key: key, Position: pos, Owner: res.Owner.ID, Hops: res.Hops}
	for _, p := range res.Replicas {
		loc.Replicas = append(loc.Replicas, p.ID)
	}
	for _, h := range res.Path {
		loc.Path = append(loc.Path, Hop{Peer: h.Peer, Latency: h.Latency, Answer: h.Answer})
	}
	return loc, nil
}

// Members lists every member gossip knows, self included.
func (n *Node) Members() []dht.Member { return n.ml.Members() }

// TokenCount is the token count of a node of the given capacity.
func (n *Node) TokenCount(capacity float64) int { return ring.TokenCount(capacity, n.cfg.VNodes) }

// Share is one node's part of the serving ring.
type Share struct {
	ID     peer.ID
	Zone   string
	State  dht.State
	Tokens int
	Share  float64
}

// Ring reports each serving node's share of the hash space.
func (n *Node) Ring() []Share {
	s, _, _ := n.view.rings()
	shares := s.Shares()
	out := make([]Share, 0, len(shares))
	for _, rn := range s.Nodes() {
		m, _ := n.view.member(rn.ID)
		out = append(out, Share{ID: rn.ID, Zone: rn.Zone, State: m.State, Tokens: len(s.TokensOf(rn.ID)), Share: shares[rn.ID]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats are the node's counters for status.
type Stats struct {
	Members     int
	LiveMembers int
	Hints       int64
	MeanHops    float64
}

// Stats reports membership size, hints held and mean lookup hops.
func (n *Node) Stats(ctx context.Context) Stats {
	return Stats{Members: len(n.ml.Members()), LiveMembers: n.ml.NumLive(), Hints: n.eng.Hints(), MeanHops: n.rt.MeanHops()}
}

// KeyCount counts the records this node stores as a replica (tombstones
// awaiting collection included).
func (n *Node) KeyCount(ctx context.Context) (int64, error) {
	return n.st.Count(ctx, replica.DataPrefix())
}

// Leave hands this node's data to the nodes that take over its arcs and
// announces its departure. The node serves nothing afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.ml.SetState(dht.StateLeaving); err != nil {
		return err
	}
	n.view.update(n.ml.Local())
	if err := n.maint.drain(ctx); err != nil {
		return fmt.Errorf("node: handing data off before leaving: %w", err)
	}
	if err := n.ml.Leave(ctx); err != nil && !errors.Is(err, membership.ErrLeaveIncomplete) {
		return err
	}
	n.view.update(n.ml.Local())
	return nil
}
