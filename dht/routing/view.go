package routing

import (
	"cmp"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// vtok is one token of the local ring and the peer holding it.
type vtok struct {
	tok uint64
	rec *peerRec
}

func compareVtok(a, b vtok) int {
	if c := cmp.Compare(a.tok, b.tok); c != 0 {
		return c
	}
	return cmp.Compare(a.rec.ID, b.rec.ID)
}

// view is an immutable snapshot of the local ring: the tokens of the node
// itself and of every peer in its routing state, in clockwise order. It
// answers what a ring.Ring of the same nodes answers (successor, zone-aware
// preference list) with ring's rules, including its tie rule: of equal
// tokens the smaller peer ID holds it. It costs 16 bytes per token and is
// rebuilt by merging, not rehashing, when the peer set changes.
type view struct {
	self  *peerRec
	toks  []vtok // ascending by (token, peer ID)
	nodes int    // distinct peers, self included
	zones int    // distinct zones among them
}

// exclusion is a small set of peers a request asks to treat as absent.
type exclusion []peer.ID

func (e exclusion) has(id peer.ID) bool { return len(e) > 0 && slices.Contains(e, id) }

// succIdx returns the index of the first token at or after pos, wrapping
// to 0. The view must not be empty.
func (v *view) succIdx(pos uint64) int {
	i, _ := slices.BinarySearchFunc(v.toks, pos, func(e vtok, p uint64) int { return cmp.Compare(e.tok, p) })
	if i == len(v.toks) {
		return 0
	}
	return i
}

// holder returns the peer holding token index i, or nil when an equal token
// of a smaller ID holds it or the peer is excluded.
func (v *view) holder(i int, ex exclusion) *peerRec {
	if i > 0 && v.toks[i].tok == v.toks[i-1].tok {
		return nil
	}
	r := v.toks[i].rec
	if ex.has(r.ID) {
		return nil
	}
	return r
}

// walk calls fn with each token index from start, clockwise (or
// counter-clockwise when back), once around the ring, and its holder,
// skipping tokens nobody holds, until fn returns false.
func (v *view) walk(start int, back bool, ex exclusion, fn func(i int, r *peerRec) bool) {
	n := len(v.toks)
	for k := range n {
		i := start + k
		if back {
			i = start - k
		}
		i = ((i % n) + n) % n
		if r := v.holder(i, ex); r != nil && !fn(i, r) {
			return
		}
	}
}

// owner returns the peer holding the successor token of pos, the peers of
// ex treated as absent; nil on an empty view.
func (v *view) owner(pos uint64, ex exclusion) *peerRec {
	if len(v.toks) == 0 {
		return nil
	}
	var out *peerRec
	v.walk(v.succIdx(pos), false, ex, func(_ int, r *peerRec) bool { out = r; return false })
	return out
}

// isOwner reports whether the local node owns pos in this view.
func (v *view) isOwner(pos uint64, ex exclusion) bool { return v.owner(pos, ex) == v.self }

// prefList returns the n distinct peers that keep the keys at pos, owner
// first, zone-aware, exactly as ring.PreferenceList chooses them: nodes of
// zones not yet represented first, skipped nodes filling the remaining
// places in walk order.
func (v *view) prefList(pos uint64, n int, ex exclusion) []*peerRec {
	if len(v.toks) == 0 || n <= 0 {
		return nil
	}
	var seen recSet
	var zones []string
	taken := make([]*peerRec, 0, n)
	var skipped []*peerRec
	v.walk(v.succIdx(pos), false, ex, func(_ int, r *peerRec) bool {
		if !seen.add(r) {
			return true
		}
		if !slices.Contains(zones, r.Zone) {
			zones = append(zones, r.Zone)
			taken = append(taken, r)
		} else {
			skipped = append(skipped, r)
		}
		return len(taken) < n && seen.len() < v.nodes &&
			(len(zones) < v.zones || len(taken)+len(skipped) < n)
	})
	need := min(n-len(taken), len(skipped))
	return append(taken, skipped[:need]...)
}

// candidates returns up to k peers to ask next about pos, never the local
// node: the predicted owner (the holder of pos's successor token) first,
// then the holders of the closest tokens preceding pos, by clockwise
// distance to pos.
func (v *view) candidates(pos uint64, k int, ex exclusion) []*peerRec {
	if len(v.toks) == 0 || k <= 0 {
		return nil
	}
	out := make([]*peerRec, 0, k)
	start := v.succIdx(pos)
	v.walk(start, false, ex, func(_ int, r *peerRec) bool {
		if r == v.self {
			return true
		}
		out = append(out, r)
		return false
	})
	v.walk(start-1, true, ex, func(_ int, r *peerRec) bool {
		if r != v.self && !slices.Contains(out, r) {
			out = append(out, r)
		}
		return len(out) < k
	})
	return out
}

// exact reports whether the view knows the owner of pos for certain: pos
// lies inside the successor list of the own token before it, where the
// view holds every peer.
func (v *view) exact(pos uint64, r int) bool {
	own := v.self.toks
	if len(own) == 0 {
		return false
	}
	i, _ := slices.BinarySearch(own, pos)
	sigma := own[(i+len(own)-1)%len(own)]
	end, ok := v.succListEnd(sigma, r)
	return !ok || ring.Contains(ring.Arc{Start: sigma, End: end}, pos)
}

// likelyExact reports whether the view probably knows the owner of pos:
// exact, or the gap between the tokens around pos is at most three times the
// mean token spacing of the successor list of the primary token, where the
// view is complete (so no peer is likely to hide in the gap).
func (v *view) likelyExact(pos uint64, r int) bool {
	if v.exact(pos, r) {
		return true
	}
	sigma := v.self.toks[0]
	end, _ := v.succListEnd(sigma, r)
	n := len(v.toks)
	count := (v.succIdx(end) - v.succIdx(sigma) + n) % n
	if count == 0 {
		return false
	}
	spacing := (end - sigma) / uint64(count)
	i := v.succIdx(pos)
	gap := v.toks[i].tok - v.toks[(i+n-1)%n].tok
	return gap/3 <= spacing
}

// neighbors returns up to n distinct peers holding the tokens before pos
// and up to n after it (from pos on), never the local node.
func (v *view) neighbors(pos uint64, n int, ex exclusion) (before, after []*peerRec) {
	if len(v.toks) == 0 || n <= 0 {
		return nil, nil
	}
	start := v.succIdx(pos)
	collect := func(from int, back bool) (out []*peerRec) {
		v.walk(from, back, ex, func(_ int, r *peerRec) bool {
			if r != v.self && !slices.Contains(out, r) {
				out = append(out, r)
			}
			return len(out) < n
		})
		return out
	}
	return collect(start-1, true), collect(start, false)
}

// authoritative returns an arc around pos in which the view holds every
// peer the node keeps structurally, so its neighbourhood answer lists all
// of them: (predecessor, end of the successor list] of the own token at or
// after pos, or of the one before it. ok is false when neither arc holds
// pos or the view has fewer than r peers.
func (v *view) authoritative(pos uint64, r int) (arc ring.Arc, ok bool) {
	own := v.self.toks
	if len(own) == 0 || len(v.toks) == 0 {
		return ring.Arc{}, false
	}
	i, _ := slices.BinarySearch(own, pos)
	for _, sigma := range []uint64{own[i%len(own)], own[(i+len(own)-1)%len(own)]} {
		pred := v.next(sigma, true, nil)
		end, full := v.succListEnd(sigma, r)
		if pred == nil || !full {
			return ring.Arc{}, false
		}
		_, lo := pred.dist(sigma) // from pred's last token before sigma to sigma
		a := ring.Arc{Start: sigma - lo, End: end}
		if !ring.Full(a) && ring.Contains(a, pos) {
			return a, true
		}
	}
	return ring.Arc{}, false
}

// structural calls fn with every peer the node keeps whatever the cache
// holds: for each own token the r distinct peers that follow it and the p
// that precede it, and the 64 fingers, owners of primary+2^i where primary
// is the node's first token. fn may see a peer more than once. It appends
// to watch the arcs where a new token would change one of these places,
// and reports all when the view is too small to tell.
func (v *view) structural(r, p int, watch []ring.Arc, fn func(*peerRec)) ([]ring.Arc, bool) {
	if len(v.toks) == 0 || len(v.self.toks) == 0 {
		return watch, true
	}
	all := false
	var succ []*peerRec
	for _, t := range v.self.toks {
		i := v.succIdx(t)
		succ = succ[:0]
		var end uint64
		v.walk(i+1, false, nil, func(j int, q *peerRec) bool {
			if q != v.self && !slices.Contains(succ, q) {
				succ = append(succ, q)
				fn(q)
				end = v.toks[j].tok
			}
			return len(succ) < r
		})
		if len(succ) < r {
			all = true
		}
		succ = succ[:0]
		start := t
		v.walk(i-1, true, nil, func(j int, q *peerRec) bool {
			if q != v.self && !slices.Contains(succ, q) {
				succ = append(succ, q)
				fn(q)
				start = v.toks[j].tok
			}
			return len(succ) < p
		})
		if len(succ) < p {
			all = true
		}
		watch = append(watch, ring.Arc{Start: start, End: end})
	}
	own := len(watch)
	primary := v.self.toks[0]
	var last *peerRec
	var lastTok uint64
	for b := range 64 {
		target := primary + 1<<b
		i := v.succIdx(target)
		o := v.holder(i, nil)
		for k := 1; o == nil; k++ { // a lost duplicate: the winner precedes it
			o = v.holder(i-k, nil)
		}
		if o != v.self && o != last {
			fn(o)
			last = o
		}
		// The arc of the previous finger with the same successor token
		// holds this one's; an own token's arc holds fingers that point
		// into its successor list.
		if tok := v.toks[i].tok; b == 0 || tok != lastTok {
			lastTok = tok
			if !slices.ContainsFunc(watch[:own], func(a ring.Arc) bool { return ring.Contains(a, target) }) {
				watch = append(watch, ring.Arc{Start: target - 1, End: tok})
			}
		}
	}
	return watch, all
}

// succListEnd returns the token of the r-th distinct peer after own token
// t: the successor list of t covers (t, end]. ok is false when the view
// holds fewer peers.
func (v *view) succListEnd(t uint64, r int) (end uint64, ok bool) {
	if len(v.toks) == 0 {
		return 0, false
	}
	var succ []*peerRec
	v.walk(v.succIdx(t)+1, false, nil, func(i int, p *peerRec) bool {
		if p != v.self && !slices.Contains(succ, p) {
			succ = append(succ, p)
			if len(succ) == r {
				end, ok = v.toks[i].tok, true
				return false
			}
		}
		return true
	})
	return end, ok
}

// next returns the first peer other than the local node after own token t
// (back: before it), skipping ex; nil when there is none.
func (v *view) next(t uint64, back bool, ex exclusion) *peerRec {
	if len(v.toks) == 0 {
		return nil
	}
	start := v.succIdx(t) + 1
	if back {
		start -= 2
	}
	var out *peerRec
	v.walk(start, back, ex, func(_ int, p *peerRec) bool {
		if p == v.self {
			return true
		}
		out = p
		return false
	})
	return out
}

// recSet is a set of peers: a slice while small, a map beyond.
type recSet struct {
	list []*peerRec
	m    map[*peerRec]struct{}
}

// add inserts r and reports whether it was absent.
func (s *recSet) add(r *peerRec) bool {
	if s.m != nil {
		if _, ok := s.m[r]; ok {
			return false
		}
		s.m[r] = struct{}{}
		return true
	}
	if slices.Contains(s.list, r) {
		return false
	}
	s.list = append(s.list, r)
	if len(s.list) > 32 {
		s.m = make(map[*peerRec]struct{}, 2*len(s.list))
		for _, x := range s.list {
			s.m[x] = struct{}{}
		}
	}
	return true
}

func (s *recSet) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return len(s.list)
}
