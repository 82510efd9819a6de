package dht

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
)

// Protocol names one peer protocol, "/ringkv/<proto>/<semver>".
type Protocol string

// Handler answers one request received from a peer. It returns the response
// message, or an error that the caller receives as a *RemoteError. Handlers
// run concurrently and must not trust req: it comes from the network.
type Handler func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error)

// Transport carries request/response messages between nodes. Implementations
// frame messages with a length prefix, bound their size, put deadlines on
// every exchange and may reuse streams; none of that is visible here.
type Transport interface {
	// Self is the local node's ID.
	Self() peer.ID
	// Call sends req to peer `to` on protocol p and decodes the answer into
	// resp. It fails with an error wrapping ErrUnreachable when the peer
	// cannot be reached or does not answer before ctx ends (also wrapping
	// ErrNotSent when the request certainly did not reach the peer's
	// handler), and with a *RemoteError when the peer answered with an
	// error.
	Call(ctx context.Context, to peer.ID, p Protocol, req, resp proto.Message) error
	// Handle registers h to answer requests on protocol p. newReq returns an
	// empty request message to decode into. Handle is called before the node
	// starts serving; registering a protocol twice replaces the handler.
	Handle(p Protocol, newReq func() proto.Message, h Handler)
	// AddAddrs records dialable addresses (multiaddr strings) of a peer
	// learned from gossip, so Call can reach it.
	AddAddrs(id peer.ID, addrs []string)
	// LocalAddrs returns the local node's dialable addresses as multiaddr
	// strings, for gossip.
	LocalAddrs() []string
}
