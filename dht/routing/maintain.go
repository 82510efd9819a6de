package routing

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
)

// Join makes the local node part of the ring through seed, a live member:
// for each own token in ascending order it looks up (through seed, as if
// the local node were not there yet) the current owner of the token,
// unless an earlier neighbourhood answer already covered the token, then
// stabilises the token: it asks the peers just after and just before it
// for their view of the neighbourhood, which also tells them about the
// local node. It fails with ErrJoinFailed when nobody answered at all.
func (r *Router) Join(ctx context.Context, seed Peer) error {
	if r.isClosed() {
		return dht.ErrClosed
	}
	seed = normalise(seed)
	if seed.ID == r.selfRec.ID || checkPeer(seed) != "" {
		return fmt.Errorf("%w: seed %q", ErrInvalidPeer, seed.ID)
	}
	r.Observe(seed)
	var covered []ring.Arc
	var errs []error
	answered := 0
	for _, t := range r.selfRec.toks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrJoinFailed, err)
		}
		if !coveredBy(covered, t) {
			ex := exclusion{r.selfRec.ID}
			if _, err := r.iterate(ctx, r.snapshot(), t, Options{}, ex); err != nil {
				errs = append(errs, fmt.Errorf("token %016x: %w", t, err))
			} else {
				answered++
			}
		}
		arcs, n := r.stabilizeToken(ctx, t)
		covered = append(covered, arcs...)
		answered += n
	}
	if answered == 0 {
		return fmt.Errorf("%w: through %s: %w", ErrJoinFailed, seed.ID, errors.Join(errs...))
	}
	return nil
}

// coveredBy reports whether pos lies strictly inside one of the arcs: its
// owner and the peers around it were already listed.
func coveredBy(arcs []ring.Arc, pos uint64) bool {
	for _, a := range arcs {
		if ring.Contains(a, pos) && pos != a.End {
			return true
		}
	}
	return false
}

// Stabilize runs one maintenance round over the next StabilizeTokensPerRound
// own tokens (rotating through all of them): for each, it asks the peer
// just after the token and the peer just before it for the peers they know
// around it, adopts those, and so tells both about the local node (Chord's
// stabilize and notify in one request). A neighbour that does not answer is
// forgotten and the next one asked. It returns ctx's error, dht.ErrClosed,
// or nil; unreachable neighbours are not errors.
func (r *Router) Stabilize(ctx context.Context) error {
	if r.isClosed() {
		return dht.ErrClosed
	}
	toks := r.selfRec.toks
	n := min(r.cfg.StabilizeTokensPerRound, len(toks))
	r.mu.Lock()
	start := r.stabNext
	r.stabNext = (start + n) % len(toks)
	r.mu.Unlock()
	for k := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.stabilizeToken(ctx, toks[(start+k)%len(toks)])
	}
	if r.met != nil {
		r.Size() // refreshes ringkv_routing_table_peers
	}
	return ctx.Err()
}

// stabilizeToken refreshes the neighbourhood of own token t from the peer
// after it and the peer before it. It returns the arcs those answers cover
// completely and how many answered.
func (r *Router) stabilizeToken(ctx context.Context, t uint64) (arcs []ring.Arc, answered int) {
	for _, back := range []bool{false, true} {
		for range r.cfg.Successors {
			target := r.snapshot().next(t, back, nil)
			if target == nil || ctx.Err() != nil {
				break
			}
			req := &pb.FindRequest{Pos: t, Neighbors: true, From: r.info}
			resp, err := r.call(ctx, target.ID, r.cfg.QueryTimeout, req)
			if err != nil {
				r.log.Debug("stabilize: neighbour failed", "self", r.selfRec.ID, "peer", target.ID, "err", err)
				if unreachable(ctx, err) {
					r.Forget(target.ID)
					continue
				}
				break
			}
			recs, ok := r.decodeRecs(resp.GetNeighbors())
			if !ok {
				break
			}
			r.observeRecs(target, recs)
			answered++
			if span := (ring.Arc{Start: resp.GetSpanStart(), End: resp.GetSpanEnd()}); !ring.Full(span) {
				arcs = append(arcs, span)
				r.verifyUnlisted(ctx, t, span, append(recs, target))
			}
			break
		}
	}
	return arcs, answered
}

// verifyUnlisted asks the peers the local ring places inside span, where
// the neighbour's answer is complete, but that it did not list (at most
// Successors of them): the neighbour has not heard of them yet, or has
// forgotten them as dead. A peer
// that does not answer is forgotten; one that does is a newcomer and tells
// its own neighbourhood.
func (r *Router) verifyUnlisted(ctx context.Context, t uint64, span ring.Arc, listed []*peerRec) {
	v := r.snapshot()
	if len(v.toks) == 0 {
		return
	}
	var unlisted []*peerRec
	v.walk(v.succIdx(span.Start+1), false, nil, func(i int, p *peerRec) bool {
		if !ring.Contains(span, v.toks[i].tok) || len(unlisted) == r.cfg.Successors {
			return false
		}
		if p != v.self && !slices.ContainsFunc(listed, func(l *peerRec) bool { return l.ID == p.ID }) &&
			!slices.Contains(unlisted, p) {
			unlisted = append(unlisted, p)
		}
		return true
	})
	for _, p := range unlisted {
		req := &pb.FindRequest{Pos: t, Neighbors: true, From: r.info}
		resp, err := r.call(ctx, p.ID, r.cfg.QueryTimeout, req)
		if err != nil {
			if unreachable(ctx, err) {
				r.log.Debug("stabilize: unlisted peer unreachable", "self", r.selfRec.ID, "peer", p.ID, "err", err)
				r.Forget(p.ID)
			}
			continue
		}
		if recs, ok := r.decodeRecs(resp.GetNeighbors()); ok {
			r.observeRecs(p, recs)
		}
	}
}

// FixFingers runs one maintenance round over the next FixFingersPerRound
// fingers (rotating through the 64): it looks up the owner of
// primary+2^i, which puts it in the routing state, where it takes the
// finger's place. Fingers whose target lies inside the successor list of
// the primary token are exact already and skipped without a lookup. It
// returns ctx's error, dht.ErrClosed, or the last lookup error.
func (r *Router) FixFingers(ctx context.Context) error {
	if r.isClosed() {
		return dht.ErrClosed
	}
	primary := r.selfRec.toks[0]
	end, ok := r.snapshot().succListEnd(primary, r.cfg.Successors)
	var last error
	done := 0
	for range 64 {
		if done == r.cfg.FixFingersPerRound {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r.mu.Lock()
		i := r.fingerNext
		r.fingerNext = (i + 1) % 64
		r.mu.Unlock()
		target := primary + 1<<i
		if !ok || ring.Contains(ring.Arc{Start: primary, End: end}, target) {
			continue
		}
		done++
		if _, err := r.Lookup(ctx, target, Options{}); err != nil {
			last = err
		}
	}
	return last
}
