package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
)

// Call sends req to peer `to` on protocol p and decodes the answer into
// resp. See the package doc for the error mapping and the retry of stale
// pooled streams (requests must be idempotent).
func (t *Transport) Call(ctx context.Context, to peer.ID, p dht.Protocol, req, resp proto.Message) error {
	start := time.Now()
	err := t.call(ctx, to, p, req, resp)
	t.m.call(string(p), err, start)
	return err
}

func (t *Transport) call(ctx context.Context, to peer.ID, p dht.Protocol, req, resp proto.Message) error {
	if t.closed.Load() {
		return dht.ErrClosed
	}
	payload, err := marshal(req, t.cfg.MaxMessageSize)
	if err != nil {
		return fmt.Errorf("p2p: request to %s on %s: %w", short(to), p, err)
	}
	defer putPayload(payload)
	if to == t.h.ID() {
		return t.callLocal(ctx, p, *payload, resp)
	}
	if err := ctx.Err(); err != nil {
		return notSent(to, p, "not sent", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.CallTimeout)
		defer cancel()
	}
	key := poolKey{peer: to, proto: p}
	if cs := t.pool.get(key, time.Now()); cs != nil {
		stale, err := t.exchange(ctx, key, cs, *payload, resp)
		if !stale {
			return err
		}
		t.m.retried(string(p))
		t.log.Debug("pooled stream was closed by the peer, retrying on a new one",
			"peer", to, "protocol", p, "err", err)
	}
	cs, err := t.open(ctx, to, p)
	if err != nil {
		return err
	}
	_, err = t.exchange(ctx, key, cs, *payload, resp)
	return err
}

// exchange runs one request/response on cs and then pools, closes or resets
// it. stale reports a pooled stream the peer had closed while ctx was still
// live, so that it certainly did not take the request: the caller sends it
// again on a fresh stream. A request the peer may have taken is never sent
// twice: a restarted peer would act on it again.
func (t *Transport) exchange(ctx context.Context, key poolKey, cs *clientStream, payload []byte, resp proto.Message) (stale bool, err error) {
	deadline, _ := ctx.Deadline()
	_ = cs.s.SetDeadline(deadline)
	// Deadlines end a stuck read on transports that support them; resetting
	// the stream when ctx ends covers cancellation and the rest (mocknet).
	stop := context.AfterFunc(ctx, func() { _ = cs.s.Reset() })
	status, body, got, err := cs.roundTrip(payload, t.cfg.MaxMessageSize)
	interrupted := !stop()
	if err != nil {
		// The peer's handler cannot have run on a request that was not all
		// written, or that the peer answered with a clean close (a server
		// closes a stream only between requests; after reading one it
		// answers or resets) or a refused protocol.
		notTaken := got == unwritten || (got == written && errors.Is(err, io.EOF)) || isNotSupported(err)
		stale = cs.pooled && notTaken && ctx.Err() == nil && !isTimeout(err)
		conn := cs.s.Conn()
		cs.reset()
		if stale {
			t.pool.dropConn(conn) // its other idle streams are likely closed too
			return true, err
		}
		return false, t.exchangeError(ctx, key, err, !notTaken)
	}
	err = decode(key.peer, status, body, resp)
	cs.buf = keep(body)
	// Bytes after the response break the one-answer-per-request rule: the
	// stream is out of step and must not serve the next call.
	if interrupted || errors.Is(err, ErrBadResponse) || cs.r.Buffered() > 0 {
		cs.reset()
		return false, err
	}
	if !t.pool.put(key, cs, time.Now()) {
		cs.close()
	}
	return false, err
}

// open connects to the peer if needed and opens a stream on protocol p.
// Its failures wrap dht.ErrNotSent.
func (t *Transport) open(ctx context.Context, to peer.ID, p dht.Protocol) (*clientStream, error) {
	if t.h.Network().Connectedness(to) != network.Connected {
		dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
		err := t.h.Connect(dctx, peer.AddrInfo{ID: to})
		cancel()
		if err != nil {
			return nil, notSent(to, p, "connect", ctxErr(ctx, err))
		}
	}
	s, err := t.h.NewStream(ctx, to, protocol.ID(p))
	if err != nil {
		if isNotSupported(err) {
			return nil, notSent(to, p, "protocol not supported", err)
		}
		return nil, notSent(to, p, "open stream", ctxErr(ctx, err))
	}
	t.m.streamOpened(string(p))
	return newClientStream(s), nil
}

