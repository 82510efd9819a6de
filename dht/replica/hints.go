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

// errStopScan ends a scan early once a batch is full.
var errStopScan = errors.New("replica: batch full")

// loadHints builds the in-memory index of keys that have hints.
func (e *Engine) loadHints(ctx context.Context) error {
	e.hintsMu.Lock()
	defer e.hintsMu.Unlock()
	var n int64
	err := e.st.Scan(ctx, HintPrefix(), prefixEnd(HintPrefix()), func(sk []byte, _ dht.Record) error {
		if pos, key, _, ok := parseHintKey(sk); ok {
			e.hinted[string(hintKeyPrefix(pos, key))]++
			n++
		}
		return nil
	})
	e.hints.Store(n)
	return err
}

func (e *Engine) addHint(pos uint64, key []byte) {
	e.hintsMu.Lock()
	e.hinted[string(hintKeyPrefix(pos, key))]++
	e.hintsMu.Unlock()
	e.hints.Add(1)
}

func (e *Engine) removeHint(pos uint64, key []byte) {
	p := string(hintKeyPrefix(pos, key))
	e.hintsMu.Lock()
	if e.hinted[p]--; e.hinted[p] <= 0 {
		delete(e.hinted, p)
	}
	e.hintsMu.Unlock()
	e.hints.Add(-1)
}

func (e *Engine) hasHints(pos uint64, key []byte) bool {
	if e.hints.Load() == 0 {
		return false
	}
	e.hintsMu.Lock()
	defer e.hintsMu.Unlock()
	return e.hinted[string(hintKeyPrefix(pos, key))] > 0
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
// HintBatch of its hints. It returns how many were delivered.
func (e *Engine) HandOff(ctx context.Context) int {
	byTarget := map[peer.ID][]hint{}
	err := e.st.Scan(ctx, HintPrefix(), prefixEnd(HintPrefix()), func(sk []byte, rec dht.Record) error {
		pos, key, target, ok := parseHintKey(sk)
		if !ok || len(byTarget[target]) >= e.cfg.HintBatch || !e.view.Alive(target) {
			return nil
		}
		byTarget[target] = append(byTarget[target], hint{
			sk: append([]byte(nil), sk...), pos: pos, key: append([]byte(nil), key...), target: target, rec: rec,
		})
		return nil
	})
	if err != nil {
		e.log.Debug("hint scan failed", "err", err)
	}
	delivered := 0
	for to, hs := range byTarget {
		for _, h := range hs {
			if ctx.Err() != nil {
				return delivered
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
	e.removeHint(h.pos, h.key)
	return true
}
