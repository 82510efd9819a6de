package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/merkle"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/version"
)

// ReadResult is the merged state of a key as R replicas reported it.
type ReadResult struct {
	// Record merges every answer received before the result was built; it
	// may be all tombstones (a deleted key) or empty (never written).
	Record dht.Record
	// Found is false when no replica had any record of the key.
	Found bool
	// Answered is the number of replica answers that counted toward R.
	Answered int
}

// readAnswer is one replica's answer to a read.
type readAnswer struct {
	t     target
	rec   dht.Record
	found bool
	err   error
}

// counts reports whether an answer counts toward R: every answer of a
// natural replica does; a fallback's only when it holds something, since
// a fallback that has nothing knows nothing about the key.
func (a readAnswer) counts() bool {
	return a.err == nil && (a.t.hintFor == "" || a.found)
}

// Read asks the key's replicas in parallel and returns once r of them
// answered (0 uses Config.ReadQuorum), merging their records. Replicas
// found stale, or missing the key, are repaired in the background once
// every replica answered or RepairWait passed.
func (e *Engine) Read(ctx context.Context, key []byte, r int) (ReadResult, error) {
	if e.closed.Load() {
		return ReadResult{}, dht.ErrClosed
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	if r <= 0 {
		r = e.cfg.ReadQuorum
	}
	r = min(r, e.cfg.Replicas)
	pos := ring.KeyPos(key)
	targets := e.readTargets(pos)
	answers := make(chan readAnswer, len(targets))
	// Remote reads go out first, so the local read overlaps them.
	var local *target
	asked := 0
	for _, t := range targets {
		if t.id == e.self {
			local = &t
			asked++
			continue
		}
		launched := e.goBackground(func(bg context.Context) {
			cctx, cancel := context.WithTimeout(bg, e.cfg.RequestTimeout)
			defer cancel()
			rec, found, err := e.callRead(cctx, t.id, key)
			answers <- readAnswer{t: t, rec: rec, found: found, err: err}
		})
		if launched {
			asked++
		}
	}
	if local != nil {
		rec, found, err := e.localRecord(ctx, pos, key)
		answers <- readAnswer{t: *local, rec: rec, found: found, err: err}
	}
	var got []readAnswer
	res := ReadResult{}
	for len(got) < asked && res.Answered < r {
		select {
		case a := <-answers:
			got = append(got, a)
			if a.err != nil {
				e.log.Debug("replica read failed", "peer", a.t.id, "err", a.err)
				continue
			}
			if a.counts() {
				res.Answered++
			}
			if a.found {
				res.Record, res.Found = version.Merge(res.Record, a.rec), true
			}
		case <-ctx.Done():
			e.m.reads.WithLabelValues("timeout").Inc()
			return res, fmt.Errorf("replica: read: %w", ctx.Err())
		}
	}
	if res.Answered < r {
		e.m.reads.WithLabelValues("quorum_failed").Inc()
		return res, &QuorumError{Op: "read", Acks: res.Answered, Required: r}
	}
	if e.cfg.LWW {
		res.Record = version.ResolveLWW(res.Record)
	}
	e.m.reads.WithLabelValues("ok").Inc()
	e.repairLater(key, got, answers, asked)
	return res, nil
}

func (e *Engine) callRead(ctx context.Context, id peer.ID, key []byte) (dht.Record, bool, error) {
	var resp pb.KVResponse
	req := &pb.KVRequest{Op: &pb.KVRequest_Read{Read: &pb.ReadRequest{Key: key}}}
	if err := e.tr.Call(ctx, id, Protocol, req, &resp); err != nil {
		return dht.Record{}, false, err
	}
	rr := resp.GetRead()
	if rr == nil {
		return dht.Record{}, false, fmt.Errorf("%w: %s answered a read without a result", dht.ErrUnreachable, id)
	}
	if rr.Found {
		if err := e.checkRecord(rr.Record); err != nil {
			return dht.Record{}, false, err
		}
	}
	return dht.RecordFromPB(rr.Record), rr.Found, nil
}

func (e *Engine) handleRead(ctx context.Context, r *pb.ReadRequest) (*pb.KVResponse, error) {
	if err := e.checkKey(r.Key); err != nil {
		return nil, err
	}
	rec, found, err := e.localRecord(ctx, ring.KeyPos(r.Key), r.Key)
	if err != nil {
		return nil, err
	}
	out := &pb.ReadResponse{Found: found}
	if found {
		out.Record = dht.RecordToPB(rec)
	}
	return &pb.KVResponse{Result: &pb.KVResponse_Read{Read: out}}, nil
}

// repairLater collects the answers still outstanding (up to RepairWait),
// merges everything and writes the merged record to every natural replica
// whose answer differed from it.
func (e *Engine) repairLater(key []byte, got []readAnswer, answers <-chan readAnswer, total int) {
	e.goBackground(func(bg context.Context) {
		timer := time.NewTimer(e.cfg.RepairWait)
		defer timer.Stop()
		for len(got) < total {
			select {
			case a := <-answers:
				got = append(got, a)
			case <-timer.C:
				total = len(got)
			case <-bg.Done():
				return
			}
		}
		var merged dht.Record
		anyFound := false
		for _, a := range got {
			if a.err == nil && a.found {
				merged, anyFound = version.Merge(merged, a.rec), true
			}
		}
		if !anyFound {
			return
		}
		want := merkle.RecordDigest(merged)
		for _, a := range got {
			if a.err != nil || a.t.hintFor != "" || (a.found && merkle.RecordDigest(a.rec) == want) {
				continue
			}
			e.m.readRepairs.Inc()
			if a.t.id == e.self {
				if _, err := e.apply(bg, ring.KeyPos(key), key, merged, ""); err != nil {
					e.log.Debug("read repair failed", "peer", a.t.id, "err", err)
				}
				continue
			}
			cctx, cancel := context.WithTimeout(bg, e.cfg.RequestTimeout)
			if err := e.callWrite(cctx, target{id: a.t.id}, key, merged); err != nil {
				e.log.Debug("read repair failed", "peer", a.t.id, "err", err)
			}
			cancel()
		}
	})
}

// Purge deletes this node's record of key if it is still the tombstone
// with the given digest. Tombstone collection calls it on every replica
// once all of them hold the tombstone.
func (e *Engine) Purge(ctx context.Context, key []byte, digest uint64) (bool, error) {
	pos := ring.KeyPos(key)
	mu := e.lock(pos)
	mu.Lock()
	defer mu.Unlock()
	sk := DataKey(pos, key)
	rec, err := e.st.Get(ctx, sk)
	if errors.Is(err, dht.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !rec.Deleted() || merkle.RecordDigest(rec) != digest {
		return false, nil
	}
	return true, e.st.Delete(ctx, sk)
}

// CallPurge asks peer id to purge its tombstone of key.
func (e *Engine) CallPurge(ctx context.Context, id peer.ID, key []byte, digest uint64) (bool, error) {
	if id == e.self {
		return e.Purge(ctx, key, digest)
	}
	var resp pb.KVResponse
	req := &pb.KVRequest{Op: &pb.KVRequest_Purge{Purge: &pb.PurgeRequest{Key: key, Digest: digest}}}
	if err := e.tr.Call(ctx, id, Protocol, req, &resp); err != nil {
		return false, err
	}
	return resp.GetPurge().GetPurged(), nil
}

// ReadReplica returns peer id's own record of key (a single replica's
// answer, no quorum), for tombstone collection and tests.
func (e *Engine) ReadReplica(ctx context.Context, id peer.ID, key []byte) (dht.Record, bool, error) {
	if id == e.self {
		return e.localRecord(ctx, ring.KeyPos(key), key)
	}
	return e.callRead(ctx, id, key)
}

func (e *Engine) handlePurge(ctx context.Context, r *pb.PurgeRequest) (*pb.KVResponse, error) {
	if err := e.checkKey(r.Key); err != nil {
		return nil, err
	}
	ok, err := e.Purge(ctx, r.Key, r.Digest)
	if err != nil {
		return nil, err
	}
	return &pb.KVResponse{Result: &pb.KVResponse_Purge{Purge: &pb.PurgeResponse{Purged: ok}}}, nil
}
