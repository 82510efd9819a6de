package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/version"
)

// Write is a client write (a put, or a delete when Tombstone is set).
type Write struct {
	Key       []byte
	Value     []byte
	Tombstone bool
	// Context is the causal context the client read; nil for a blind write,
	// which becomes a sibling of every version the key has.
	Context []dht.Dot
	// W is the acknowledgements to wait for; 0 uses Config.WriteQuorum.
	W int
	// TTL expires the key this long after the write; 0 never. It is
	// capped at MaxTTL.
	TTL time.Duration
	// WriteID identifies the write across retries; Write picks a random
	// one when it is 0.
	WriteID uint64
}

// MaxTTL is the longest TTL a write may carry: 100 years, far inside the
// range of nanosecond timestamps.
const MaxTTL = 100 * 365 * 24 * time.Hour

// WriteResult reports an acknowledged write.
type WriteResult struct {
	Context     []dht.Dot // causal context of the new version
	Acks        int       // durable replica writes before the answer
	Hinted      int       // of those, fallbacks holding a hint
	Coordinator peer.ID
}

// target is one node a write or read goes to.
type target struct {
	id      peer.ID
	hintFor peer.ID // set when id stands in for hintFor, a replica that is down
	pending bool    // id becomes a replica once a join or leave completes
}

// Write stores a client write. A natural replica of the key coordinates
// it: this node if it is one, else the first reachable replica, which
// makes the new version and replicates it (to fallbacks with hints where
// replicas are down). Only a natural replica coordinates, because only it
// holds the history its version numbering depends on (see actor.go): when
// none is reachable the write fails with ErrUnavailable.
//
// The write moves on to the next replica only when the previous one
// certainly did not get it (dht.ErrNotSent, or it redirected or refused
// it). A replica that took the write and then stopped answering may have
// applied it: the write fails with ErrOutcomeUnknown rather than get a
// second version elsewhere, as Dynamo-style stores report a coordinator
// timeout to the client.
func (e *Engine) Write(ctx context.Context, w Write) (WriteResult, error) {
	if e.closed.Load() {
		return WriteResult{}, dht.ErrClosed
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	for w.WriteID == 0 {
		w.WriteID = rand.Uint64()
	}
	pos := ring.KeyPos(w.Key)
	nat := e.view.Natural(pos)
	if contains(nat, e.self) {
		res, err := e.coordinate(ctx, pos, w)
		if !errors.Is(err, errEpochsExhausted) {
			return res, err
		}
		// Nothing was sent: another replica coordinates it.
		if !e.exhaustedLogged.Swap(true) {
			e.log.Warn("writes of keys new to this node go to other replicas from now on", "err", err)
		}
	}
	queue := append([]peer.ID(nil), nat...)
	tried := map[peer.ID]bool{e.self: true}
	var lastErr error
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if tried[id] || !e.view.Alive(id) {
			continue
		}
		tried[id] = true
		res, redirect, err := e.callCoordinate(ctx, id, w)
		switch {
		case err == nil && redirect == nil:
			return res, nil
		case err == nil:
			queue = append(queue, redirect...)
		case errors.Is(err, dht.ErrNotSent):
			lastErr = err
		case errors.Is(err, dht.ErrUnreachable) && ctx.Err() != nil:
			return WriteResult{}, fmt.Errorf("%w: %w (replica %s had taken it: it may have been applied; read the key before writing it again)",
				ErrOutcomeUnknown, ctx.Err(), id)
		case errors.Is(err, dht.ErrUnreachable):
			return WriteResult{}, fmt.Errorf("%w: replica %s took the write and did not answer (%v); it may have been applied: read the key before writing it again",
				ErrOutcomeUnknown, id, err)
		default:
			return res, err
		}
	}
	if ctx.Err() != nil {
		return WriteResult{}, fmt.Errorf("replica: write: %w", ctx.Err())
	}
	if lastErr != nil {
		return WriteResult{}, fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
	}
	return WriteResult{}, ErrUnavailable
}

// bound applies RequestTimeout when ctx has no deadline.
func (e *Engine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.cfg.RequestTimeout)
}

