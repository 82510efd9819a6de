package routing

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// Hop answers, as reported in Hop.Answer.
const (
	AnswerOwner  = "owner"  // the peer is the directory node and returned the replica set
	AnswerCloser = "closer" // the peer returned (or forwarded to) closer candidates
	AnswerFailed = "failed" // the peer did not answer, or answered nonsense
)

// Options tune one lookup.
type Options struct {
	// Trace reports every query in Result.Path, with its latency.
	Trace bool
	// Recursive sends the request to the best candidate, which forwards it
	// toward the owner hop by hop, instead of iterating from the asking
	// node. For comparison; iterative is the default.
	Recursive bool
}

// Result is the outcome of a lookup. Its peers share their address
// slices with the routing state: treat them as read-only.
type Result struct {
	// Owner is the directory node of the position: the first of Replicas.
	Owner Peer
	// Replicas is the replica set the owner returned, owner first.
	Replicas []Peer
	// Hops is 0 when the asking node owns the position. Iterative: the
	// number of sequential rounds of up to Alpha parallel queries.
	// Recursive: the number of peers on the forwarding path that answered
	// (forwarded or owned); a direct hit is 1 either way.
	Hops int
	// Path lists every query in order, failed ones included, when
	// Options.Trace is set.
	Path []Hop
}

// Hop is one query of a lookup.
type Hop struct {
	Peer    peer.ID
	Answer  string // AnswerOwner, AnswerCloser or AnswerFailed
	Latency time.Duration
}

// Lookup finds the directory node of pos and its replica set. The asking
// node first consults its own local ring: if it owns pos the answer costs
// no hop. Otherwise it iterates (or, with Options.Recursive, forwards) as
// the package documentation describes. It fails with ErrLookupFailed when
// no owner answered within MaxHops (or ctx ended), with dht.ErrClosed
// after Close; a failed lookup still reports its Path when traced.
func (r *Router) Lookup(ctx context.Context, pos uint64, opts Options) (Result, error) {
	if r.isClosed() {
		return Result{}, dht.ErrClosed
	}
	v := r.snapshot()
	var res Result
	var err error
	switch {
	case v.isOwner(pos, nil):
		res = r.localResult(v, pos)
	case opts.Recursive:
		res, err = r.lookupRecursive(ctx, v, pos, opts)
	default:
		res, err = r.iterate(ctx, v, pos, opts, nil)
	}
	switch {
	case err != nil:
		r.met.lookup(outcomeFailed, 0)
		return Result{Path: res.Path}, err
	case res.Hops == 0:
		r.met.lookup(outcomeLocal, 0)
	default:
		r.met.lookup(outcomeOK, res.Hops)
	}
	r.recordHops(res.Hops)
	return res, nil
}

func (r *Router) localResult(v *view, pos uint64) Result {
	list := v.prefList(pos, r.cfg.Replicas, nil)
	return Result{Owner: r.selfRec.Peer, Replicas: peersOf(list)}
}

func peersOf(recs []*peerRec) []Peer {
	out := make([]Peer, len(recs))
	for i, p := range recs {
		out[i] = p.Peer
	}
	return out
}

// cand is one peer of an iterative lookup's shortlist.
type cand struct {
	rec        *peerRec
	succ, pred uint64 // clockwise distances from pos to its next token, from its previous token to pos
	state      candState
	named      peer.ID // the predicted owner of its "closer" answer
	reasked    bool    // asked again after named failed
}

type candState uint8

const (
	candFresh candState = iota
	candAnswered
	candFailed
)

// search is the state of one iterative lookup.
type search struct {
	r      *Router
	pos    uint64
	trace  bool
	ex     exclusion // peers to treat as absent: failed ones, and self when joining
	cands  map[peer.ID]*cand
	best   *cand // the owner answer with the closest token so far
	bestRS []*peerRec
	path   []Hop
	rounds int
}

// iterate runs an iterative lookup from view v. ex, when not nil, names
// peers to treat as absent from the start (Join passes the local node).
func (r *Router) iterate(ctx context.Context, v *view, pos uint64, opts Options, ex exclusion) (Result, error) {
	s := &search{r: r, pos: pos, trace: opts.Trace, ex: ex, cands: make(map[peer.ID]*cand)}
	for _, c := range v.candidates(pos, r.cfg.candidates(), ex) {
		s.add(c)
	}
	for s.rounds < r.cfg.MaxHops {
		batch := s.pick()
		if len(batch) == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrLookupFailed, err)
		}
		s.round(ctx, batch)
		if s.best != nil && !s.closerPending() {
			break
		}
	}
	if s.best == nil {
		return Result{Path: s.path}, fmt.Errorf("%w: position %016x: no owner answered in %d rounds (%d queries)",
			ErrLookupFailed, pos, s.rounds, s.queries())
	}
	return Result{Owner: s.bestRS[0].Peer, Replicas: peersOf(s.bestRS), Hops: s.rounds, Path: s.path}, nil
}

