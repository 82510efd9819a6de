package replica

import (
	"errors"
	"fmt"
)

// Errors returned to callers of Engine. Test with errors.Is / errors.As.
var (
	// ErrUnavailable: no replica of the key could be reached.
	ErrUnavailable = errors.New("replica: no replica of the key is reachable")
	// ErrTooManySiblings: the write would exceed Config.MaxSiblings.
	ErrTooManySiblings = errors.New("replica: too many siblings")
	// ErrBadRequest: a peer sent a request that breaks the protocol.
	ErrBadRequest = errors.New("replica: bad request")
	// ErrOutcomeUnknown: the replica coordinating a write took it and then
	// stopped answering, so the write may or may not have been applied.
	// It is not retried through another replica: that one would give the
	// same write a second version, which a delete that saw only the first
	// would leave alive.
	ErrOutcomeUnknown = errors.New("replica: write outcome unknown")

	// errEpochsExhausted: this node has taken every actor epoch of every
	// generation (see actor.go) and cannot coordinate a write that needs a
	// fresh actor; it did not act on the write. Matched in RemoteErrors:
	// keep it stable.
	errEpochsExhausted = errors.New("replica: this node has used every actor epoch and does not coordinate writes of keys new to it")

	// errNotServed: this node is shutting down and did not act on the
	// request. Its message is matched in RemoteErrors: keep it stable.
	errNotServed = errors.New("replica: shutting down, request not served")

	// errNotCoordinating: this node does not know the cluster's members
	// yet (Config.Coordinates) and did not act on the write. Its message
	// is matched in callCoordinate: keep it stable.
	errNotCoordinating = errors.New("replica: learning the cluster's members, write not coordinated")
)

// QuorumError reports a write or read that fewer replicas answered than
// it required. The write may still have reached some replicas: its outcome
// is unknown, not failed.
type QuorumError struct {
	Op       string // "write" or "read"
	Acks     int    // replicas that acknowledged or answered
	Required int    // replicas the request asked for (W, R, plus pending)
}

func (e *QuorumError) Error() string {
	verb := "acknowledged"
	if e.Op == "read" {
		verb = "answered"
	}
	return fmt.Sprintf("only %d replica(s) %s the %s, %d required (%s); the cluster may be partitioned or nodes are down: retry, or lower the quorum",
		e.Acks, verb, e.Op, e.Required, quorumName(e.Op))
}

func quorumName(op string) string {
	if op == "read" {
		return "R"
	}
	return "W"
}
