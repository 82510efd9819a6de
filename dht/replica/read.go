package replica

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
	// Hinted is how many of those came from fallback nodes standing in
	// for a down replica (a sloppy read quorum).
	Hinted int
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

// Read asks R of the key's replicas (this node first when it is one) and
// returns once R answers count, merging their records. While a node joins
// or leaves, each live pending replica adds one to R, as it adds one to W
// (see readPlan). It asks the next
// replica when one fails or does not count, and all of them when the
// quorum is not in after SpeculativeRead, so a slow or paused replica
// costs a few milliseconds, not a timeout. A share ReadRepairChance of
// reads asks every replica from the start. Replicas found stale or
// missing the key among those asked are repaired in the background once
// they all answered or RepairWait passed.
func (e *Engine) Read(ctx context.Context, key []byte, r int) (ReadResult, error) {
	if e.closed.Load() {
		return ReadResult{}, dht.ErrClosed
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	pos := ring.KeyPos(key)
	targets, r := e.readPlan(pos, r)
	q := e.newReadQuery(pos, key, targets)
	q.ask(ctx, r)
	if rand.Float64() < e.cfg.ReadRepairChance {
		q.ask(ctx, len(q.targets))
	}
	spec := time.NewTimer(e.cfg.SpeculativeRead)
	defer spec.Stop()
	res := ReadResult{}
	for res.Answered < r && len(q.got) < q.asked {
		select {
		case a := <-q.answers:
			q.got = append(q.got, a)
			if a.err != nil {
				e.log.Debug("replica read failed", "peer", a.t.id, "err", a.err)
			}
			if a.counts() {
				res.Answered++
				if a.t.hintFor != "" {
					res.Hinted++
				}
			} else {
				q.ask(ctx, q.asked+1) // replace it with the next replica
			}
			if a.err == nil && a.found {
				res.Record, res.Found = version.Merge(res.Record, a.rec), true
			}
		case <-spec.C:
			q.ask(ctx, len(q.targets))
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
	e.repairLater(key, q.got, q.answers, q.asked)
	return res, nil
}

// readQuery is one read's targets and the answers coming back.
type readQuery struct {
	e       *Engine
	pos     uint64
	key     []byte
	targets []target // this node first when it is a target
	asked   int      // targets[:asked] were asked
	answers chan readAnswer
	got     []readAnswer
}

func (e *Engine) newReadQuery(pos uint64, key []byte, targets []target) *readQuery {
	for i, t := range targets {
		if t.id == e.self && i > 0 {
			targets[0], targets[i] = targets[i], targets[0]
			break
		}
	}
	return &readQuery{e: e, pos: pos, key: key, targets: targets, answers: make(chan readAnswer, len(targets))}
}

// ask asks targets until n of them have been asked (or none is left).
// Remote reads go out before the local one, so they overlap it.
func (q *readQuery) ask(ctx context.Context, n int) {
	n = min(n, len(q.targets))
	var local *target
	for ; q.asked < n; q.asked++ {
		t := q.targets[q.asked]
		if t.id == q.e.self {
			local = &t
			continue
		}
		launched := q.e.goBackground(func(bg context.Context) {
			cctx, cancel := context.WithTimeout(bg, q.e.cfg.RequestTimeout)
			defer cancel()
			rec, found, err := q.e.callRead(cctx, t.id, q.key)
			q.answers <- readAnswer{t: t, rec: rec, found: found, err: err}
		})
		if !launched {
			q.answers <- readAnswer{t: t, err: dht.ErrClosed}
		}
	}
	if local != nil {
		rec, found, err := q.e.localRecord(ctx, q.pos, q.key)
		q.answers <- readAnswer{t: *local, rec: rec, found: found, err: err}
	}
}

// callRead asks peer id for its record of key, coalesced with other
// reads from the same peer (see batch.go).
func (e *Engine) callRead(ctx context.Context, id peer.ID, key []byte) (dht.Record, bool, error) {
	rr, err := e.reads.to(id).submit(ctx, &pb.ReadRequest{Key: key}, len(key))
	if err != nil {
		return dht.Record{}, false, err
	}
	if rr.GetFound() {
		if err := e.checkRecord(rr.GetRecord()); err != nil {
			return dht.Record{}, false, err
		}
	}
	return dht.RecordFromPB(rr.GetRecord()), rr.GetFound(), nil
}

func (e *Engine) handleRead(ctx context.Context, r *pb.ReadRequest) (*pb.KVResponse, error) {
	out, err := e.readLocal(ctx, r)
	if err != nil {
		return nil, err
	}
	return &pb.KVResponse{Result: &pb.KVResponse_Read{Read: out}}, nil
}

// readLocal answers one replica read from this node's store.
func (e *Engine) readLocal(ctx context.Context, r *pb.ReadRequest) (*pb.ReadResponse, error) {
	if err := e.checkKey(r.GetKey()); err != nil {
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
	return out, nil
}

// repairLater collects the answers still outstanding (up to RepairWait),
// merges everything and writes the merged record to every natural replica
// whose answer differed from it. When every answer is already in, it
// decides at once and starts work only if some replica needs repair.
func (e *Engine) repairLater(key []byte, got []readAnswer, answers <-chan readAnswer, total int) {
	if len(got) == total {
		if merged, stale := staleAnswers(got); len(stale) > 0 {
			e.goBackground(func(bg context.Context) { e.repair(bg, key, merged, stale) })
		}
		return
	}
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
		if merged, stale := staleAnswers(got); len(stale) > 0 {
			e.repair(bg, key, merged, stale)
		}
	})
}

// staleAnswers merges the answers and lists the natural replicas whose
// answer differs from the merge (missing the key or behind it).
func staleAnswers(got []readAnswer) (dht.Record, []peer.ID) {
	var merged dht.Record
	anyFound := false
	for _, a := range got {
		if a.err == nil && a.found {
			merged, anyFound = version.Merge(merged, a.rec), true
		}
	}
	if !anyFound {
		return merged, nil
	}
	want := merkle.RecordDigest(merged)
	var stale []peer.ID
	for _, a := range got {
		if a.err != nil || a.t.hintFor != "" || (a.found && merkle.RecordDigest(a.rec) == want) {
			continue
		}
		stale = append(stale, a.t.id)
	}
	return merged, stale
}

// repair writes merged to each stale replica.
func (e *Engine) repair(ctx context.Context, key []byte, merged dht.Record, stale []peer.ID) {
	for _, id := range stale {
		e.m.readRepairs.Inc()
		if id == e.self {
			if _, err := e.apply(ctx, ring.KeyPos(key), key, merged, ""); err != nil {
				e.log.Debug("read repair failed", "peer", id, "err", err)
			}
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
		if err := e.callWrite(cctx, target{id: id}, key, merged); err != nil {
			e.log.Debug("read repair failed", "peer", id, "err", err)
		}
		cancel()
	}
}

// Purge deletes this node's record of key if it is still the deleted
// record with the given digest. Tombstone collection calls it on every
// replica once all of them hold that record. The collector decided, on
// its clock, that every version died a grace period ago; this node checks
// that the record is the one the collector saw and that every version is
// mortal (a tombstone or a value with an expiry), not its own clock, which
// may lag.
func (e *Engine) Purge(ctx context.Context, key []byte, digest uint64) (bool, error) {
	return e.deleteIf(ctx, key, func(rec dht.Record) bool {
		return version.DiedBy(rec, math.MaxInt64, e.cfg.LWW) && merkle.RecordDigest(rec) == digest
	})
}

// Release deletes this node's record of key if it still has the given
// digest. Ownership handoff calls it once every replica of a key this
// node no longer replicates took the record it pushed; under the key's
// lock, like every replica write, so a write that lands after the push
// changes the digest and keeps the record for the next round.
func (e *Engine) Release(ctx context.Context, key []byte, digest uint64) (bool, error) {
	return e.deleteIf(ctx, key, func(rec dht.Record) bool {
		return merkle.RecordDigest(rec) == digest
	})
}

// deleteIf deletes this node's record of key, under the key's lock, if
// there is one and ok accepts it.
func (e *Engine) deleteIf(ctx context.Context, key []byte, ok func(dht.Record) bool) (bool, error) {
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
	if !ok(rec) {
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
