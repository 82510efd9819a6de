package routing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// hopsEWMA is the weight of the newest lookup in MeanHops.
const hopsEWMA = 0.05

// Router is one node's routing state and lookup engine.
type Router struct {
	cfg     Config
	tr      dht.Transport
	clk     dht.Clock
	log     *slog.Logger
	met     *metrics
	selfRec *peerRec
	info    *pb.PeerInfo // the local peer, as sent in every request

	mu         sync.Mutex
	tab        *table
	tomb       tombstones
	stabNext   int     // next own token index Stabilize refreshes
	fingerNext int     // next finger index FixFingers refreshes
	meanHops   float64 // EWMA of successful lookups' hops
	lookups    int     // successful lookups so far, for the EWMA's start
	started    bool
	closed     bool

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New builds a Router for the local peer self over tr. self.ID defaults to
// tr.Self() and must equal it; empty Addrs default to tr.LocalAddrs() and a
// zero Capacity to 1.
func New(cfg Config, self Peer, tr dht.Transport, clk dht.Clock) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tr == nil || clk == nil {
		return nil, fmt.Errorf("%w: nil transport or clock", ErrInvalidConfig)
	}
	if self.ID == "" {
		self.ID = tr.Self()
	}
	if self.ID != tr.Self() {
		return nil, fmt.Errorf("%w: ID %s is not the transport's %s", ErrInvalidPeer, self.ID, tr.Self())
	}
	if len(self.Addrs) == 0 {
		self.Addrs = tr.LocalAddrs()
	}
	self = normalise(self)
	self.Addrs = slices.Clone(self.Addrs)
	if reason := checkPeer(self); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrInvalidPeer, reason)
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	rec := newRec(self, cfg.VNodes)
	return &Router{
		cfg:     cfg,
		tr:      tr,
		clk:     clk,
		log:     cmp.Or(cfg.Logger, slog.Default()),
		met:     met,
		selfRec: rec,
		info:    rec.toInfo(),
		tab:     newTable(cfg, rec),
	}, nil
}

// Start registers the routing handler on the transport and, when
// StabilizeInterval is positive, starts the maintenance loop (Stabilize,
// then FixFingers, every interval). With StabilizeInterval 0 it starts no
// goroutine. ctx's values reach the loop; its cancellation does not: Close
// stops it.
func (r *Router) Start(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return dht.ErrClosed
	case r.started:
		r.mu.Unlock()
		return ErrStarted
	}
	r.started = true
	r.mu.Unlock()
	r.tr.Handle(Protocol, newFindRequest, r.handleFind)
	if r.cfg.StabilizeInterval <= 0 {
		return nil
	}
	root, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	r.wg.Add(1)
	go r.loop(root)
	return nil
}

// Close stops the maintenance loop and waits for it; lookups and the
// handler fail with dht.ErrClosed from then on. It is idempotent.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		cancel := r.cancel
		r.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		r.wg.Wait()
	})
	return nil
}

func (r *Router) loop(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.StabilizeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Stabilize(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("stabilize", "self", r.selfRec.ID, "err", err)
		}
		if err := r.FixFingers(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("fix fingers", "self", r.selfRec.ID, "err", err)
		}
	}
}

func (r *Router) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Self returns the local peer.
func (r *Router) Self() Peer { return r.selfRec.Peer }

// Tokens returns a copy of the local node's ring tokens, ascending.
func (r *Router) Tokens() []uint64 { return slices.Clone(r.selfRec.toks) }

// Observe learns or refreshes a peer. It joins the successor lists,
// predecessors or fingers when it belongs there, else the LRU cache, where
// it is the most recently seen. Gossip membership calls it for every live
// member. Invalid peers and the local node are ignored; a zero Capacity
// means 1.
func (r *Router) Observe(p Peer) {
	p = normalise(p)
	if checkPeer(p) != "" || p.ID == r.selfRec.ID {
		return
	}
	p.Addrs = slices.Clone(p.Addrs)
	r.mu.Lock()
	r.tomb.clear(p.ID)
	var rec *peerRec
	if cur, ok := r.tab.get(p.ID); ok {
		if cur.same(p) {
			r.tab.observe(cur)
			r.mu.Unlock()
			return
		}
		rec = cur.withPeer(p, r.cfg.VNodes)
	} else {
		rec = newRec(p, r.cfg.VNodes)
	}
	r.tab.observe(rec)
	r.mu.Unlock()
	if len(p.Addrs) > 0 {
		r.tr.AddAddrs(p.ID, p.Addrs)
	}
}

// ObserveAll observes each of ps, in order.
func (r *Router) ObserveAll(ps []Peer) {
	for _, p := range ps {
		r.Observe(p)
	}
}

// observeRecs learns records made from remote answers, already checked.
// direct, when not nil, is the peer that answered (or asked): it is alive,
// whatever was forgotten about it. The others are third-party claims and
// are ignored while forgotten. It returns the peers it did not ignore.
func (r *Router) observeRecs(direct *peerRec, recs []*peerRec) []*peerRec {
	var dial []*peerRec
	now := r.clk.Now()
	r.mu.Lock()
	if direct != nil {
		r.tomb.clear(direct.ID)
		if r.tab.observe(direct) && len(direct.Addrs) > 0 {
			dial = append(dial, direct)
		}
	}
	kept := recs[:0:0]
	for _, rec := range recs {
		if rec == r.selfRec || r.tomb.has(rec.ID, now, r.cfg.ForgetTimeout) {
			continue
		}
		kept = append(kept, rec)
		if r.tab.observe(rec) && len(rec.Addrs) > 0 {
			dial = append(dial, rec)
		}
	}
	r.mu.Unlock()
	for _, rec := range dial {
		r.tr.AddAddrs(rec.ID, rec.Addrs)
	}
	return kept
}