func (e *Engine) callCoordinate(ctx context.Context, id peer.ID, w Write) (WriteResult, []peer.ID, error) {
	req := &pb.KVRequest{Op: &pb.KVRequest_Coordinate{Coordinate: &pb.CoordinateRequest{
		Key: w.Key, Value: w.Value, Tombstone: w.Tombstone, Context: dotsToPB(w.Context),
		W: uint32(max(w.W, 0)), TtlMs: uint64(max(w.TTL.Milliseconds(), 0)), WriteId: w.WriteID,
	}}}
	var resp pb.KVResponse
	if err := e.tr.Call(ctx, id, Protocol, req, &resp); err != nil {
		var re *dht.RemoteError
		switch {
		case errors.As(err, &re) && strings.Contains(re.Message, ErrTooManySiblings.Error()):
			return WriteResult{}, nil, fmt.Errorf("%w: %s", ErrTooManySiblings, re.Message)
		case errors.As(err, &re) && (strings.Contains(re.Message, errNotServed.Error()) ||
			strings.Contains(re.Message, errEpochsExhausted.Error()) || strings.Contains(re.Message, errNotCoordinating.Error())):
			// The peer is shutting down, has no fresh actor, or does not
			// know the cluster's members yet: it did not act on it.
			return WriteResult{}, nil, dht.NotSent("%s", re.Message)
		case errors.As(err, &re) && strings.Contains(re.Message, ErrOutcomeUnknown.Error()):
			return WriteResult{}, nil, fmt.Errorf("%w: coordinator %s: %s", ErrOutcomeUnknown, id, re.Message)
		}
		return WriteResult{}, nil, err
	}
	cr := resp.GetCoordinate()
	if cr == nil {
		return WriteResult{}, nil, fmt.Errorf("%w: coordinator %s answered without a result", dht.ErrUnreachable, id)
	}
	if cr.NotReplica {
		return WriteResult{}, peerIDs(cr.Replicas), nil
	}
	res := WriteResult{Context: dotsFromPB(cr.Context), Acks: int(cr.Acks), Hinted: int(cr.Hinted), Coordinator: id}
	if cr.QuorumFailed {
		return res, nil, &QuorumError{Op: "write", Acks: int(cr.Acks), Required: int(cr.Required)}
	}
	return res, nil, nil
}

func (e *Engine) handleCoordinate(ctx context.Context, r *pb.CoordinateRequest) (*pb.KVResponse, error) {
	if err := e.checkKey(r.Key); err != nil {
		return nil, err
	}
	if e.cfg.Coordinates != nil && !e.cfg.Coordinates() {
		return nil, errNotCoordinating
	}
	if len(r.Value) > e.cfg.MaxValueSize || len(r.Context) > version.MaxContextEntries || r.W > 64 {
		e.m.refused.WithLabelValues("coordinate").Inc()
		return nil, fmt.Errorf("%w: oversized coordinate request", ErrBadRequest)
	}
	pos := ring.KeyPos(r.Key)
	nat := e.view.Natural(pos)
	if !contains(nat, e.self) {
		ids := make([][]byte, len(nat))
		for i, id := range nat {
			ids[i] = []byte(id)
		}
		return &pb.KVResponse{Result: &pb.KVResponse_Coordinate{Coordinate: &pb.CoordinateResponse{NotReplica: true, Replicas: ids}}}, nil
	}
	w := Write{Key: r.Key, Value: r.Value, Tombstone: r.Tombstone, Context: dotsFromPB(r.Context),
		W: int(r.W), WriteID: r.WriteId, TTL: time.Duration(min(r.TtlMs, uint64(MaxTTL/time.Millisecond))) * time.Millisecond}
	res, err := e.coordinate(ctx, pos, w)
	out := &pb.CoordinateResponse{Context: dotsToPB(res.Context), Acks: uint32(res.Acks), Hinted: uint32(res.Hinted)}
	var qe *QuorumError
	switch {
	case errors.As(err, &qe):
		out.QuorumFailed, out.Required = true, uint32(qe.Required)
	case err != nil:
		return nil, err
	}
	return &pb.KVResponse{Result: &pb.KVResponse_Coordinate{Coordinate: out}}, nil
}

