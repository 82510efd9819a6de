package dht

import (
	"errors"
	"fmt"
)

// Errors shared by the dht packages and their implementations. Callers test
// for them with errors.Is.
var (
	// ErrNotFound: the key has no live record (never written, deleted, or expired).
	ErrNotFound = errors.New("dht: key not found")
	// ErrClosed: the component was used after Close.
	ErrClosed = errors.New("dht: closed")
	// ErrUnreachable: a peer could not be dialled or did not answer in time.
	ErrUnreachable = errors.New("dht: peer unreachable")
	// ErrNotSent is wrapped together with ErrUnreachable when the request
	// certainly never reached the peer's handler: the peer could not be
	// connected, the stream could not be opened, the peer does not speak
	// the protocol, or ctx ended before anything was sent. Such a request
	// can go to another peer. An ErrUnreachable without it leaves open
	// whether the peer acted on the request.
	ErrNotSent = errors.New("dht: request not sent")
	// ErrMessageTooLarge: a peer message exceeds the protocol's maximum size.
	ErrMessageTooLarge = errors.New("dht: message too large")
	// ErrCorruptRecord: stored or received record bytes do not decode.
	ErrCorruptRecord = errors.New("dht: corrupt record")
	// ErrRecordTooLarge: record bytes exceed MaxRecordSize.
	ErrRecordTooLarge = errors.New("dht: record too large")
)

// NotSent returns an error wrapping ErrUnreachable and ErrNotSent, for a
// request that certainly never reached the peer's handler; format and args
// describe it as fmt.Errorf does (%w included).
func NotSent(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %w", ErrUnreachable, ErrNotSent, fmt.Errorf(format, args...))
}

// RemoteError is returned by Transport.Call when the peer received the
// request and answered with an error.
type RemoteError struct {
	Peer    string // peer ID, printable form
	Message string
}

func (e *RemoteError) Error() string { return "dht: peer " + shortID(e.Peer) + ": " + e.Message }

func shortID(s string) string {
	if len(s) > 12 {
		return s[len(s)-8:]
	}
	return s
}
