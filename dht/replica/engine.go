package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/version"
)

// Protocol is the replica protocol: coordinate, write, read and purge.
const Protocol dht.Protocol = "/ringkv/kv/1.0.0"

// View is what the engine needs to know about placement. The node
// implements it from membership and the ring.
type View interface {
	// Natural returns the key's N replicas in preference order, from the
	// ring of members that serve reads (joining nodes excluded).
	Natural(pos uint64) []peer.ID
	// Pending returns nodes that are not natural replicas of pos but will
	// be once the joins and leaves in progress complete; writes reach them
	// too.
	Pending(pos uint64) []peer.ID
	// Walk visits the serving ring's distinct nodes clockwise from pos,
	// natural replicas first, until fn returns false (sloppy-quorum
	// fallbacks come from here).
	Walk(pos uint64, fn func(peer.ID) bool)
	// Alive reports whether the failure detector believes id reachable.
	Alive(id peer.ID) bool
	// Down reports whether id is known dead or gone (not merely suspect).
	Down(id peer.ID) bool
}

// Engine replicates keys: it coordinates client writes at a replica, fans
// them out to the other replicas with sloppy quorum and hints, answers
// reads from R replicas with read repair, and hands hints off. It is safe
// for concurrent use.
type Engine struct {
	cfg   Config
	self  peer.ID
	tr    dht.Transport
	st    dht.Store
	view  View
	clock dht.Clock
	log   *slog.Logger
	m     *metrics

	locks [256]sync.Mutex // striped by key position; guards read-merge-write of one key

	writes *batchers[*pb.WriteRequest, struct{}]        // replica writes, coalesced per peer
	reads  *batchers[*pb.ReadRequest, *pb.ReadResponse] // replica reads, coalesced per peer

	epochMu    sync.Mutex
	generation uint64 // current actor generation; guarded by epochMu
	epoch      uint64 // last epoch handed out in it; guarded by epochMu
	// space is the actors that may still be continued (see actorSpace).
	// Written under epochMu, read without it.
	space    atomic.Pointer[actorSpace]
	leaseEnd uint64 // first epoch not covered by the durable lease; guarded by epochMu
	// exhaustedLogged is set once the node logged that it has no fresh
	// actor left (see maxGeneration).
	exhaustedLogged atomic.Bool

	hintsMu sync.Mutex
	hinted  map[string]map[peer.ID]struct{} // hint-key prefix of a key -> targets it has hints for; guarded by hintsMu
	hints   atomic.Int64                    // total hints stored

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.RWMutex // orders wg.Add in goBackground before Close's wg.Wait
	closed  atomic.Bool
}

// New builds an engine for the node self. Start registers its protocol.
func New(cfg Config, self peer.ID, tr dht.Transport, st dht.Store, view View, clk dht.Clock) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = dht.SystemClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, self: self, tr: tr, st: st, view: view, clock: clk,
		log: cfg.Logger, m: newMetrics(cfg.Registerer), hinted: map[string]map[peer.ID]struct{}{},
		ctx: ctx, cancel: cancel,
	}
	// No actor is continued until Start loads the lease.
	e.space.Store(&actorSpace{{prefix: actorPrefix(string(self), 0), first: math.MaxUint64}})
	e.writes = newBatchers(e, e.exchangeWrites, writeBatchesInFlight)
	e.reads = newBatchers(e, e.exchangeReads, readBatchesInFlight)
	return e, nil
}

// Start loads the hint index, registers the protocol handler and starts
// hinted handoff.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.loadEpoch(ctx); err != nil {
		return err
	}
	if err := e.loadHints(ctx); err != nil {
		return err
	}
	e.tr.Handle(Protocol, func() proto.Message { return new(pb.KVRequest) }, e.handle)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.handoffLoop(e.ctx)
	}()
	return nil
}

// Close stops background work and waits for it. It is idempotent.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	already := e.closed.Swap(true)
	e.closeMu.Unlock()
	if already {
		return nil
	}
	e.cancel()
	e.wg.Wait()
	return nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Hints is the number of records held for replicas that were down.
