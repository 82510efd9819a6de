package replica

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/version"
)

// Hinted handoff. A fallback that took a write for a replica that was
// down keeps it under a hint key naming that replica. Reads of the key
// include hints, so a fallback answers for what it holds. Every
// HintInterval the engine sends each live target its hints and deletes
// those that arrived unchanged.
//
// A hint is dropped undelivered once its newest version is older than
// HintMaxAge, as Cassandra expires hints with gc_grace_seconds. Tombstone
// collection checks the natural replicas, not the fallbacks: a hint
// delivered after every replica purged the record that deleted one of
// its values would bring the value back as a new key. The coordinator of
// the hint's newest version y held it (it is a natural replica and wrote
// y itself), so the purged record held y or a later write that covered
// it, stamped no earlier than y (up to clock skew), and was purged at
// least a grace after that. A hint younger than HintMaxAge, which is
// below the grace by more than the skew, therefore never arrives after
// the purge. Ageing by the newest version, not the oldest, keeps the hint
// of a fresh write that its record's older siblings came along with. The
// one case outside the argument is a coordinator whose own store write of
// y failed (the client was told the outcome is unknown) while the
// tombstone of an older sibling took longer than the grace less
// HintMaxAge to reach it.

// The hint index maps each key that has hints (by its hint-key prefix)
// to the targets it has hints for. Adding and removing are idempotent, so
// the index cannot drift from the store whatever order writes, handoffs
// and expiries happen in. A hint enters the index before its store
// write: a write whose context ends is reported failed but may still
// commit, and had it not been indexed no handoff round would run for it
// (rounds run while the index is not empty) until a restart reloaded the
// index. An entry whose write did not commit is forgotten by the next
// round's scan (forgetVanished).

// loadHints builds the in-memory index of keys that have hints.
func (e *Engine) loadHints(ctx context.Context) error {
	return e.st.Scan(ctx, HintPrefix(), prefixEnd(HintPrefix()), func(sk []byte, _ dht.Record) error {
		if pos, key, target, ok := parseHintKey(sk); ok {
			e.addHint(pos, key, target)
		}
		return nil
	})
}

func (e *Engine) addHint(pos uint64, key []byte, target peer.ID) {
	p := string(hintKeyPrefix(pos, key))
	e.hintsMu.Lock()
	defer e.hintsMu.Unlock()
	ts := e.hinted[p]
	if ts == nil {
		ts = map[peer.ID]struct{}{}
		e.hinted[p] = ts
	}
	if _, ok := ts[target]; !ok {
		ts[target] = struct{}{}
		e.hints.Add(1)
	}
}

func (e *Engine) removeHint(pos uint64, key []byte, target peer.ID) {
	p := string(hintKeyPrefix(pos, key))
	e.hintsMu.Lock()
	defer e.hintsMu.Unlock()
	ts := e.hinted[p]
	if _, ok := ts[target]; !ok {
		return
	}
	delete(ts, target)
	e.hints.Add(-1)
	if len(ts) == 0 {
		delete(e.hinted, p)
	}
}

func (e *Engine) hasHints(pos uint64, key []byte) bool {
	if e.hints.Load() == 0 {
		return false
	}
	e.hintsMu.Lock()
	defer e.hintsMu.Unlock()
	return len(e.hinted[string(hintKeyPrefix(pos, key))]) > 0
}

func (e *Engine) handoffLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.HintInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if e.hints.Load() > 0 {
				e.HandOff(ctx)
			}
		}
	}
}

// hint is one stored hint.
type hint struct {
	sk     []byte
	pos    uint64
	key    []byte
	target peer.ID
	rec    dht.Record
}

