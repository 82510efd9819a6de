package ringtest_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

func TestPeerID(t *testing.T) {
	tests := []struct {
		seed uint64
		i    int
		want string
	}{
		{1, 0, "12D3KooWQhBRK3ajNMJUW1cZYBLR97n4nu7Hp2vmS68Dr1Yh4C7C"},
	}
	for _, tt := range tests {
		if got := ringtest.PeerID(tt.seed, tt.i).String(); got != tt.want {
			t.Errorf("PeerID(%d, %d) = %s, want %s", tt.seed, tt.i, got, tt.want)
		}
	}
	seen := map[peer.ID]bool{}
	for _, seed := range []uint64{1, 2} {
		for _, id := range ringtest.PeerIDs(seed, 50) {
			if seen[id] {
				t.Fatalf("seed %d: repeated ID %s", seed, id)
			}
			seen[id] = true
			if err := id.Validate(); err != nil {
				t.Fatalf("invalid ID %s: %v", id, err)
			}
			pub, err := id.ExtractPublicKey()
			if err != nil || !id.MatchesPublicKey(pub) {
				t.Fatalf("ID %s does not embed its public key: %v", id, err)
			}
		}
	}
}

func TestNodes(t *testing.T) {
	tests := []struct {
		count, zones int
		wantZones    []string
	}{
		{3, 0, []string{"", "", ""}},
		{4, 2, []string{"z0", "z1", "z0", "z1"}},
		{2, 5, []string{"z0", "z1"}},
	}
	for _, tt := range tests {
		nodes := ringtest.Nodes(9, tt.count, tt.zones)
		if len(nodes) != tt.count {
			t.Fatalf("Nodes(%d, %d): %d nodes", tt.count, tt.zones, len(nodes))
		}
		for i, n := range nodes {
			if n.Zone != tt.wantZones[i] || n.Capacity != 1 || n.ID != ringtest.PeerID(9, i) {
				t.Errorf("Nodes(%d, %d)[%d] = %+v", tt.count, tt.zones, i, n)
			}
		}
	}
}
