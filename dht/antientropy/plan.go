package antientropy

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/ring"
)

// Planning: which arcs to exchange with which peer, in which direction.
// It reads the placement and, for a drain, whether the store holds
// anything in an arc; it sends nothing.

// mode is the direction of an exchange.
type mode uint8

const (
	// modeBoth: both sides end with the merge of both records (repair).
	modeBoth mode = iota
	// modePull: take the peer's records, send none (join).
	modePull
	// modePush: send this node's records, take none (leave).
	modePush
)

func (m mode) pulls() bool  { return m != modePush }
func (m mode) pushes() bool { return m != modePull }

func (m mode) String() string {
	switch m {
	case modePull:
		return "pull"
	case modePush:
		return "push"
	}
	return "both"
}

// job is the arcs to exchange with one peer.
type job struct {
	peer peer.ID
	arcs []ring.Arc
	mode mode
}

// roundJobs pairs each serving arc this node replicates with its other
// live natural replicas. cheap keeps only peers with a greater ID, so that
// every pair is compared once when every node runs cheap rounds.
func (s *Syncer) roundJobs(cheap bool) []job {
	serving, self, n := s.place.Serving(), s.place.Self(), s.place.Replicas()
	byPeer := map[peer.ID][]ring.Arc{}
	for _, arc := range serving.Arcs() {
		list := serving.PreferenceList(arc.End, n)
		if !contains(list, self) {
			continue
		}
		for _, p := range list {
			if p == self || !s.place.Alive(p) || (cheap && p < self) {
				continue
			}
			byPeer[p] = append(byPeer[p], arc)
		}
	}
	return jobsOf(byPeer, modeBoth)
}

// bootstrapJobs pairs each future arc this node will replicate, cut at
// the serving ring's tokens, with the live natural replicas of each piece.
func (s *Syncer) bootstrapJobs() []job {
	serving, future, self, n := s.place.Serving(), s.place.Future(), s.place.Self(), s.place.Replicas()
	tokens := arcEnds(serving)
	byPeer := map[peer.ID][]ring.Arc{}
	for _, arc := range future.Arcs() {
		if !contains(future.PreferenceList(arc.End, n), self) {
			continue
		}
		for _, piece := range splitArc(arc, tokens) {
			for _, p := range serving.PreferenceList(piece.End, n) {
				if p != self && s.place.Alive(p) {
					byPeer[p] = append(byPeer[p], piece)
				}
			}
		}
	}
	return jobsOf(byPeer, modePull)
}

// drainJobs pairs every future arc with its live future replicas other
// than this node. orphans counts arcs where this node holds records but no
// future replica is alive (or the future ring is empty).
func (s *Syncer) drainJobs(ctx context.Context) (jobs []job, orphans int) {
	future, self, n := s.place.Future(), s.place.Self(), s.place.Replicas()
	arcs := future.Arcs()
	if len(arcs) == 0 {
		if holds(ctx, s.st, ring.Arc{}) {
			orphans++
		}
		return nil, orphans
	}
	byPeer := map[peer.ID][]ring.Arc{}
	for _, arc := range arcs {
		sent := false
		for _, p := range future.PreferenceList(arc.End, n) {
			if p != self && s.place.Alive(p) {
				byPeer[p] = append(byPeer[p], arc)
				sent = true
			}
		}
		if !sent && holds(ctx, s.st, arc) {
			orphans++
		}
	}
	return jobsOf(byPeer, modePush), orphans
}

// holds reports whether the store has a record in arc. A store error
// counts as holding one, so that it is reported rather than ignored.
func holds(ctx context.Context, st dht.Store, arc ring.Arc) bool {
	for _, sp := range arcSpans(arc.Start, arc.End) {
		lo, hi := sp.keys()
		resume, err := scanRange(ctx, st, lo, hi, func([]byte, dht.Record) bool { return true })
		if err != nil || resume != nil {
			return true
		}
	}
	return false
}

// jobsOf turns a peer -> arcs map into jobs sorted by peer ID.
func jobsOf(byPeer map[peer.ID][]ring.Arc, m mode) []job {
	out := make([]job, 0, len(byPeer))
	for p, arcs := range byPeer {
		out = append(out, job{peer: p, arcs: arcs, mode: m})
	}
	slices.SortFunc(out, func(a, b job) int {
		switch {
		case a.peer < b.peer:
			return -1
		case a.peer > b.peer:
			return 1
		}
		return 0
	})
	return out
}

// arcEnds returns the ring's tokens, ascending.
func arcEnds(r *ring.Ring) []uint64 {
	arcs := r.Arcs()
	out := make([]uint64, len(arcs))
	for i, a := range arcs {
		out[i] = a.End
	}
	return out
}

// splitArc cuts arc at every token of tokens (ascending) that lies strictly
// inside it, returning the pieces in ring order from arc.Start. Each piece
// then lies in one arc of the ring tokens came from.
func splitArc(arc ring.Arc, tokens []uint64) []ring.Arc {
	var cuts []uint64
	for _, sp := range arcSpans(arc.Start, arc.End) {
		i, _ := slices.BinarySearch(tokens, sp.from)
		for ; i < len(tokens) && tokens[i] <= sp.to; i++ {
			if tokens[i] != arc.End {
				cuts = append(cuts, tokens[i])
			}
		}
	}
	if len(cuts) == 0 {
		return []ring.Arc{arc}
	}
	out := make([]ring.Arc, 0, len(cuts)+1)
	prev := arc.Start
	for _, c := range cuts {
		out = append(out, ring.Arc{Start: prev, End: c})
		prev = c
	}
	return append(out, ring.Arc{Start: prev, End: arc.End})
}