// add puts rec on the shortlist unless it is known, excluded or self.
func (s *search) add(rec *peerRec) {
	if rec == s.r.selfRec || s.ex.has(rec.ID) {
		return
	}
	if _, ok := s.cands[rec.ID]; ok {
		return
	}
	succ, pred := rec.dist(s.pos)
	s.cands[rec.ID] = &cand{rec: rec, succ: succ, pred: pred}
}

// closerPending reports whether an unasked candidate holds a token between
// pos and the best owner's: a node the owner may not know yet.
func (s *search) closerPending() bool {
	for _, c := range s.cands {
		if c.state == candFresh && c.succ < s.best.succ {
			return true
		}
	}
	return false
}

// pick returns the next round's queries: the unasked candidates (closer
// than the best owner so far, if any), the predicted owner (the one whose
// token follows pos most closely) first, then by closeness of their tokens
// preceding pos; at most Alpha.
func (s *search) pick() []*cand {
	var fresh []*cand
	for _, c := range s.cands {
		if c.state == candFresh && (s.best == nil || c.succ < s.best.succ) {
			fresh = append(fresh, c)
		}
	}
	if c := s.reaskable(); c != nil && !slices.ContainsFunc(fresh, func(f *cand) bool { return f.succ < c.succ }) {
		c.state, c.reasked = candFresh, true
		fresh = append(fresh, c)
	}
	if len(fresh) == 0 {
		return nil
	}
	owner := slices.MinFunc(fresh, func(a, b *cand) int {
		return cmp.Or(cmp.Compare(a.succ, b.succ), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	rest := slices.DeleteFunc(fresh, func(c *cand) bool { return c == owner })
	slices.SortFunc(rest, func(a, b *cand) int {
		return cmp.Or(cmp.Compare(a.pred, b.pred), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	out := append([]*cand{owner}, rest...)
	return out[:min(len(out), s.r.cfg.Alpha)]
}

// reaskable returns the candidate to ask again: of those whose "closer" answer named a predicted owner that then failed,
// the one whose token follows pos most closely. Asked again with the
// failed peer excluded, it answers as that peer's successor would.
func (s *search) reaskable() *cand {
	var out *cand
	for _, c := range s.cands {
		if c.state == candAnswered && !c.reasked && c.named != "" && s.ex.has(c.named) &&
			(s.best == nil || c.succ < s.best.succ) && (out == nil || c.succ < out.succ) {
			out = c
		}
	}
	return out
}

// reply is one query's outcome.
type reply struct {
	resp *pb.FindResponse
	err  error
	lat  time.Duration
}

// round queries batch, in parallel unless SerialQueries, waits for every
// answer and merges them in batch order.
func (s *search) round(ctx context.Context, batch []*cand) {
	r := s.r
	req := &pb.FindRequest{Pos: s.pos, From: r.info, Exclude: encodeExclude(s.ex)}
	replies := make([]reply, len(batch))
	query := func(i int) {
		start := r.clk.Now()
		resp, err := r.call(ctx, batch[i].rec.ID, r.cfg.QueryTimeout, req)
		replies[i] = reply{resp: resp, err: err, lat: r.clk.Now().Sub(start)}
	}
	if r.cfg.SerialQueries || len(batch) == 1 {
		for i := range batch {
			query(i)
		}
	} else {
		var wg sync.WaitGroup
		for i := range batch {
			wg.Go(func() { query(i) })
		}
		wg.Wait()
	}
	s.rounds++
	for i, c := range batch {
		s.merge(ctx, c, replies[i])
	}
}

// merge applies one answer to the search and learns its peers.
func (s *search) merge(ctx context.Context, c *cand, rp reply) {
	r := s.r
	if rp.err != nil {
		s.fail(c, rp.lat)
		if unreachable(ctx, rp.err) {
			r.Forget(c.rec.ID)
		}
		r.log.Debug("lookup query failed", "self", r.selfRec.ID, "peer", c.rec.ID, "err", rp.err)
		return
	}
	if rp.resp.GetOwner() {
		rs, ok := r.decodeRecs(rp.resp.GetReplicas())
		if !ok || len(rs) == 0 || rs[0].ID != c.rec.ID {
			r.refuse(reasonBadAnswer)
			s.fail(c, rp.lat)
			return
		}
		c.state = candAnswered
		s.hop(c, AnswerOwner, rp.lat)
		if s.best == nil || c.succ < s.best.succ {
			s.best, s.bestRS = c, rs
		}
		r.observeRecs(c.rec, rs)
		return
	}
	cs, ok := r.decodeRecs(rp.resp.GetCandidates())
	if !ok {
		s.fail(c, rp.lat)
		return
	}
	c.state = candAnswered
	s.hop(c, AnswerCloser, rp.lat)
	if len(cs) > 0 {
		c.named = cs[0].ID
	}
	kept := r.observeRecs(c.rec, cs)
	for _, x := range cs {
		switch {
		case slices.Contains(kept, x):
			s.add(x)
		case x != r.selfRec && !s.ex.has(x.ID) && len(s.ex) < MaxWireExclude:
			// Forgotten here as dead: later answers must do without it.
			s.ex = append(s.ex, x.ID)
		}
	}
}

// fail marks c failed and excludes it from the answers of later queries.
func (s *search) fail(c *cand, lat time.Duration) {
	c.state = candFailed
	s.hop(c, AnswerFailed, lat)
	if len(s.ex) < MaxWireExclude {
		s.ex = append(s.ex, c.rec.ID)
	}
}

func (s *search) hop(c *cand, answer string, lat time.Duration) {
	if s.trace {
		s.path = append(s.path, Hop{Peer: c.rec.ID, Answer: answer, Latency: lat})
	}
}

func (s *search) queries() int {
	n := 0
	for _, c := range s.cands {
		if c.state != candFresh {
			n++
		}
	}
	return n
}

// lookupRecursive sends a recursive request to the best candidates of v in
// turn (at most Alpha) and returns the first owner's answer that comes
// back.
func (r *Router) lookupRecursive(ctx context.Context, v *view, pos uint64, opts Options) (Result, error) {
	var ex exclusion
	var path []Hop
	cands := forwardOrder(v, pos, r.cfg.candidates(), r.cfg.Successors, nil)
	for _, c := range cands[:min(len(cands), r.cfg.Alpha)] {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrLookupFailed, err)
		}
		req := &pb.FindRequest{
			Pos: pos, Recursive: true, Ttl: uint32(r.cfg.MaxHops - 1), Trace: opts.Trace,
			From: r.info, Exclude: encodeExclude(ex),
		}
		start := r.clk.Now()
		resp, err := r.call(ctx, c.ID, 4*r.cfg.QueryTimeout, req)
		lat := r.clk.Now().Sub(start)
		var rs []*peerRec
		if err == nil {
			err = r.checkRecursive(c.ID, resp)
		}
		if err == nil {
			var ok bool
			if rs, ok = r.decodeRecs(resp.GetReplicas()); !ok || len(rs) == 0 {
				err = fmt.Errorf("%w: no valid replica from %s", ErrRefused, c.ID)
			}
		}
		if err != nil {
			path = append(path, Hop{Peer: c.ID, Answer: AnswerFailed, Latency: lat})
			if unreachable(ctx, err) {
				r.Forget(c.ID)
				ex = append(ex, c.ID)
			}
			continue
		}
		answer := AnswerOwner
		if len(resp.GetPath()) > 0 {
			answer = AnswerCloser
		}
		path = append(path, Hop{Peer: c.ID, Answer: answer, Latency: lat})
		path = append(path, hopsOf(resp.GetPath())...)
		r.observeRecs(nil, rs)
		res := Result{Owner: rs[0].Peer, Replicas: peersOf(rs), Hops: answered(path)}
		if opts.Trace {
			res.Path = path
		}
		return res, nil
	}
	if !opts.Trace {
		path = nil
	}
	return Result{Path: path}, fmt.Errorf("%w: position %016x: no recursive answer from %d candidates",
		ErrLookupFailed, pos, min(len(cands), r.cfg.Alpha))
}

// checkRecursive checks a recursive answer's shape, counting refusals.
func (r *Router) checkRecursive(from peer.ID, resp *pb.FindResponse) error {
	if reason := checkRecursiveAnswer(resp); reason != "" {
		r.refuse(reason)
		return fmt.Errorf("%w: %s from %s", ErrRefused, reason, from)
	}
	return nil
}

// hopsOf converts a checked wire path.
func hopsOf(path []*pb.HopInfo) []Hop {
	out := make([]Hop, 0, len(path))
	for _, h := range path {
		id, _ := decodeID(h.GetPeer())
		answer := AnswerFailed
		switch h.GetAnswer() {
		case pb.HopAnswer_HOP_ANSWER_OWNER:
			answer = AnswerOwner
		case pb.HopAnswer_HOP_ANSWER_CLOSER:
			answer = AnswerCloser
		}
		out = append(out, Hop{Peer: id, Answer: answer, Latency: time.Duration(min(h.GetLatencyUs(), 1<<40)) * time.Microsecond})
	}
	return out
}

// answered counts the hops of a path that answered.
func answered(path []Hop) int {
	n := 0
	for _, h := range path {
		if h.Answer != AnswerFailed {
			n++
		}
	}
	return n
}
