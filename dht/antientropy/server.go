package antientropy

import (
	"bytes"
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Responder side of the protocol. Every request comes from the network:
// it is checked against the protocol bounds before any work, a failed
// check is counted in ringkv_antientropy_refused_total and logged at debug,
// and nothing a peer sends can make the handler panic or allocate without
// bound. At most ServeConcurrency requests are answered at once.

// handle answers one sync request.
func (s *Syncer) handle(ctx context.Context, from peer.ID, req proto.Message) (resp proto.Message, err error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	r, ok := req.(*pb.SyncRequest)
	if !ok {
		return nil, s.refuse(from, "type", "unexpected message %T", req)
	}
	select {
	case s.serve <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.serve }()
	defer func() {
		if v := recover(); v != nil {
			resp, err = nil, s.refuse(from, "panic", "handler failed: %v", v)
		}
	}()
	var out *pb.SyncResponse
	switch op := r.Op.(type) {
	case *pb.SyncRequest_Roots:
		out, err = s.handleRoots(ctx, from, op.Roots)
	case *pb.SyncRequest_Level:
		out, err = s.handleLevel(ctx, from, op.Level)
	case *pb.SyncRequest_Keys:
		out, err = s.handleKeys(ctx, from, op.Keys)
	case *pb.SyncRequest_Fetch:
		out, err = s.handleFetch(ctx, from, op.Fetch)
	case *pb.SyncRequest_Push:
		out, err = s.handlePush(ctx, from, op.Push)
	default:
		err = s.refuse(from, "empty", "empty request")
	}
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return out, nil
}

// refuse counts and logs a bad request and returns its error.
func (s *Syncer) refuse(from peer.ID, reason, format string, args ...any) error {
	s.m.refused.WithLabelValues(reason).Inc()
	err := fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
	s.log.Debug("sync request refused", "peer", from, "op", reason, "err", err)
	return err
}

// checkArc validates an arc of a request.
func (s *Syncer) checkArc(from peer.ID, a *pb.SyncArc) error {
	if a == nil || a.Depth > merkle.MaxDepth {
		return s.refuse(from, "arc", "arc missing or deeper than %d", merkle.MaxDepth)
	}
	return nil
}

func (s *Syncer) handleRoots(ctx context.Context, from peer.ID, r *pb.SyncRootsRequest) (*pb.SyncResponse, error) {
	if len(r.Arcs) == 0 || len(r.Arcs) > maxArcs {
		return nil, s.refuse(from, "arcs", "%d arcs, limit %d", len(r.Arcs), maxArcs)
	}
	for _, a := range r.Arcs {
		if err := s.checkArc(from, a); err != nil {
			return nil, err
		}
	}
	out := &pb.SyncRootsResponse{Roots: make([]uint64, len(r.Arcs)), Counts: make([]uint64, len(r.Arcs))}
	for i, a := range r.Arcs {
		t, err := buildTree(ctx, s.st, a.Start, a.End, int(a.Depth))
		if err != nil {
			return nil, err
		}
		out.Roots[i], out.Counts[i] = t.Root(), uint64(t.Len())
		if out.Roots[i] != 0 {
			s.cache.put(keyOf(a), t)
		}
	}
	return &pb.SyncResponse{Result: &pb.SyncResponse_Roots{Roots: out}}, nil
}

func (s *Syncer) handleLevel(ctx context.Context, from peer.ID, r *pb.SyncLevelRequest) (*pb.SyncResponse, error) {
	if len(r.Queries) == 0 || len(r.Queries) > maxLevelQueries {
		return nil, s.refuse(from, "level", "%d queries, limit %d", len(r.Queries), maxLevelQueries)
	}
	total := 0
	for _, q := range r.Queries {
		if err := s.checkArc(from, q.GetArc()); err != nil {
			return nil, err
		}
		if total += len(q.Indexes); total > maxLevelIndexes {
			return nil, s.refuse(from, "level", "more than %d indexes", maxLevelIndexes)
		}
		if q.Level > q.Arc.Depth {
			return nil, s.refuse(from, "level", "level %d below depth %d", q.Level, q.Arc.Depth)
		}
	}
	out := &pb.SyncLevelResponse{Results: make([]*pb.SyncHashes, len(r.Queries))}
	trees := map[treeKey]*merkle.Tree{} // a level split over several queries builds its tree once
	for i, q := range r.Queries {
		t, ok := trees[keyOf(q.Arc)]
		if !ok {
			var err error
			if t, err = s.treeFor(ctx, q.Arc); err != nil {
				return nil, err
			}
			trees[keyOf(q.Arc)] = t
		}
		idx := make([]int, len(q.Indexes))
		for k, x := range q.Indexes {
			idx[k] = int(x)
		}
		hs, err := t.Nodes(int(q.Level), idx)
		if err != nil {
			return nil, s.refuse(from, "level", "%v", err)
		}
		out.Results[i] = &pb.SyncHashes{Hashes: hs}
	}
	return &pb.SyncResponse{Result: &pb.SyncResponse_Level{Level: out}}, nil
}

// treeFor returns the tree of an arc from the cache, or builds (and
// caches) it.
func (s *Syncer) treeFor(ctx context.Context, a *pb.SyncArc) (*merkle.Tree, error) {
	k := keyOf(a)
	if t, ok := s.cache.get(k); ok {
		return t, nil
	}
	t, err := buildTree(ctx, s.st, a.Start, a.End, int(a.Depth))
	if err != nil {
		return nil, err
	}
	s.cache.put(k, t)
	return t, nil
}

func (s *Syncer) handleKeys(ctx context.Context, from peer.ID, r *pb.SyncKeysRequest) (*pb.SyncResponse, error) {
	if len(r.Spans) == 0 || len(r.Spans) > maxSpans {
		return nil, s.refuse(from, "keys", "%d spans, limit %d", len(r.Spans), maxSpans)
	}
	for _, sp := range r.Spans {
		if sp == nil || sp.From > sp.To {
			return nil, s.refuse(from, "keys", "span missing or inverted")
		}
	}
	if int(r.FromSpan) >= len(r.Spans) {
		return nil, s.refuse(from, "keys", "cursor at span %d of %d", r.FromSpan, len(r.Spans))
	}
	first := span{r.Spans[r.FromSpan].From, r.Spans[r.FromSpan].To}
	if len(r.AfterKey) > 0 && (s.checkKey(r.AfterKey) != nil || !first.contains(ring.KeyPos(r.AfterKey))) {
		return nil, s.refuse(from, "keys", "cursor key outside its span")
	}
	limit := s.cfg.BatchKeys
	if r.Limit > 0 && int(r.Limit) < limit {
		limit = int(r.Limit)
	}
	out := &pb.SyncKeysResponse{}
	size := 0
	for j := int(r.FromSpan); j < len(r.Spans) && !out.More; j++ {
		lo, hi := replica.DataSpan(r.Spans[j].From, r.Spans[j].To)
		if j == int(r.FromSpan) && len(r.AfterKey) > 0 {
			lo = after(dataKey(r.AfterKey))
		}
		resume, err := scanRange(ctx, s.st, lo, hi, func(sk []byte, rec dht.Record) bool {
			_, key, ok := replica.ParseDataKey(sk)
			if !ok {
				return false
			}
			out.Entries = append(out.Entries, &pb.SyncKeyDigest{Key: bytes.Clone(key), Digest: merkle.RecordDigest(rec)})
			size += len(key) + 16
			return len(out.Entries) >= limit || size >= s.cfg.BatchBytes
		})
		if err != nil {
			return nil, err
		}
		out.More = resume != nil
	}
	return &pb.SyncResponse{Result: &pb.SyncResponse_Keys{Keys: out}}, nil
}

func (s *Syncer) handleFetch(ctx context.Context, from peer.ID, r *pb.SyncFetchRequest) (*pb.SyncResponse, error) {
	if len(r.Keys) == 0 || len(r.Keys) > maxBatchKeys {
		return nil, s.refuse(from, "fetch", "%d keys, limit %d", len(r.Keys), maxBatchKeys)
	}
	for _, k := range r.Keys {
		if err := s.checkKey(k); err != nil {
			return nil, s.refuse(from, "fetch", "%v", err)
		}
	}
	out := &pb.SyncFetchResponse{}
	size := 0
	for _, k := range r.Keys {
		rec, found, err := getLocal(ctx, s.st, k)
		if err != nil {
			return nil, err
		}
		f := &pb.SyncFetched{Key: k, Found: found}
		if found {
			f.Record = dht.RecordToPB(rec)
		}
		n := proto.Size(f)
		if len(out.Records) > 0 && size+n > s.cfg.BatchBytes {
			break
		}
		out.Records, size = append(out.Records, f), size+n
	}
	return &pb.SyncResponse{Result: &pb.SyncResponse_Fetch{Fetch: out}}, nil
}

func (s *Syncer) handlePush(ctx context.Context, from peer.ID, r *pb.SyncPushRequest) (*pb.SyncResponse, error) {
	if len(r.Entries) == 0 || len(r.Entries) > maxBatchKeys {
		return nil, s.refuse(from, "push", "%d entries, limit %d", len(r.Entries), maxBatchKeys)
	}
	for _, e := range r.Entries {
		if err := s.checkKey(e.GetKey()); err != nil {
			return nil, s.refuse(from, "push", "%v", err)
		}
		if err := checkRecord(e.Record); err != nil {
			return nil, s.refuse(from, "push", "%v", err)
		}
	}
	applied := uint32(0)
	for _, e := range r.Entries {
		changed, err := s.rep.Apply(ctx, e.Key, ring.KeyPos(e.Key), dht.RecordFromPB(e.Record))
		if err != nil {
			return nil, fmt.Errorf("antientropy: apply pushed record: %w", err)
		}
		if changed {
			applied++
		}
	}
	return &pb.SyncResponse{Result: &pb.SyncResponse_Push{Push: &pb.SyncPushResponse{Applied: applied}}}, nil
}
