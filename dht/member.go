package dht

import (
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/libp2p/go-libp2p/core/peer"
)

// State is a member's place in its life cycle, as the cluster sees it.
type State uint8

// Member states. Joining nodes are streaming their ranges and serve no
// reads yet; Leaving nodes are handing theirs off. Suspect nodes failed a
// probe and are still owners until declared Dead. Left nodes departed
// cleanly. Dead and Left nodes own nothing.
const (
	StateJoining State = iota + 1
	StateNormal
	StateLeaving
	StateSuspect
	StateDead
	StateLeft
)

var stateNames = map[State]string{
	StateJoining: "joining",
	StateNormal:  "normal",
	StateLeaving: "leaving",
	StateSuspect: "suspect",
	StateDead:    "dead",
	StateLeft:    "left",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Live reports whether a member in this state still owns ring ranges.
func (s State) Live() bool {
	return s == StateJoining || s == StateNormal || s == StateLeaving || s == StateSuspect
}

// Member is what the cluster knows about one node.
type Member struct {
	ID    peer.ID
	Addrs []string // dialable multiaddrs, without /p2p/
	Zone  string   // failure domain (rack); "" when unset
	// Capacity weights the node's share of the ring: its token count is
	// ring.TokenCount(Capacity, vnodes). 1 is a standard node.
	Capacity    float64
	State       State
	Incarnation uint64
	StorageUsed int64     // bytes, as last reported by the node
	LastHeard   time.Time // local time of the last message about it (not gossiped)
}

// ActorOf is the version-vector actor ID of a node: a 64-bit hash of its
// peer ID. Collisions between the few replicas of one key are negligible.
func ActorOf(id peer.ID) uint64 { return xxhash.Sum64String(string(id)) }
