package client

import (
	"encoding/base64"
	"time"
)

// The JSON schema of the local API. The daemon encodes these types and the
// client decodes them, so both sides share one definition.

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteResponse answers PUT and DELETE /v1/kv/{key}.
type WriteResponse struct {
	Context     string `json:"context"`
	Acks        int    `json:"acks"`
	Hinted      int    `json:"hinted"`
	Coordinator string `json:"coordinator"`
}

// GetResponse is the JSON form of a read (GET with Accept:
// application/json or ?format=json, and the body of a 300 answer).
type GetResponse struct {
	Key      string    `json:"key"`
	Siblings []Sibling `json:"siblings"`
	Context  string    `json:"context"`
	Answered int       `json:"answered"`
	// Hinted is how many of the answers came from fallback nodes standing
	// in for down replicas (a sloppy read quorum).
	Hinted int `json:"hinted"`
	// ExpiresAt is when the key expires: the last of its siblings' expiries,
	// absent when any sibling never expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Sibling is one version of a value. Value holds the bytes as a string when
// they are valid UTF-8; otherwise Encoding is "base64" and Value is their
// standard base64 encoding.
type Sibling struct {
	Value     string    `json:"value"`
	Encoding  string    `json:"encoding,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	// ExpiresAt is when this version expires (its write's TTL); absent
	// for a version that never does.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Bytes decodes the sibling's value.
func (s Sibling) Bytes() ([]byte, error) {
	if s.Encoding == "base64" {
		return base64.StdEncoding.DecodeString(s.Value)
	}
	return []byte(s.Value), nil
}

// Status answers GET /v1/status.
type Status struct {
	PeerID         string            `json:"peer_id"`
	Addrs          []string          `json:"addrs"`
	Zone           string            `json:"zone"`
	Version        string            `json:"version"`
	UptimeSeconds  float64           `json:"uptime_seconds"`
	Keys           int64             `json:"keys"`
	BytesStored    int64             `json:"bytes_stored"`
	ConnectedPeers int               `json:"connected_peers"`
	Members        int               `json:"members"`
	LiveMembers    int               `json:"live_members"`
	Hints          int64             `json:"hints"`
	MeanHops       float64           `json:"mean_hops"`
	Replicas       int               `json:"replicas"`
	WriteQuorum    int               `json:"write_quorum"`
	ReadQuorum     int               `json:"read_quorum"`
	Conflicts      string            `json:"conflicts"`
	Ready          bool              `json:"ready"`
	NotReady       string            `json:"not_ready,omitempty"`
	Bootstrap      []BootstrapStatus `json:"bootstrap"`
}

// BootstrapStatus is one bootstrap peer as the joiner sees it.
type BootstrapStatus struct {
	ID        string    `json:"id"`
	Addrs     []string  `json:"addrs"`
	Connected bool      `json:"connected"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// Peer is one connected libp2p peer (GET /v1/peers).
type Peer struct {
	ID        string   `json:"id"`
	Addrs     []string `json:"addrs"`
	Direction string   `json:"direction"`
	LatencyMS float64  `json:"latency_ms"`
	Member    bool     `json:"member"`
}

// Member is one cluster member as gossip reports it (GET /v1/members).
type Member struct {
	ID          string    `json:"id"`
	Addrs       []string  `json:"addrs"`
	Zone        string    `json:"zone"`
	State       string    `json:"state"`
	Capacity    float64   `json:"capacity"`
	Tokens      int       `json:"tokens"`
	StorageUsed int64     `json:"storage_used"`
	Incarnation uint64    `json:"incarnation"`
	LastHeard   time.Time `json:"last_heard,omitzero"`
	Self        bool      `json:"self,omitempty"`
}

// RingShare is one node's part of the ring (GET /v1/ring).
type RingShare struct {
	ID     string  `json:"id"`
	Zone   string  `json:"zone"`
	State  string  `json:"state"`
	Tokens int     `json:"tokens"`
	Share  float64 `json:"share"`
}

// Location answers GET /v1/locate/{key}.
type Location struct {
	Key      string   `json:"key"`
	Position string   `json:"position"`
	Owner    string   `json:"owner"`
	Replicas []string `json:"replicas"`
	Hops     int      `json:"hops"`
	Path     []Hop    `json:"path,omitempty"`
}

// Hop is one step of a traced lookup.
type Hop struct {
	Peer      string  `json:"peer"`
	Answer    string  `json:"answer"`
	LatencyMS float64 `json:"latency_ms"`
}

// RepairProgress is one line of POST /v1/repair's NDJSON stream.
type RepairProgress struct {
	RangesDone  int    `json:"ranges_done"`
	RangesTotal int    `json:"ranges_total"`
	KeysSent    int64  `json:"keys_sent"`
	KeysRecv    int64  `json:"keys_received"`
	Bytes       int64  `json:"bytes"`
	Done        bool   `json:"done"`
	Error       string `json:"error,omitempty"`
}