func (e *Engine) Hints() int64 { return e.hints.Load() }

// lock returns the mutex guarding read-merge-write of keys at pos. pos
// is already a hash, so its low bits spread keys evenly.
func (e *Engine) lock(pos uint64) *sync.Mutex {
	return &e.locks[pos%uint64(len(e.locks))]
}

// goBackground runs fn in a tracked background goroutine bound to the
// engine's life. It reports false, running nothing, once Close began.
func (e *Engine) goBackground(fn func(ctx context.Context)) bool {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed.Load() {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		fn(e.ctx)
	}()
	return true
}

// localRecord is this node's whole knowledge of key: its replica record
// merged with any hints it holds for the key.
func (e *Engine) localRecord(ctx context.Context, pos uint64, key []byte) (dht.Record, bool, error) {
	rec, err := e.st.Get(ctx, DataKey(pos, key))
	found := err == nil
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		return dht.Record{}, false, err
	}
	if e.hasHints(pos, key) {
		err := e.st.Scan(ctx, hintKeyPrefix(pos, key), prefixEnd(hintKeyPrefix(pos, key)), func(_ []byte, h dht.Record) error {
			rec = version.Merge(rec, h)
			found = true
			return nil
		})
		if err != nil {
			return dht.Record{}, false, err
		}
	}
	return rec, found, nil
}

// handle answers one request of the replica protocol.
func (e *Engine) handle(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
	r, ok := req.(*pb.KVRequest)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected message %T", ErrBadRequest, req)
	}
	if e.closed.Load() {
		return nil, errNotServed
	}
	if c := r.GetCoordinate(); c != nil {
		return e.handleCoordinate(ctx, c)
	}
	if w := r.GetWrite(); w != nil {
		return e.handleWrite(ctx, w)
	}
	if rd := r.GetRead(); rd != nil {
		return e.handleRead(ctx, rd)
	}
	if p := r.GetPurge(); p != nil {
		return e.handlePurge(ctx, p)
	}
	if b := r.GetWriteBatch(); b != nil {
		return e.handleWriteBatch(ctx, b)
	}
	if b := r.GetReadBatch(); b != nil {
		return e.handleReadBatch(ctx, b)
	}
	e.m.refused.WithLabelValues("empty").Inc()
	return nil, fmt.Errorf("%w: empty request", ErrBadRequest)
}

// checkKey validates a key received from a peer.
func (e *Engine) checkKey(key []byte) error {
	if len(key) == 0 || len(key) > e.cfg.MaxKeySize {
		e.m.refused.WithLabelValues("key").Inc()
		return fmt.Errorf("%w: key of %d bytes", ErrBadRequest, len(key))
	}
	return nil
}

// checkRecord validates a record received from a peer.
func (e *Engine) checkRecord(r *pb.Record) error {
	if r == nil {
		e.m.refused.WithLabelValues("record").Inc()
		return fmt.Errorf("%w: missing record", ErrBadRequest)
	}
	if len(r.Versions) > 4*e.cfg.MaxSiblings || len(r.Context) > 4*version.MaxContextEntries {
		e.m.refused.WithLabelValues("record").Inc()
		return fmt.Errorf("%w: record with %d versions and %d context entries", ErrBadRequest, len(r.Versions), len(r.Context))
	}
	total := 0
	for _, v := range r.Versions {
		total += len(v.GetValue())
		if len(v.GetValue()) > e.cfg.MaxValueSize || total > dht.MaxRecordSize {
			e.m.refused.WithLabelValues("record").Inc()
			return fmt.Errorf("%w: record values over the size limits", ErrBadRequest)
		}
	}
	return nil
}

// prefixEnd is the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func peerIDs(ids [][]byte) []peer.ID {
	out := make([]peer.ID, 0, len(ids))
	for _, b := range ids {
		if id, err := peer.IDFromBytes(b); err == nil {
			out = append(out, id)
		}
	}
	return out
}

func contains(ids []peer.ID, id peer.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
