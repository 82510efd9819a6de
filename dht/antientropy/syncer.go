package antientropy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Protocol is the anti-entropy protocol: Merkle comparison and transfer
// of the keys that differ.
const Protocol dht.Protocol = "/ringkv/sync/1.0.0"

// Placement is the node's current view of the ring.
type Placement interface {
	// Self is this node's ID.
	Self() peer.ID
	// Serving is the ring of members that own data now.
	Serving() *ring.Ring
	// Future is what Serving becomes once the joins and leaves in
	// progress complete (joining members in, leaving ones out).
	Future() *ring.Ring
	// Replicas is N, the copies of each key.
	Replicas() int
	// Alive reports whether the failure detector believes id reachable.
	Alive(id peer.ID) bool
}

// Replica is the local replica engine; *replica.Engine satisfies it.
type Replica interface {
	// Apply merges rec into this node's replica of key at pos and reports
	// whether it changed.
	Apply(ctx context.Context, key []byte, pos uint64, rec dht.Record) (bool, error)
	// Purge deletes this node's record of key if it is still the tombstone
	// with the given digest.
	Purge(ctx context.Context, key []byte, digest uint64) (bool, error)
	// Release deletes this node's record of key if it still has the
	// given digest, whatever it holds.
	Release(ctx context.Context, key []byte, digest uint64) (bool, error)
	// CallPurge asks peer id to Purge.
	CallPurge(ctx context.Context, id peer.ID, key []byte, digest uint64) (bool, error)
	// ReadReplica returns peer id's own record of key.
	ReadReplica(ctx context.Context, id peer.ID, key []byte) (dht.Record, bool, error)
}

var _ Replica = (*replica.Engine)(nil)

// Progress reports a round, bootstrap or drain as it runs. A range is one
// arc (or piece of one) exchanged with one peer.
type Progress struct {
	RangesDone, RangesTotal int
	// KeysSent and KeysReceived count records pushed to and pulled from
	// peers (handoff included).
	KeysSent, KeysReceived int64
	// Bytes counts sync message bytes sent and received.
	Bytes int64
}

// Syncer runs anti-entropy for one node: it answers peers' sync requests
// and, in the background or on demand, compares and repairs this node's
// arcs with their other replicas, transfers ranges on join and leave,
// hands off records it no longer owns and collects tombstones.
type Syncer struct {
	cfg   Config
	place Placement
	rep   Replica
	tr    dht.Transport
	st    dht.Store
	clock dht.Clock
	log   *slog.Logger
	m     *metrics
	rate  *rate.Limiter
	cache *treeCache

	serve chan struct{} // semaphore: requests being answered
	run   chan struct{} // semaphore: one round, bootstrap or drain at a time
	// gate is held shared by every request being answered; Close takes it
	// exclusively to wait for them.
	gate sync.RWMutex

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	closed  atomic.Bool
}

// New builds a syncer. It does no I/O; Start registers the handler and
// starts the background loop.
func New(cfg Config, p Placement, r Replica, tr dht.Transport, st dht.Store, clk dht.Clock) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p == nil || r == nil || tr == nil || st == nil {
		return nil, fmt.Errorf("%w: placement, replica, transport and store are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = dht.SystemClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Syncer{
		cfg: cfg, place: p, rep: r, tr: tr, st: st, clock: clk, log: cfg.Logger,
		m:     newMetrics(cfg.Registerer),
		rate:  rate.NewLimiter(rate.Limit(cfg.RateBytes), cfg.RateBytes),
		cache: newTreeCache(cfg.TreeCacheBuckets, cfg.TreeCacheTTL, clk),
		serve: make(chan struct{}, cfg.ServeConcurrency),
		run:   make(chan struct{}, 1),
		ctx:   ctx, cancel: cancel,
	}, nil
}

// Start registers the protocol handler and, when Interval > 0, starts the
// background loop. Calling it twice is an error-free no-op.
func (s *Syncer) Start(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.started.Swap(true) {
		return nil
	}
	s.tr.Handle(Protocol, func() proto.Message { return new(pb.SyncRequest) }, s.handle)
	if s.cfg.Interval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(s.ctx)
		}()
	}
	return nil
}

// Close stops the loop, any round in progress and the requests being
// answered, and waits for them. Requests arriving afterwards are refused.
// It is idempotent.
func (s *Syncer) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.gate.Lock()
	s.gate.Unlock() // an empty critical section: it waited for in-flight requests
	s.wg.Wait()
	return nil
}