// exchangeError maps a failed write or read to the caller-visible error,
// wrapping dht.ErrNotSent unless the request may have reached the peer's
// handler (maybeTaken).
func (t *Transport) exchangeError(ctx context.Context, key poolKey, err error, maybeTaken bool) error {
	to, p := key.peer, key.proto
	fail := notSent
	if maybeTaken {
		fail = unreachable
	}
	switch {
	case errors.Is(err, dht.ErrMessageTooLarge):
		return fmt.Errorf("p2p: response from %s on %s: %w", short(to), p, err)
	case errors.Is(err, errMalformed):
		return badResponse(to, err)
	case isNotSupported(err):
		return fail(to, p, "protocol not supported", err)
	case ctx.Err() != nil:
		return fail(to, p, "no answer", ctx.Err())
	case isTimeout(err): // the stream deadline, which is ctx's, fired first
		return fail(to, p, "no answer", context.DeadlineExceeded)
	case errors.Is(err, network.ErrReset):
		return fail(to, p, "stream reset", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fail(to, p, "stream closed", err)
	}
	return fail(to, p, "exchange failed", err)
}

// decode turns a response into resp or a *dht.RemoteError.
func decode(from peer.ID, status byte, body []byte, resp proto.Message) error {
	if status == statusError {
		return &dht.RemoteError{Peer: from.String(), Message: strings.ToValidUTF8(string(body), "\uFFFD")}
	}
	if err := proto.Unmarshal(body, resp); err != nil {
		return badResponse(from, err)
	}
	return nil
}

// callLocal serves a call to Self through the registered handler, with the
// same encoding, limits and error mapping as a remote call.
func (t *Transport) callLocal(ctx context.Context, p dht.Protocol, payload []byte, resp proto.Message) error {
	self := t.h.ID()
	r := t.route(p)
	if r == nil {
		return notSent(self, p, "protocol not supported", msmux.ErrNotSupported[protocol.ID]{})
	}
	h := r.h.Load()
	req := h.newReq()
	if err := proto.Unmarshal(payload, req); err != nil {
		return notSent(self, p, "request does not decode", err)
	}
	status, out := t.answer(ctx, p, h, self, req)
	defer putPayload(out)
	return decode(self, status, *out, resp)
}

func unreachable(to peer.ID, p dht.Protocol, reason string, err error) error {
	return fmt.Errorf("%w: peer %s on %s: %s: %w", dht.ErrUnreachable, short(to), p, reason, err)
}

// notSent is unreachable for a request that certainly did not reach the
// peer's handler.
func notSent(to peer.ID, p dht.Protocol, reason string, err error) error {
	return dht.NotSent("peer %s on %s: %s: %w", short(to), p, reason, err)
}

func badResponse(from peer.ID, err error) error {
	return fmt.Errorf("%w: peer %s: %w: %v", dht.ErrUnreachable, short(from), ErrBadResponse, err)
}

// ctxErr prefers the context's error, which says timeout or cancel plainly.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// isTimeout reports a stream deadline error. Muxers differ: QUIC wraps
// os.ErrDeadlineExceeded, yamux returns its own error with Timeout() true.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &te) && te.Timeout())
}

func isNotSupported(err error) bool {
	return errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) || errors.Is(err, msmux.ErrNotSupported[string]{})
}

// short is the tail of a peer ID, enough to tell peers apart in messages.
func short(id peer.ID) string {
	s := id.String()
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// outcome is the metrics label of a Call's result.
func outcome(err error) string {
	if err == nil {
		return outcomeOK
	}
	var re *dht.RemoteError
	switch {
	case errors.As(err, &re):
		return outcomeRemoteError
	case errors.Is(err, dht.ErrMessageTooLarge):
		return outcomeTooLarge
	case errors.Is(err, dht.ErrUnreachable):
		return outcomeUnreachable
	case errors.Is(err, dht.ErrClosed):
		return outcomeClosed
	}
	return outcomeOther
}
