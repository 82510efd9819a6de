package routing

import (
	"math"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
)

// Peer is what the routing state knows about one node: its ID and
// capacity, which give all its ring tokens, its addresses and its zone.
type Peer struct {
	ID    peer.ID
	Addrs []string // dialable multiaddrs without /p2p/
	Zone  string   // failure domain; "" when unset
	// Capacity weights the node's share of the ring: it holds
	// ring.TokenCount(Capacity, VNodes) tokens. Observe treats 0 as 1.
	Capacity float64
}

// Refusal reasons, the label of ringkv_routing_refused_total.
const (
	reasonBadRequest = "bad_request" // not a FindRequest, or an impossible combination
	reasonBadID      = "bad_id"      // a peer ID that does not decode
	reasonAddrs      = "addrs"       // too many or too long addresses
	reasonZone       = "zone"        // zone too long
	reasonCapacity   = "capacity"    // capacity outside (0, MaxCapacity]
	reasonTooMany    = "too_many"    // a list over MaxWirePeers, MaxWireExclude or MaxWirePath
	reasonSender     = "sender"      // from does not name the transport-level sender
	reasonBadAnswer  = "bad_answer"  // an answer that contradicts itself
)

var refusalReasons = []string{
	reasonBadRequest, reasonBadID, reasonAddrs, reasonZone, reasonCapacity,
	reasonTooMany, reasonSender, reasonBadAnswer,
}

// checkPeer returns why p is not acceptable, or "" when it is. The ID's
// form is checked by the wire decoder, not here: local callers (membership,
// tests, the simulator) may use any non-empty ID.
func checkPeer(p Peer) string {
	switch {
	case p.ID == "":
		return reasonBadID
	case len(p.Addrs) > MaxAddrs:
		return reasonAddrs
	case len(p.Zone) > MaxZoneLen:
		return reasonZone
	case math.IsNaN(p.Capacity) || p.Capacity <= 0 || p.Capacity > MaxCapacity:
		return reasonCapacity
	}
	for _, a := range p.Addrs {
		if len(a) > MaxAddrLen {
			return reasonAddrs
		}
	}
	return ""
}

// normalise fills the defaults of a locally given peer.
func normalise(p Peer) Peer {
	if p.Capacity == 0 {
		p.Capacity = 1
	}
	return p
}

// peerRec is one known peer and its tokens. It is immutable once made, so
// view snapshots can share it without locks; gone is the exception, read
// and written only under the table's lock.
type peerRec struct {
	Peer
	toks []uint64 // ascending
	gone bool     // removed from the table; its tokens leave the view at the next rebuild
}

// newRec derives p's tokens on a ring of vnodes tokens per unit of capacity.
func newRec(p Peer, vnodes int) *peerRec {
	return &peerRec{Peer: p, toks: ring.Tokens(p.ID, ring.TokenCount(p.Capacity, vnodes))}
}

// withPeer returns a record for p, reusing r's tokens when the capacity is
// unchanged.
func (r *peerRec) withPeer(p Peer, vnodes int) *peerRec {
	if p.Capacity == r.Capacity {
		return &peerRec{Peer: p, toks: r.toks}
	}
	return newRec(p, vnodes)
}

// same reports whether p carries exactly what r records.
func (r *peerRec) same(p Peer) bool {
	return r.ID == p.ID && r.Zone == p.Zone && r.Capacity == p.Capacity && slices.Equal(r.Addrs, p.Addrs)
}

// dist returns the clockwise distance from pos to r's first token at or
// after pos (succ) and from r's last token before pos to pos (pred).
func (r *peerRec) dist(pos uint64) (succ, pred uint64) {
	i, _ := slices.BinarySearch(r.toks, pos)
	n := len(r.toks)
	if n == 0 {
		return math.MaxUint64, math.MaxUint64
	}
	s, p := i%n, (i+n-1)%n
	return r.toks[s] - pos, pos - r.toks[p]
}

// toInfo is the wire form of r.
func (r *peerRec) toInfo() *pb.PeerInfo {
	return &pb.PeerInfo{Id: []byte(r.ID), Addrs: r.Addrs, Zone: r.Zone, Capacity: r.Capacity}
}

// infos is the wire form of recs.
func infos(recs []*peerRec) []*pb.PeerInfo {
	if len(recs) == 0 {
		return nil
	}
	out := make([]*pb.PeerInfo, len(recs))
	for i, r := range recs {
		out[i] = r.toInfo()
	}
	return out
}

// peerFromInfo decodes and checks a remote PeerInfo. It returns the reason
// for refusing it, or "".
func peerFromInfo(m *pb.PeerInfo) (Peer, string) {
	if m == nil {
		return Peer{}, reasonBadID
	}
	id, err := peer.IDFromBytes(m.GetId())
	if err != nil {
		return Peer{}, reasonBadID
	}
	p := Peer{ID: id, Zone: m.GetZone(), Capacity: m.GetCapacity()}
	if len(m.GetAddrs()) > 0 {
		p.Addrs = m.GetAddrs()
	}
	if reason := checkPeer(p); reason != "" {
		return Peer{}, reason
	}
	// The message may be shared with its sender (an in-memory transport
	// without cloning): keep a copy of the slice, never the message's.
	p.Addrs = slices.Clone(p.Addrs)
	return p, ""
}

// decodeID decodes a remote peer ID.
func decodeID(b []byte) (peer.ID, bool) {
	id, err := peer.IDFromBytes(b)
	return id, err == nil
}