// loop runs a cheap round every Interval, with up to 10% jitter so that
// nodes started together do not scan in step.
func (s *Syncer) loop(ctx context.Context) {
	for {
		wait := s.cfg.Interval + time.Duration(rand.Int64N(int64(s.cfg.Interval)/10+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := s.round(ctx, true, nil); err != nil && ctx.Err() == nil {
			s.log.Debug("anti-entropy round incomplete", "err", err)
		}
	}
}

// begin takes the run semaphore and returns ctx bound to the syncer's
// life; release undoes both.
func (s *Syncer) begin(ctx context.Context) (context.Context, func(), error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	select {
	case s.run <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		<-s.run
	}, nil
}

// Round runs one full anti-entropy round now: every arc this node
// replicates on the serving ring, with every other live natural replica of
// it, both ways; then ownership handoff and tombstone collection. progress
// (may be nil) sees each step. An error wrapping ErrIncomplete means some
// ranges were not exchanged; the rest were.
func (s *Syncer) Round(ctx context.Context, progress func(Progress)) (Progress, error) {
	return s.round(ctx, false, progress)
}

// round runs a round; cheap compares each pair of replicas from one side
// only (the smaller peer ID), which is what the background loop does.
func (s *Syncer) round(ctx context.Context, cheap bool, progress func(Progress)) (Progress, error) {
	ctx, release, err := s.begin(ctx)
	if err != nil {
		return Progress{}, err
	}
	defer release()
	start := s.clock.Now()
	jobs := s.roundJobs(cheap)
	tr := newTracker(jobs, progress)
	errs := s.runJobs(ctx, jobs, tr)
	if err := s.handoff(ctx, tr); err != nil {
		errs = append(errs, fmt.Errorf("handoff: %w", err))
	}
	if err := s.collectTombstones(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tombstones: %w", err))
	}
	s.m.roundSeconds.Observe(s.clock.Now().Sub(start).Seconds())
	return tr.p, s.finish("round", errs, tr)
}

// Bootstrap pulls every arc this node will replicate in the future ring
// from that arc's current natural replicas (the serving ring), before the
// node serves reads. Pull only: it sends no records.
func (s *Syncer) Bootstrap(ctx context.Context, progress func(Progress)) error {
	ctx, release, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	jobs := s.bootstrapJobs()
	tr := newTracker(jobs, progress)
	return s.finish("bootstrap", s.runJobs(ctx, jobs, tr), tr)
}

// Drain pushes every record this node holds to the future ring's replicas
// of its key, other than this node, before the node leaves. Push only.
// Ranges whose future replicas are all down are reported in the error.
func (s *Syncer) Drain(ctx context.Context, progress func(Progress)) error {
	ctx, release, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	jobs, orphans := s.drainJobs(ctx)
	tr := newTracker(jobs, progress)
	errs := s.runJobs(ctx, jobs, tr)
	if orphans > 0 {
		errs = append(errs, fmt.Errorf("%d arc(s) have no live future replica", orphans))
	}
	return s.finish("drain", errs, tr)
}

// finish reports progress a last time, counts the run and folds errs into
// one error wrapping ErrIncomplete.
func (s *Syncer) finish(kind string, errs []error, tr *tracker) error {
	tr.report()
	if len(errs) == 0 {
		s.m.rounds.WithLabelValues(kind, "ok").Inc()
		return nil
	}
	s.m.rounds.WithLabelValues(kind, "incomplete").Inc()
	return fmt.Errorf("%w: %s: %d of %d ranges done: %w", ErrIncomplete, kind, tr.p.RangesDone, tr.p.RangesTotal, errors.Join(errs...))
}

// Roots returns this node's Merkle root for every arc of the serving ring
// that it naturally replicates. The trees have depth 0, so the root is
// the same for equal contents on every replica whatever their sizes:
// after a repair, every replica of an arc reports the same root.
func (s *Syncer) Roots(ctx context.Context) (map[ring.Arc]uint64, error) {
	serving, self, n := s.place.Serving(), s.place.Self(), s.place.Replicas()
	out := map[ring.Arc]uint64{}
	for _, arc := range serving.Arcs() {
		if !contains(serving.PreferenceList(arc.End, n), self) {
			continue
		}
		t, err := buildTree(ctx, s.st, arc.Start, arc.End, 0)
		if err != nil {
			return nil, err
		}
		out[arc] = t.Root()
	}
	return out, nil
}

// tracker accumulates a run's progress and reports it.
type tracker struct {
	p  Progress
	fn func(Progress)
}

func newTracker(jobs []job, fn func(Progress)) *tracker {
	t := &tracker{fn: fn}
	for _, j := range jobs {
		t.p.RangesTotal += len(j.arcs)
	}
	t.report()
	return t
}

func (t *tracker) report() {
	if t.fn != nil {
		t.fn(t.p)
	}
}

func contains(ids []peer.ID, id peer.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
