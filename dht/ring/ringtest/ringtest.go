// Package ringtest makes deterministic, real-looking members for tests and
// simulations of the ring and the layers built on it.
//
// Peer IDs are those of Ed25519 keys whose 32-byte seeds are
// SHA-256("ringkv/ringtest" || seed || index), so they have the same form
// (identity multihash of the public key, 38 bytes) and the same spread as
// IDs of real nodes, and the same (seed, index) always gives the same ID.
package ringtest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring"
)

// PeerID returns the peer ID of the Ed25519 key derived from seed and i.
func PeerID(seed uint64, i int) peer.ID {
	id, err := peerID(seed, uint64(i))
	if err != nil {
		// Deriving a key from 32 bytes cannot fail; if it does, libp2p
		// changed and every test using this helper is meaningless.
		panic(fmt.Sprintf("ringtest: derive peer ID: %v", err))
	}
	return id
}

func peerID(seed, i uint64) (peer.ID, error) {
	var in [15 + 16]byte
	copy(in[:], "ringkv/ringtest")
	binary.BigEndian.PutUint64(in[15:], seed)
	binary.BigEndian.PutUint64(in[23:], i)
	s := sha256.Sum256(in[:])
	priv := ed25519.NewKeyFromSeed(s[:])
	pub, err := crypto.UnmarshalEd25519PublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pub)
}

// PeerIDs returns PeerID(seed, i) for i in [0, count).
func PeerIDs(seed uint64, count int) []peer.ID {
	out := make([]peer.ID, count)
	for i := range out {
		out[i] = PeerID(seed, i)
	}
	return out
}

// Nodes returns count members of capacity 1 with IDs PeerID(seed, i),
// spread round-robin over zones named "z0", "z1", ...; zones <= 0 leaves
// every Zone empty.
func Nodes(seed uint64, count, zones int) []ring.Node {
	out := make([]ring.Node, count)
	for i := range out {
		out[i] = ring.Node{ID: PeerID(seed, i), Capacity: 1}
		if zones > 0 {
			out[i].Zone = fmt.Sprintf("z%d", i%zones)
		}
	}
	return out
}
