package replica

import (
	"encoding/binary"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Store key layout. Every key starts with a one-byte kind. Data and hint
// keys then carry the ring position big-endian, so one ring arc is one
// contiguous key range and the store's order is the ring's order.
//
//	'd' pos(8) key                       a replica's record of key
//	'h' pos(8) len(key)(2) key target    a record held for target, a replica that was down
const (
	kindData byte = 'd'
	kindHint byte = 'h'
)

// DataKey is the store key of a replica's record for key at pos.
func DataKey(pos uint64, key []byte) []byte {
	b := make([]byte, 9+len(key))
	b[0] = kindData
	binary.BigEndian.PutUint64(b[1:9], pos)
	copy(b[9:], key)
	return b
}

// ParseDataKey splits a data store key into position and user key.
func ParseDataKey(sk []byte) (pos uint64, key []byte, ok bool) {
	if len(sk) < 10 || sk[0] != kindData {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(sk[1:9]), sk[9:], true
}

// DataPrefix is the prefix of every data key, for counting.
func DataPrefix() []byte { return []byte{kindData} }

// HintPrefix is the prefix of every hint key.
func HintPrefix() []byte { return []byte{kindHint} }

// DataSpan returns the store key range [start, end) holding positions in
// [from, to], inclusive on both ends; to < from is not allowed (split
// wrapping arcs first). end is nil when to is the last position.
func DataSpan(from, to uint64) (start, end []byte) {
	start = make([]byte, 9)
	start[0] = kindData
	binary.BigEndian.PutUint64(start[1:], from)
	if to == ^uint64(0) {
		return start, []byte{kindData + 1}
	}
	end = make([]byte, 9)
	end[0] = kindData
	binary.BigEndian.PutUint64(end[1:], to+1)
	return start, end
}

// hintKeyPrefix is the prefix of every hint for key at pos.
func hintKeyPrefix(pos uint64, key []byte) []byte {
	b := make([]byte, 11+len(key))
	b[0] = kindHint
	binary.BigEndian.PutUint64(b[1:9], pos)
	binary.BigEndian.PutUint16(b[9:11], uint16(len(key)))
	copy(b[11:], key)
	return b
}

func hintKey(pos uint64, key []byte, target peer.ID) []byte {
	return append(hintKeyPrefix(pos, key), target...)
}

func parseHintKey(sk []byte) (pos uint64, key []byte, target peer.ID, ok bool) {
	if len(sk) < 11 || sk[0] != kindHint {
		return 0, nil, "", false
	}
	pos = binary.BigEndian.Uint64(sk[1:9])
	n := int(binary.BigEndian.Uint16(sk[9:11]))
	if len(sk) < 11+n+1 {
		return 0, nil, "", false
	}
	return pos, sk[11 : 11+n], peer.ID(sk[11+n:]), true
}
