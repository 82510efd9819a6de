package routing

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

func newFindRequest() proto.Message { return new(pb.FindRequest) }

// handleFind answers a FindRequest from a peer: with the replica set when
// the local node owns the position, else with closer candidates; with the
// neighbourhood of the position for stabilization; or, for a recursive
// request, with the answer of the owner it forwarded the request to. It
// learns the asker from the request. It never panics on remote input:
// malformed requests are refused with an error and counted, malformed
// entries are dropped and counted.
func (r *Router) handleFind(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
	m, ok := req.(*pb.FindRequest)
	if !ok || m == nil {
		r.refuse(reasonBadRequest)
		return nil, fmt.Errorf("%w: not a find request", ErrRefused)
	}
	if r.isClosed() {
		return nil, dht.ErrClosed
	}
	ex, err := r.decodeExclude(m.GetExclude())
	if err != nil {
		return nil, err
	}
	if m.GetRecursive() && m.GetNeighbors() {
		r.refuse(reasonBadRequest)
		return nil, fmt.Errorf("%w: recursive neighbors request", ErrRefused)
	}
	r.learnSender(from, m.GetFrom())
	v := r.snapshot()
	switch {
	case m.GetNeighbors():
		return r.neighborsAnswer(v, m.GetPos(), append(ex, from)), nil
	case m.GetRecursive():
		return r.forward(ctx, v, from, m, ex)
	}
	return r.answer(v, m.GetPos(), ex), nil
}

// learnSender observes the asker described by info when it is the peer
// the transport says sent the request.
func (r *Router) learnSender(from peer.ID, info *pb.PeerInfo) {
	if info == nil {
		return
	}
	p, reason := peerFromInfo(info)
	switch {
	case reason != "":
		r.refuse(reason)
		r.log.Debug("refused sender info", "peer", from, "reason", reason)
		return
	case p.ID != from:
		r.refuse(reasonSender)
		r.log.Debug("refused sender info", "peer", from, "reason", reasonSender)
		return
	}
	r.observeRecs(r.recFor(p), nil)
}

// decodeExclude decodes a request's excluded peers. Undecodable IDs are
// dropped and counted; a list over MaxWireExclude refuses the request.
func (r *Router) decodeExclude(list [][]byte) (exclusion, error) {
	if len(list) > MaxWireExclude {
		r.refuse(reasonTooMany)
		return nil, fmt.Errorf("%w: %d excluded peers, limit %d", ErrRefused, len(list), MaxWireExclude)
	}
	var ex exclusion
	for _, b := range list {
		id, ok := decodeID(b)
		if !ok {
			r.refuse(reasonBadID)
			continue
		}
		ex = append(ex, id)
	}
	return ex, nil
}

// answer is the iterative answer about pos: owner with the replica set, or
// closer candidates.
func (r *Router) answer(v *view, pos uint64, ex exclusion) *pb.FindResponse {
	if v.isOwner(pos, ex) {
		return &pb.FindResponse{Owner: true, Replicas: infos(v.prefList(pos, r.cfg.Replicas, ex))}
	}
	return &pb.FindResponse{Candidates: infos(v.candidates(pos, r.cfg.candidates(), ex))}
}

// neighborsAnswer lists the peers around pos, for stabilization, and the
// arc around pos in which the list is complete, if any.
func (r *Router) neighborsAnswer(v *view, pos uint64, ex exclusion) *pb.FindResponse {
	before, after := v.neighbors(pos, r.cfg.Successors, ex)
	resp := &pb.FindResponse{Neighbors: append(infos(before), infos(after)...)}
	if span, ok := v.authoritative(pos, r.cfg.Successors); ok {
		resp.SpanStart, resp.SpanEnd = span.Start, span.End
	}
	return resp
}