// coordinate makes the new version at this node and replicates it until
// W acknowledgements (plus one per pending replica) are in.
func (e *Engine) coordinate(ctx context.Context, pos uint64, w Write) (WriteResult, error) {
	targets, required := e.writeTargets(pos, w.W)
	if !targetsHave(targets, e.self) {
		return WriteResult{}, fmt.Errorf("%w: this node is not a replica of the key", ErrUnavailable)
	}
	// The other replicas' writes start as soon as the version exists, so
	// their fsyncs overlap this node's.
	var fan *fanout
	rec, err := e.makeVersion(ctx, pos, w, func(rec dht.Record) {
		fan = e.startFanout(pos, w.Key, rec, targets)
	})
	if err != nil {
		e.m.writes.WithLabelValues("error").Inc()
		if fan != nil {
			// The other replicas were sent the version: they may hold it.
			fan.abandon()
			return WriteResult{}, fmt.Errorf("%w: this node's write failed after the other replicas were sent it (%w); read the key before writing it again",
				ErrOutcomeUnknown, err)
		}
		return WriteResult{}, err
	}
	res := WriteResult{Context: rec.Context, Coordinator: e.self, Acks: 1}
	acks, hinted := fan.wait(ctx, required-res.Acks)
	res.Acks += acks
	res.Hinted += hinted
	if res.Acks < required && ctx.Err() != nil {
		e.m.writes.WithLabelValues("timeout").Inc()
		return res, fmt.Errorf("%w: %w with %d of %d required acknowledgements in; the write may have been applied: read the key before writing it again",
			ErrOutcomeUnknown, ctx.Err(), res.Acks, required)
	}
	if res.Acks < required {
		e.m.writes.WithLabelValues("quorum_failed").Inc()
		return res, &QuorumError{Op: "write", Acks: res.Acks, Required: required}
	}
	e.m.writes.WithLabelValues("ok").Inc()
	return res, nil
}

// makeVersion applies the write to this node's replica of the key under
// the key's lock and stores it durably. made is called with the new
// version before it is stored.
func (e *Engine) makeVersion(ctx context.Context, pos uint64, w Write, made func(dht.Record)) (dht.Record, error) {
	mu := e.lock(pos)
	mu.Lock()
	defer mu.Unlock()
	local, _, err := e.localRecord(ctx, pos, w.Key)
	if err != nil {
		return dht.Record{}, err
	}
	actor, err := e.actorFor(ctx, local)
	if err != nil {
		return dht.Record{}, err
	}
	now := e.clock.Now()
	v := dht.Version{Value: w.Value, Tombstone: w.Tombstone, Timestamp: now.UnixNano(), WriteID: w.WriteID}
	if w.TTL > 0 && !w.Tombstone {
		v.ExpiresAt = now.Add(min(w.TTL, MaxTTL)).UnixNano()
	}
	update := version.Update
	if e.cfg.LWW {
		update = version.UpdateLWW
	}
	rec := update(local, w.Context, v, actor, now.UnixNano())
	rec = version.Prune(rec, version.MaxActors, actor)
	if len(rec.Versions) > e.cfg.MaxSiblings {
		return dht.Record{}, fmt.Errorf("%w: the key would have %d siblings (limit %d); read it and write with its context to resolve them",
			ErrTooManySiblings, len(rec.Versions), e.cfg.MaxSiblings)
	}
	made(rec)
	if err := e.st.Put(ctx, DataKey(pos, w.Key), rec); err != nil {
		// The new dot may be on other replicas but not here: never issue
		// it again.
		e.retireActors()
		return rec, err
	}
	return rec, nil
}

// writeTargets lists where a write of pos goes, this node included if it
// is one, and how many acknowledgements make it succeed: W plus one per
// live pending replica (so that once a join or leave completes, W of the
// new replicas hold every acknowledged write).
func (e *Engine) writeTargets(pos uint64, w int) ([]target, int) {
	if w <= 0 {
		w = e.cfg.WriteQuorum
	}
	return e.withPending(pos, e.targets(pos, e.view.Alive), min(w, e.cfg.Replicas))
}

// withPending adds pos's live pending replicas to targets, and one to the
// quorum n for each.
func (e *Engine) withPending(pos uint64, targets []target, n int) ([]target, int) {
	for _, p := range e.view.Pending(pos) {
		if e.view.Alive(p) && !targetsHave(targets, p) {
			targets = append(targets, target{id: p, pending: true})
			n++
		}
	}
	return targets, n
}

