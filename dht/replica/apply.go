package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/version"
)

// Applying replica writes. A replica merges each incoming record into its
// copy of the key under the key's lock (read, merge, write), so that two
// writes of one key never lose each other. A batch from a peer is applied
// as one: the batch's locks are taken in stripe order, every record is
// merged, and the changed ones are stored in one atomic commit, so a
// batch of k writes costs one commit and no goroutine per write.

// apply merges incoming into this node's copy of key (its replica record,
// or the hint it holds for hintFor) and reports whether anything changed.
func (e *Engine) apply(ctx context.Context, pos uint64, key []byte, incoming dht.Record, hintFor peer.ID) (bool, error) {
	sk, hintFor := e.applyKey(pos, key, hintFor)
	mu := e.lock(pos)
	mu.Lock()
	defer mu.Unlock()
	merged, changed, err := e.merged(ctx, sk, incoming)
	if err != nil || !changed {
		return false, err
	}
	if hintFor != "" {
		e.addHint(pos, key, hintFor) // before the write: see the hint index in hints.go
	}
	if err := e.st.Put(ctx, sk, merged); err != nil {
		return false, err
	}
	return true, nil
}

// Apply merges a record into this node's replica of key, as a replica
// receiving a write would. Anti-entropy and range transfers use it.
func (e *Engine) Apply(ctx context.Context, key []byte, pos uint64, rec dht.Record) (bool, error) {
	return e.apply(ctx, pos, key, rec, "")
}

// applyKey is the store key a write of key lands under: the replica record,
// or the hint for hintFor (none when hintFor is this node).
func (e *Engine) applyKey(pos uint64, key []byte, hintFor peer.ID) ([]byte, peer.ID) {
	if hintFor == e.self || hintFor == "" {
		return DataKey(pos, key), ""
	}
	return hintKey(pos, key, hintFor), hintFor
}

// merged merges incoming into what the store holds under sk and reports
// whether the result differs from it. The key's lock is held.
func (e *Engine) merged(ctx context.Context, sk []byte, incoming dht.Record) (dht.Record, bool, error) {
	cur, err := e.st.Get(ctx, sk)
	existed := err == nil
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		return dht.Record{}, false, err
	}
	merged := version.Merge(cur, incoming)
	return merged, !existed || !version.Identical(merged, cur), nil
}

// incomingWrite is one valid write of a batch.
type incomingWrite struct {
	i       int // index in the batch
	pos     uint64
	key     []byte
	sk      []byte
	hintFor peer.ID
	rec     dht.Record
}

// decodeWrite validates one replica write from a peer.
func (e *Engine) decodeWrite(r *pb.WriteRequest) (incomingWrite, error) {
	if r == nil {
		e.m.refused.WithLabelValues("record").Inc()
		return incomingWrite{}, fmt.Errorf("%w: missing write", ErrBadRequest)
	}
	if err := e.checkKey(r.Key); err != nil {
		return incomingWrite{}, err
	}
	if err := e.checkRecord(r.Record); err != nil {
		return incomingWrite{}, err
	}
	var hintFor peer.ID
	if len(r.HintFor) > 0 {
		id, err := peer.IDFromBytes(r.HintFor)
		if err != nil {
			e.m.refused.WithLabelValues("hint_for").Inc()
			return incomingWrite{}, fmt.Errorf("%w: bad hint target", ErrBadRequest)
		}
		hintFor = id
	}
	w := incomingWrite{pos: ring.KeyPos(r.Key), key: r.Key, rec: dht.RecordFromPB(r.Record)}
	w.sk, w.hintFor = e.applyKey(w.pos, w.key, hintFor)
	return w, nil
}

// applyWrite validates and applies one replica write from a peer.
func (e *Engine) applyWrite(ctx context.Context, r *pb.WriteRequest) error {
	return e.applyBatch(ctx, []*pb.WriteRequest{r})[0]
}

// applyBatch validates and applies a batch of replica writes from a peer
// and returns each one's error. Invalid writes fail alone; the valid ones
// are committed together, so a failed commit fails them all.
func (e *Engine) applyBatch(ctx context.Context, reqs []*pb.WriteRequest) []error {
	errs := make([]error, len(reqs))
	ws := make([]incomingWrite, 0, len(reqs))
	for i, r := range reqs {
		w, err := e.decodeWrite(r)
		if err != nil {
			errs[i] = err
			continue
		}
		w.i = i
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		return errs
	}
	unlock := e.lockAll(ws)
	defer unlock()
	for j, err := range e.mergeAll(ctx, ws) {
		errs[ws[j].i] = err
	}
	return errs
}

// lockAll takes the locks of every write's key, in stripe order so that
// two batches never wait for each other, and returns their release.
func (e *Engine) lockAll(ws []incomingWrite) (unlock func()) {
	stripes := make([]int, 0, len(ws))
	for _, w := range ws {
		stripes = append(stripes, int(w.pos%uint64(len(e.locks))))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, s := range stripes {
		e.locks[s].Lock()
	}
	return func() {
		for _, s := range stripes {
			e.locks[s].Unlock()
		}
	}
}

// mergeAll merges each write into the stored record of its key (or into
// an earlier write of the same key in the batch), stores the records that
// changed and records the hints among them. It returns each write's
// error. The locks are held.
func (e *Engine) mergeAll(ctx context.Context, ws []incomingWrite) []error {
	errs := make([]error, len(ws))
	var entries []dht.Entry
	entryOf := make([]int, len(ws)) // write -> its entry, -1 when nothing changed
	at := map[string]int{}          // store key -> its entry
	for i, w := range ws {
		entryOf[i] = -1
		if j, ok := at[string(w.sk)]; ok {
			entries[j].Record, entryOf[i] = version.Merge(entries[j].Record, w.rec), j
			continue
		}
		rec, changed, err := e.merged(ctx, w.sk, w.rec)
		if err != nil || !changed {
			errs[i] = err
			continue
		}
		at[string(w.sk)], entryOf[i] = len(entries), len(entries)
		entries = append(entries, dht.Entry{Key: w.sk, Record: rec})
	}
	if len(entries) == 0 {
		return errs
	}
	for i, w := range ws {
		if entryOf[i] >= 0 && w.hintFor != "" {
			e.addHint(w.pos, w.key, w.hintFor) // before the write: see the hint index in hints.go
		}
	}
	stored := e.st.PutEach(ctx, entries)
	for i := range ws {
		j := entryOf[i]
		if j < 0 {
			continue
		}
		err := stored[j]
		if errors.Is(err, dht.ErrClosed) {
			err = dht.ErrClosed
		}
		errs[i] = err
	}
	return errs
}