// touch marks a known peer as the most recently seen.
func (r *Router) touch(id peer.ID) {
	r.mu.Lock()
	if e, ok := r.tab.lookup(id); ok {
		r.tab.touch(e)
	}
	r.mu.Unlock()
}

// Forget removes a dead or departed peer from every part of the routing
// state. For ForgetTimeout, other peers' answers that still name it are
// ignored; the peer contacting the node, or Observe, brings it back.
func (r *Router) Forget(id peer.ID) {
	now := r.clk.Now()
	r.mu.Lock()
	r.tab.forget(id)
	r.tomb.add(id, now)
	r.mu.Unlock()
}

// Peers returns every distinct known peer, most recently seen first.
func (r *Router) Peers() []Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tab.fullSnapshot()
	return r.tab.peers()
}

// Size returns the number of distinct peers in the routing state. It never
// exceeds MaxSize.
func (r *Router) Size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tab.fullSnapshot()
	n := r.tab.size()
	r.met.tableSize(n)
	return n
}

// SetCacheSize changes Config.CacheSize at run time: 0 makes the node
// cold (successor lists, predecessors and fingers only). Shrinking evicts
// the least recently seen peers at the next rebuild, which it triggers.
func (r *Router) SetCacheSize(n int) {
	r.mu.Lock()
	r.tab.cache = max(n, 0)
	r.tab.dirty = true
	r.mu.Unlock()
}

// MaxSize returns the bound on Size: Config.MaxSize of the local node's
// token count, with the current cache size.
func (r *Router) MaxSize() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cfg
	c.CacheSize = r.tab.cache
	return c.MaxSize(len(r.selfRec.toks))
}

// PinnedSize returns how many peers hold a structural place (successor
// lists, predecessors, fingers) rather than a cache slot.
func (r *Router) PinnedSize() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tab.fullSnapshot()
	return r.tab.pinnedCount()
}

// snapshot returns the current local ring.
func (r *Router) snapshot() *view {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tab.snapshot()
}

// Predict returns the owner and replica set of pos as the local ring sees
// it, without asking anyone. It is exact when the routing state holds the
// whole cluster (a small cluster with gossip feeding Observe).
func (r *Router) Predict(pos uint64) (owner peer.ID, replicas []peer.ID) {
	v := r.snapshot()
	list := v.prefList(pos, r.cfg.Replicas, nil)
	if len(list) == 0 {
		return "", nil
	}
	replicas = make([]peer.ID, len(list))
	for i, p := range list {
		replicas[i] = p.ID
	}
	return replicas[0], replicas
}

// IsOwner reports whether the local node owns pos as its local ring sees
// it: whether it would answer a FIND of pos as the directory node.
func (r *Router) IsOwner(pos uint64) bool { return r.snapshot().isOwner(pos, nil) }

// MeanHops returns an exponentially weighted mean of the hops of recent
// successful lookups (weight 1/20 for the newest), 0 before the first.
func (r *Router) MeanHops() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meanHops
}

func (r *Router) recordHops(hops int) {
	r.mu.Lock()
	if r.lookups == 0 {
		r.meanHops = float64(hops)
	} else {
		r.meanHops += hopsEWMA * (float64(hops) - r.meanHops)
	}
	r.lookups++
	r.mu.Unlock()
}

// call sends one routing request to p, bounded by timeout.
func (r *Router) call(ctx context.Context, to peer.ID, timeout time.Duration, req *pb.FindRequest) (*pb.FindResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp := new(pb.FindResponse)
	if err := r.tr.Call(ctx, to, Protocol, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// unreachable reports whether err means the peer itself did not answer
// while the caller's own ctx was still live: the peer is dead or cut off,
// not merely slow to give up on our behalf.
func unreachable(ctx context.Context, err error) bool {
	return errors.Is(err, dht.ErrUnreachable) && ctx.Err() == nil
}

// decodeRecs decodes a remote list of peers into records, reusing known
// ones. Invalid entries are dropped and counted; a list over MaxWirePeers
// is refused whole (ok false).
func (r *Router) decodeRecs(list []*pb.PeerInfo) (recs []*peerRec, ok bool) {
	if len(list) > MaxWirePeers {
		r.refuse(reasonTooMany)
		return nil, false
	}
	recs = make([]*peerRec, 0, len(list))
	for _, m := range list {
		p, reason := peerFromInfo(m)
		if reason != "" {
			r.refuse(reason)
			continue
		}
		recs = append(recs, r.recFor(p))
	}
	return recs, true
}

// recFor returns the local node's record of p, or a new one.
func (r *Router) recFor(p Peer) *peerRec {
	if p.ID == r.selfRec.ID {
		return r.selfRec
	}
	r.mu.Lock()
	cur, ok := r.tab.get(p.ID)
	r.mu.Unlock()
	switch {
	case ok && cur.same(p):
		return cur
	case ok:
		return cur.withPeer(p, r.cfg.VNodes)
	}
	return newRec(p, r.cfg.VNodes)
}

func (r *Router) refuse(reason string) {
	r.met.refuse(reason)
}