// readPlan lists where a read of pos goes and how many answers make it
// succeed: R plus one per live pending replica. Views lag each other: a
// node that still sees a join in progress reads the old replicas while
// writers that saw it complete write the new ones. With N old replicas
// and one pending, R+1 answers among those N+1 meet any W of the N new
// replicas, and any W+1 acks of an old-view write, so reads from either
// view see every write acknowledged from either view.
func (e *Engine) readPlan(pos uint64, r int) ([]target, int) {
	if r <= 0 {
		r = e.cfg.ReadQuorum
	}
	return e.withPending(pos, e.readTargets(pos), min(r, e.cfg.Replicas))
}

// readTargets lists where a read of pos goes: the natural replicas that
// are not known dead (a suspect replica is asked: it is probably alive,
// and a stand-in counts toward R only if it holds the key), and a
// fallback for each one that is.
func (e *Engine) readTargets(pos uint64) []target {
	return e.targets(pos, func(id peer.ID) bool { return !e.view.Down(id) })
}

// targets lists the natural replicas of pos that usable accepts, and a
// fallback for each one it refuses.
func (e *Engine) targets(pos uint64, usable func(peer.ID) bool) []target {
	nat := e.view.Natural(pos)
	targets := make([]target, 0, len(nat))
	var down []peer.ID
	for _, id := range nat {
		if id == e.self || usable(id) {
			targets = append(targets, target{id: id})
		} else {
			down = append(down, id)
		}
	}
	if len(down) == 0 {
		return targets
	}
	next := e.fallbacks(pos, nat, targets)
	for _, owner := range down {
		if fb, ok := next(); ok {
			targets = append(targets, target{id: fb, hintFor: owner})
		}
	}
	return targets
}

// fallbacks returns an iterator over nodes that may stand in for a down
// replica of pos: this node first if it is not a replica, then live nodes
// in ring order after the natural replicas, never one already used. A
// pending replica is never a fallback: it takes the write as a replica,
// with its own acknowledgement added to the quorum (withPending), which
// a hint in its place would not give.
func (e *Engine) fallbacks(pos uint64, nat []peer.ID, used []target) func() (peer.ID, bool) {
	taken := map[peer.ID]bool{}
	for _, id := range nat {
		taken[id] = true
	}
	for _, id := range e.view.Pending(pos) {
		taken[id] = true
	}
	for _, t := range used {
		taken[t.id] = true
	}
	var order []peer.ID
	if !taken[e.self] {
		order = append(order, e.self)
	}
	e.view.Walk(pos, func(id peer.ID) bool {
		if !taken[id] && id != e.self && e.view.Alive(id) {
			order = append(order, id)
		}
		return len(order) < 2*e.cfg.Replicas
	})
	return func() (peer.ID, bool) {
		for len(order) > 0 {
			id := order[0]
			order = order[1:]
			if !taken[id] {
				taken[id] = true
				return id, true
			}
		}
		return "", false
	}
}

func targetsHave(ts []target, id peer.ID) bool {
	for _, t := range ts {
		if t.id == id {
			return true
		}
	}
	return false
}

// writeResult is one replica's answer to a fanned-out write: the index
// of its target in fanout.sent, and the error.
type writeResult struct {
	i   int
	err error
}

// fanout is a write being sent to the other targets in parallel. Each
// replica write is queued on its peer's batcher with a callback that posts
// its result (see submitThen): no goroutine waits for it.
type fanout struct {
	e        *Engine
	pos      uint64
	key      []byte
	rec      *pb.Record // the record in its wire form, shared by every send
	size     int        // its size in a batch
	targets  []target
	sent     []target         // where it was sent, in order
	results  chan writeResult // room for every send: callbacks never block
	done     chan struct{}
	inflight int
	next     func() (peer.ID, bool) // fallbacks, made on the first failure
}