// HandOff runs one round of hinted handoff: every live target gets up to
// HintBatch of its hints, and up to HintBatch hints past HintMaxAge are
// dropped, whether their target is up or not. It returns how many were
// delivered.
func (e *Engine) HandOff(ctx context.Context) int {
	byTarget := map[peer.ID][]hint{}
	var aged []hint
	seen := map[string]bool{}
	err := e.st.Scan(ctx, HintPrefix(), prefixEnd(HintPrefix()), func(sk []byte, rec dht.Record) error {
		pos, key, target, ok := parseHintKey(sk)
		if !ok {
			return nil
		}
		seen[string(sk)] = true
		h := func() hint {
			return hint{sk: append([]byte(nil), sk...), pos: pos, key: append([]byte(nil), key...), target: target, rec: rec}
		}
		switch {
		case e.agedOut(rec):
			if len(aged) < e.cfg.HintBatch {
				aged = append(aged, h())
			}
		case len(byTarget[target]) < e.cfg.HintBatch && e.view.Alive(target):
			byTarget[target] = append(byTarget[target], h())
		}
		return nil
	})
	if err != nil {
		e.log.Debug("hint scan failed", "err", err)
	} else {
		e.forgetVanished(ctx, seen)
	}
	for _, h := range aged {
		e.dropAged(ctx, h)
	}
	delivered := 0
	for to, hs := range byTarget {
		for _, h := range hs {
			if ctx.Err() != nil {
				return delivered
			}
			if e.agedOut(h.rec) { // aged while the round delivered others
				e.dropAged(ctx, h)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
			err := e.callWrite(cctx, target{id: h.target}, h.key, h.rec)
			cancel()
			if err != nil {
				e.log.Debug("hint handoff failed", "peer", to, "err", err)
				break // try this target again next round
			}
			if e.dropHint(ctx, h) {
				delivered++
				e.m.handedOff.Inc()
			}
		}
	}
	return delivered
}

// agedOut reports whether a hint's newest version was written more than
// HintMaxAge ago.
func (e *Engine) agedOut(rec dht.Record) bool {
	cutoff := e.clock.Now().Add(-e.cfg.HintMaxAge).UnixNano()
	for _, v := range rec.Versions {
		if v.Timestamp >= cutoff {
			return false
		}
	}
	return true
}

// dropAged deletes a hint past HintMaxAge, unless a newer write merged
// into it since it was read.
func (e *Engine) dropAged(ctx context.Context, h hint) {
	if e.dropHint(ctx, h) {
		e.m.hintsAged.Inc()
		e.log.Info("hint past the hint max age dropped undelivered; anti-entropy repairs its replica",
			"peer", h.target, "key", string(h.key), "max_age", e.cfg.HintMaxAge)
	}
}

// dropHint deletes a delivered hint unless it changed since it was read
// (a newer write merged into it); the changed hint is sent next round.
func (e *Engine) dropHint(ctx context.Context, h hint) bool {
	mu := e.lock(h.pos)
	mu.Lock()
	defer mu.Unlock()
	cur, err := e.st.Get(ctx, h.sk)
	if err != nil || !version.Identical(cur, h.rec) {
		return false
	}
	if err := e.st.Delete(ctx, h.sk); err != nil {
		return false
	}
	e.removeHint(h.pos, h.key, h.target)
	return true
}

// forgetVanished drops index entries whose hint the scan did not see and
// the store no longer holds: hints whose write failed after they were
// indexed.
func (e *Engine) forgetVanished(ctx context.Context, seen map[string]bool) {
	type entry struct {
		pos    uint64
		key    []byte
		target peer.ID
	}
	var gone []entry
	e.hintsMu.Lock()
	for p, ts := range e.hinted {
		for t := range ts {
			if sk := p + string(t); !seen[sk] {
				pos, key, _, _ := parseHintKey([]byte(sk))
				gone = append(gone, entry{pos, key, t})
			}
		}
	}
	e.hintsMu.Unlock()
	for _, g := range gone {
		mu := e.lock(g.pos)
		mu.Lock()
		if _, err := e.st.Get(ctx, hintKey(g.pos, g.key, g.target)); errors.Is(err, dht.ErrNotFound) {
			e.removeHint(g.pos, g.key, g.target)
		}
		mu.Unlock()
	}
}