// forward serves a recursive request: the owner answers; anyone else
// forwards it, with one hop less, to its best candidates in turn (at most
// Alpha of them, never back to the sender) and returns the first answer,
// its own hop to the answering peer prepended to the path.
func (r *Router) forward(ctx context.Context, v *view, from peer.ID, m *pb.FindRequest, ex exclusion) (*pb.FindResponse, error) {
	pos := m.GetPos()
	if v.isOwner(pos, ex) {
		return r.answer(v, pos, ex), nil
	}
	ttl := min(m.GetTtl(), uint32(r.cfg.MaxHops))
	if ttl == 0 {
		return nil, fmt.Errorf("%w at %s", ErrHopLimit, r.selfRec.ID)
	}
	var failed []*pb.HopInfo
	tried := 0
	for _, c := range forwardOrder(v, pos, r.cfg.candidates(), r.cfg.Successors, ex) {
		if c.ID == from {
			continue
		}
		if tried == r.cfg.Alpha || ctx.Err() != nil {
			break
		}
		tried++
		resp, hop, err := r.forwardTo(ctx, c.ID, m, ttl-1, ex)
		if err != nil {
			failed = append(failed, hop)
			if unreachable(ctx, err) {
				r.Forget(c.ID)
				if len(ex) < MaxWireExclude {
					ex = append(ex, c.ID)
				}
			}
			continue
		}
		path := make([]*pb.HopInfo, 0, len(failed)+1+len(resp.Path))
		path = append(append(append(path, failed...), hop), resp.Path...)
		resp.Path = path
		return resp, nil
	}
	return nil, fmt.Errorf("%w: no candidate of %s answered", ErrLookupFailed, r.selfRec.ID)
}

// forwardOrder is the order in which a recursive request is forwarded:
// to the predicted owner first when the local ring is likely exact around
// pos, else to the closest preceding peers first (Chord's greedy step), the
// predicted owner last. A predicted owner past pos knows less about pos
// than the peers before it.
func forwardOrder(v *view, pos uint64, k, r int, ex exclusion) []*peerRec {
	cs := v.candidates(pos, k, ex)
	if len(cs) < 2 || v.likelyExact(pos, r) {
		return cs
	}
	return append(cs[1:], cs[0])
}

// forwardTo sends a recursive request on to `to` and checks the answer.
// The hop describes the attempt either way.
func (r *Router) forwardTo(ctx context.Context, to peer.ID, m *pb.FindRequest, ttl uint32, ex exclusion) (*pb.FindResponse, *pb.HopInfo, error) {
	req := &pb.FindRequest{
		Pos: m.GetPos(), Recursive: true, Ttl: ttl, Trace: m.GetTrace(),
		From: r.info, Exclude: encodeExclude(ex),
	}
	start := r.clk.Now()
	resp, err := r.call(ctx, to, r.cfg.QueryTimeout*time.Duration(ttl+1), req)
	hop := &pb.HopInfo{Peer: []byte(to), Answer: pb.HopAnswer_HOP_ANSWER_FAILED}
	if m.GetTrace() {
		hop.LatencyUs = uint64(max(r.clk.Now().Sub(start), 0) / time.Microsecond)
	}
	if err != nil {
		return nil, hop, err
	}
	if reason := checkRecursiveAnswer(resp); reason != "" {
		r.refuse(reason)
		return nil, hop, fmt.Errorf("%w: %s from %s", ErrRefused, reason, to)
	}
	hop.Answer = pb.HopAnswer_HOP_ANSWER_CLOSER
	if len(resp.Path) == 0 {
		hop.Answer = pb.HopAnswer_HOP_ANSWER_OWNER
	}
	r.touch(to)
	return resp, hop, nil
}

// checkRecursiveAnswer returns why a recursive answer is unacceptable, or
// "". Its peer entries are checked where they are decoded.
func checkRecursiveAnswer(resp *pb.FindResponse) string {
	switch {
	case !resp.GetOwner() || len(resp.GetReplicas()) == 0:
		return reasonBadAnswer
	case len(resp.GetReplicas()) > MaxWirePeers || len(resp.GetPath()) >= MaxWirePath:
		return reasonTooMany
	}
	for _, h := range resp.GetPath() {
		if _, ok := decodeID(h.GetPeer()); !ok {
			return reasonBadID
		}
	}
	return ""
}

// encodeExclude is the wire form of ex.
func encodeExclude(ex exclusion) [][]byte {
	if len(ex) == 0 {
		return nil
	}
	out := make([][]byte, len(ex))
	for i, id := range ex {
		out[i] = []byte(id)
	}
	return out
}