// startFanout sends rec to every target but this node.
func (e *Engine) startFanout(pos uint64, key []byte, rec dht.Record, targets []target) *fanout {
	// Each target is sent once, and each failure brings at most one of
	// fallbacks' 2N nodes.
	f := &fanout{e: e, pos: pos, key: key, rec: dht.RecordToPB(rec), size: batchSize(key, rec), targets: targets,
		results: make(chan writeResult, len(targets)+2*e.cfg.Replicas), done: make(chan struct{})}
	for _, t := range targets {
		if t.id != e.self {
			f.send(t)
		}
	}
	return f
}

// send queues the write to t. The wire record is shared by every send: a
// message is only read once built, and marshalling it from several
// goroutines at once is safe.
func (f *fanout) send(t target) {
	req := &pb.WriteRequest{Key: f.key, Record: f.rec}
	if t.hintFor != "" {
		req.HintFor = []byte(t.hintFor)
	}
	i := len(f.sent)
	f.sent = append(f.sent, t)
	f.inflight++
	f.e.writes.to(t.id).submitThen(req, f.size, func(_ struct{}, err error) {
		select {
		case <-f.done:
			if err != nil {
				f.e.log.Debug("replica write failed after the answer", "peer", t.id, "err", err)
			}
		default:
		}
		f.results <- writeResult{i, err}
	})
}

// abandon stops waiting; writes in flight finish in the background.
func (f *fanout) abandon() { close(f.done) }

// wait returns once `need` targets acknowledged or every target answered.
// A replica that fails is replaced by a fallback, never this node, holding
// a hint for it. Writes still in flight when it returns finish in the
// background.
func (f *fanout) wait(ctx context.Context, need int) (acks, hinted int) {
	defer f.abandon()
	for f.inflight > 0 && acks < need {
		select {
		case r := <-f.results:
			f.inflight--
			t := f.sent[r.i]
			if r.err == nil {
				acks++
				if t.hintFor != "" {
					hinted++
					f.e.m.hinted.Inc()
				}
				continue
			}
			f.e.log.Debug("replica write failed", "peer", t.id, "err", r.err)
			if !t.pending {
				f.fallback(t)
			}
		case <-ctx.Done():
			return acks, hinted
		}
	}
	return acks, hinted
}

// fallback sends the write to the next fallback node in place of t.
func (f *fanout) fallback(t target) {
	if f.next == nil {
		used := append(slices.Clone(f.targets), target{id: f.e.self})
		f.next = f.e.fallbacks(f.pos, f.e.view.Natural(f.pos), used)
	}
	fb, ok := f.next()
	if !ok {
		return
	}
	owner := t.id
	if t.hintFor != "" {
		owner = t.hintFor
	}
	f.send(target{id: fb, hintFor: owner})
}

// callWrite sends one replica write to t, coalesced with other writes to
// the same peer (see batch.go).
func (e *Engine) callWrite(ctx context.Context, t target, key []byte, rec dht.Record) error {
	req := &pb.WriteRequest{Key: key, Record: dht.RecordToPB(rec)}
	if t.hintFor != "" {
		req.HintFor = []byte(t.hintFor)
	}
	_, err := e.writes.to(t.id).submit(ctx, req, batchSize(key, rec))
	return err
}

// batchSize is what a replica write of rec counts for in a batch.
func batchSize(key []byte, rec dht.Record) int {
	size := len(key)
	for _, v := range rec.Versions {
		size += len(v.Value) + 32
	}
	return size
}

func (e *Engine) handleWrite(ctx context.Context, r *pb.WriteRequest) (*pb.KVResponse, error) {
	if err := e.applyWrite(ctx, r); err != nil {
		return nil, err
	}
	return &pb.KVResponse{Result: &pb.KVResponse_Write{Write: &pb.WriteResponse{}}}, nil
}

func dotsToPB(ds []dht.Dot) []*pb.Dot {
	if len(ds) == 0 {
		return nil
	}
	out := make([]*pb.Dot, len(ds))
	for i, d := range ds {
		out[i] = &pb.Dot{Actor: d.Actor, Counter: d.Counter}
	}
	return out
}

func dotsFromPB(ds []*pb.Dot) []dht.Dot {
	if len(ds) == 0 {
		return nil
	}
	out := make([]dht.Dot, len(ds))
	for i, d := range ds {
		out[i] = dht.Dot{Actor: d.GetActor(), Counter: d.GetCounter()}
	}
	return out
}
