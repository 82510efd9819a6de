package membership

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
)

// Refusal reasons, the values of the reason label of
// ringkv_membership_refused_total.
const (
	reasonBadID          = "bad_id"
	reasonTooManyAddrs   = "too_many_addrs"
	reasonAddrTooLong    = "addr_too_long"
	reasonZoneTooLong    = "zone_too_long"
	reasonBadCapacity    = "bad_capacity"
	reasonBadState       = "bad_state"
	reasonBadStorage     = "bad_storage"
	reasonBadTokens      = "bad_tokens"
	reasonTooManyUpdates = "too_many_updates"
	reasonTooManyMembers = "too_many_members"
	reasonBadRequest     = "bad_request"
)

var refusalReasons = []string{
	reasonBadID, reasonTooManyAddrs, reasonAddrTooLong, reasonZoneTooLong,
	reasonBadCapacity, reasonBadState, reasonBadStorage, reasonBadTokens,
	reasonTooManyUpdates, reasonTooManyMembers, reasonBadRequest,
}

func memberToPB(u update) *pb.SwimMember {
	return &pb.SwimMember{
		Id:          []byte(u.member.ID),
		Addrs:       u.member.Addrs,
		Zone:        u.member.Zone,
		Capacity:    u.member.Capacity,
		State:       pb.MemberState(u.member.State),
		Incarnation: u.member.Incarnation,
		StorageUsed: u.member.StorageUsed,
		TokenCount:  u.tokenCount,
		TokenDigest: u.tokenDigest,
	}
}

func updatesToPB(us []update) []*pb.SwimUpdate {
	if len(us) == 0 {
		return nil
	}
	out := make([]*pb.SwimUpdate, len(us))
	for i, u := range us {
		out[i] = &pb.SwimUpdate{Member: memberToPB(u)}
		if u.from != "" {
			out[i].From = []byte(u.from)
		}
	}
	return out
}

// checkFields returns the reason m's fields are out of bounds, or "".
func checkFields(m dht.Member) string {
	switch {
	case len(m.Addrs) > MaxAddrs:
		return reasonTooManyAddrs
	case len(m.Zone) > MaxZoneLen:
		return reasonZoneTooLong
	case !(m.Capacity > 0 && m.Capacity <= MaxCapacity): // also refuses NaN
		return reasonBadCapacity
	case m.StorageUsed < 0:
		return reasonBadStorage
	}
	for _, a := range m.Addrs {
		if len(a) > MaxAddrLen {
			return reasonAddrTooLong
		}
	}
	return ""
}

// decodeMember validates a member from the network. It returns the reason
// it is refused, or "".
func (m *Memberlist) decodeMember(pm *pb.SwimMember) (update, string) {
	if pm == nil {
		return update{}, reasonBadRequest
	}
	id, err := peer.IDFromBytes(pm.GetId())
	if err != nil {
		return update{}, reasonBadID
	}
	st := dht.State(pm.GetState())
	if pm.GetState() < pb.MemberState_MEMBER_STATE_JOINING || pm.GetState() > pb.MemberState_MEMBER_STATE_LEFT {
		return update{}, reasonBadState
	}
	u := update{
		member: dht.Member{
			ID:          id,
			Addrs:       pm.GetAddrs(),
			Zone:        pm.GetZone(),
			Capacity:    pm.GetCapacity(),
			State:       st,
			Incarnation: pm.GetIncarnation(),
			StorageUsed: pm.GetStorageUsed(),
		},
		tokenCount:  pm.GetTokenCount(),
		tokenDigest: pm.GetTokenDigest(),
	}
	if reason := checkFields(u.member); reason != "" {
		return update{}, reason
	}
	if m.cfg.Tokens != nil {
		n, d := m.cfg.Tokens(id, u.member.Capacity)
		if n < 0 || int64(n) != int64(u.tokenCount) || d != u.tokenDigest {
			return update{}, reasonBadTokens
		}
	}
	return u, ""
}

// refuse counts and logs one refused input from a peer.
func (m *Memberlist) refuse(from peer.ID, reason string) {
	m.met.refused.WithLabelValues(reason).Inc()
	m.log.Debug("refused remote input", "peer", from.String(), "reason", reason)
}

// decodeUpdates validates piggybacked updates from a peer. More than
// MaxWireUpdates refuses the whole message; an invalid update is refused
// alone.
func (m *Memberlist) decodeUpdates(from peer.ID, ups []*pb.SwimUpdate) ([]update, error) {
	if len(ups) > MaxWireUpdates {
		m.refuse(from, reasonTooManyUpdates)
		return nil, fmt.Errorf("%w: %d updates, limit %d", ErrRefused, len(ups), MaxWireUpdates)
	}
	out := make([]update, 0, len(ups))
	for _, pu := range ups {
		u, reason := m.decodeMember(pu.GetMember())
		if reason == "" && len(pu.GetFrom()) > 0 {
			if u.from, reason = decodeID(pu.GetFrom()); reason != "" {
				u = update{}
			}
		}
		if reason != "" {
			m.refuse(from, reason)
			continue
		}
		if u.from == "" {
			u.from = from
		}
		out = append(out, u)
	}
	return out, nil
}

// decodeMembers validates a push-pull member list; each member is asserted
// by from.
func (m *Memberlist) decodeMembers(from peer.ID, pms []*pb.SwimMember) ([]update, error) {
	if len(pms) > MaxWireMembers {
		m.refuse(from, reasonTooManyMembers)
		return nil, fmt.Errorf("%w: %d members, limit %d", ErrRefused, len(pms), MaxWireMembers)
	}
	out := make([]update, 0, len(pms))
	for _, pm := range pms {
		u, reason := m.decodeMember(pm)
		if reason != "" {
			m.refuse(from, reason)
			continue
		}
		u.from = from
		out = append(out, u)
	}
	return out, nil
}

func decodeID(b []byte) (peer.ID, string) {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return "", reasonBadID
	}
	return id, ""
}

// applyUpdates merges received updates under the lock and delivers the
// events they cause.
func (m *Memberlist) applyUpdates(from peer.ID, us []update) {
	now := m.clk.Now()
	m.mu.Lock()
	m.heardLocked(from, now)
	for _, u := range us {
		m.applyLocked(u, now)
	}
	m.mu.Unlock()
	m.flushEvents()
}

// mergeRemoteLocked merges a peer's full member list. A remote dead claim
// about another member counts as a suspicion by the peer, so the member
// gets a chance to refute before this node believes it.
func (m *Memberlist) mergeRemoteLocked(us []update, now time.Time) {
	for _, u := range us {
		if u.member.State == dht.StateDead && u.member.ID != m.self {
			u.member.State = dht.StateSuspect
		}
		m.applyLocked(u, now)
	}
}
