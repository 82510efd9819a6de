package memnet

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
)

// Endpoint is one node's dht.Transport on a Network.
type Endpoint struct {
	net *Network
	id  peer.ID

	mu       sync.RWMutex
	handlers map[dht.Protocol]handlerEntry
	addrs    map[peer.ID][]string // recorded by AddAddrs
}

var _ dht.Transport = (*Endpoint)(nil)

type handlerEntry struct {
	newReq func() proto.Message
	h      dht.Handler
}

// Self returns the endpoint's peer ID.
func (e *Endpoint) Self() peer.ID { return e.id }

// Network returns the network the endpoint belongs to.
func (e *Endpoint) Network() *Network { return e.net }

// Handle registers h for protocol p, replacing any earlier handler.
func (e *Endpoint) Handle(p dht.Protocol, newReq func() proto.Message, h dht.Handler) {
	e.mu.Lock()
	e.handlers[p] = handlerEntry{newReq: newReq, h: h}
	e.mu.Unlock()
}

// AddAddrs records addrs for id; Addrs returns them. memnet routes by ID and
// does not need them.
func (e *Endpoint) AddAddrs(id peer.ID, addrs []string) {
	e.mu.Lock()
	e.addrs[id] = append([]string(nil), addrs...)
	e.mu.Unlock()
}

// Addrs returns the addresses last recorded for id by AddAddrs.
func (e *Endpoint) Addrs(id peer.ID) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return append([]string(nil), e.addrs[id]...)
}

// LocalAddrs returns the fake address "/memnet/<id>".
func (e *Endpoint) LocalAddrs() []string {
	return []string{"/memnet/" + e.id.String()}
}

func (e *Endpoint) handler(p dht.Protocol) (handlerEntry, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	h, ok := e.handlers[p]
	return h, ok
}

// Call delivers req to peer `to` and runs its handler for p synchronously.
// See the package documentation for when it fails.
func (e *Endpoint) Call(ctx context.Context, to peer.ID, p dht.Protocol, req, resp proto.Message) (err error) {
	n := e.net
	n.countCall(p)
	defer func() {
		if err != nil {
			n.failures.Add(1)
		}
	}()
	if err := ctx.Err(); err != nil {
		return dht.NotSent("%s: %v", to, err)
	}
	r := n.route(e.id, to)
	if r.target == nil {
		return dht.NotSent("%s: %s", to, r.reason)
	}
	he, ok := r.target.handler(p)
	if !ok {
		return dht.NotSent("%s: no handler for %s", to, p)
	}
	in, err := n.carry(req, he.newReq)
	if err != nil {
		return err
	}
	out, err := invoke(ctx, he.h, e.id, in)
	if err != nil {
		return &dht.RemoteError{Peer: to.String(), Message: err.Error()}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %s: answer after deadline: %v", dht.ErrUnreachable, to, err)
	}
	if r.replyLost {
		return fmt.Errorf("%w: %s: answer link blocked", dht.ErrUnreachable, to)
	}
	if out == nil {
		proto.Reset(resp)
		return nil
	}
	return n.deliver(out, resp, to)
}

// carry turns the caller's request into the message the handler sees.
func (n *Network) carry(req proto.Message, newReq func() proto.Message) (proto.Message, error) {
	if !n.opts.Clone {
		return req, nil
	}
	b, err := n.marshal(req)
	if err != nil {
		return nil, err
	}
	in := newReq()
	if err := proto.Unmarshal(b, in); err != nil {
		return nil, fmt.Errorf("memnet: request does not decode as %T: %w", in, err)
	}
	return in, nil
}

// deliver copies the handler's answer into the caller's resp.
func (n *Network) deliver(out, resp proto.Message, from peer.ID) error {
	if !n.opts.Clone {
		if out.ProtoReflect().Descriptor() != resp.ProtoReflect().Descriptor() {
			return &dht.RemoteError{Peer: from.String(),
				Message: fmt.Sprintf("answer is %T, caller expects %T", out, resp)}
		}
		proto.Reset(resp)
		proto.Merge(resp, out)
		return nil
	}
	b, err := n.marshal(out)
	if err != nil {
		return err
	}
	proto.Reset(resp)
	if err := proto.Unmarshal(b, resp); err != nil {
		return &dht.RemoteError{Peer: from.String(),
			Message: fmt.Sprintf("answer does not decode as %T: %v", resp, err)}
	}
	return nil
}

func (n *Network) marshal(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("memnet: marshal %T: %w", m, err)
	}
	if max := n.opts.MaxMessageSize; max > 0 && len(b) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", dht.ErrMessageTooLarge, len(b), max)
	}
	return b, nil
}

// invoke runs h and turns a panic into an error, so a broken handler fails
// the call instead of the test binary.
func invoke(ctx context.Context, h dht.Handler, from peer.ID, req proto.Message) (out proto.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(ctx, from, req)
}
