package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
)

// errInternal is what a caller sees when a handler panicked: the panic value
// and stack stay in the local debug log.
var errInternal = errors.New("internal error")

// handler is one registration of Handle.
type handler struct {
	newReq func() proto.Message
	fn     dht.Handler
}

// route is the stream handler state of one protocol. Handle replaces its
// handler atomically, so streams already open switch to the new one at
// their next request.
type route struct {
	h atomic.Pointer[handler]
}

// Handle registers h to answer requests on protocol p, replacing an earlier
// registration. It panics if newReq or h is nil (a programming error) and
// does nothing after Close.
func (t *Transport) Handle(p dht.Protocol, newReq func() proto.Message, h dht.Handler) {
	if newReq == nil || h == nil {
		panic("p2p: Handle with nil newReq or handler")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		t.log.Debug("handle after close ignored", "protocol", p)
		return
	}
	if r, ok := t.handlers[p]; ok {
		r.h.Store(&handler{newReq: newReq, fn: h})
		return
	}
	r := &route{}
	r.h.Store(&handler{newReq: newReq, fn: h})
	t.handlers[p] = r
	t.h.SetStreamHandler(protocol.ID(p), func(s network.Stream) { t.serve(p, r, s) })
}

// route returns the registration of p, or nil.
func (t *Transport) route(p dht.Protocol) *route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handlers[p]
}

// serve answers requests on one incoming stream until the peer closes it,
// it idles past IdleTimeout, it carries a bad frame, or Close resets it.
func (t *Transport) serve(p dht.Protocol, r *route, s network.Stream) {
	if !t.track(s) {
		_ = s.Reset()
		return
	}
	defer t.untrack(s)
	from := s.Conn().RemotePeer()
	br, bw := getReader(s), getWriter(s)
	defer func() {
		putReader(br)
		putWriter(bw)
	}()
	var buf []byte
	for {
		_ = s.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		b, err := readFrame(br, t.cfg.MaxMessageSize, buf)
		if err != nil {
			t.endStream(p, from, s, err)
			return
		}
		h := r.h.Load()
		req := h.newReq()
		if err := proto.Unmarshal(b, req); err != nil {
			t.rejectStream(p, from, s, reasonUndecodable, err)
			return
		}
		buf = keep(b)
		status, payload := t.answer(t.root, p, h, from, req)
		_ = s.SetWriteDeadline(time.Now().Add(t.cfg.CallTimeout))
		err = writeResponse(bw, status, *payload)
		putPayload(payload)
		if err != nil {
			t.log.Debug("write response failed", "protocol", p, "peer", from, "err", err)
			_ = s.Reset()
			return
		}
	}
}

// endStream ends a stream whose next request could not be read: Close on a
// clean end or an idle timeout, Reset (and count a bad message) otherwise.
func (t *Transport) endStream(p dht.Protocol, from peer.ID, s network.Stream, err error) {
	switch {
	case errors.Is(err, io.EOF):
		_ = s.Close()
	case isTimeout(err):
		t.log.Debug("closing idle stream", "protocol", p, "peer", from)
		_ = s.Close()
	case errors.Is(err, dht.ErrMessageTooLarge):
		t.rejectStream(p, from, s, reasonTooLarge, err)
	case errors.Is(err, errMalformed):
		t.rejectStream(p, from, s, reasonMalformed, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		t.rejectStream(p, from, s, reasonTruncated, err)
	default: // reset by the peer or by Close
		_ = s.Reset()
	}
}

// rejectStream counts a bad request and resets its stream. Logged at debug:
// the cause is remote.
func (t *Transport) rejectStream(p dht.Protocol, from peer.ID, s network.Stream, reason string, err error) {
	t.m.badMessage(string(p), reason)
	t.log.Debug("bad request, resetting stream", "protocol", p, "peer", from, "reason", reason, "err", err)
	_ = s.Reset()
}

// answer runs the handler under a context bounded by CallTimeout and the
// parent, and encodes its outcome as a response status and payload. The
// caller returns the payload with putPayload.
func (t *Transport) answer(parent context.Context, p dht.Protocol, h *handler, from peer.ID, req proto.Message) (byte, *[]byte) {
	ctx, cancel := context.WithTimeout(parent, t.cfg.CallTimeout)
	resp, err := t.invoke(ctx, p, h, from, req)
	cancel()
	if err != nil {
		return errorPayload(errorText(err))
	}
	if resp == nil {
		bp := payloadPool.Get().(*[]byte)
		*bp = (*bp)[:0]
		return statusOK, bp
	}
	bp, err := marshal(resp, t.cfg.MaxMessageSize)
	if err != nil {
		t.log.Debug("cannot send response", "protocol", p, "peer", from, "err", err)
		if errors.Is(err, dht.ErrMessageTooLarge) {
			return errorPayload(fmt.Sprintf("response too large (%d bytes max)", t.cfg.MaxMessageSize))
		}
		return errorPayload(errInternal.Error())
	}
	return statusOK, bp
}

// invoke calls the handler, turning a panic into errInternal.
func (t *Transport) invoke(ctx context.Context, p dht.Protocol, h *handler, from peer.ID, req proto.Message) (resp proto.Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			t.m.panicked(string(p))
			if t.log.Enabled(ctx, slog.LevelDebug) {
				t.log.Debug("handler panicked", "protocol", p, "peer", from,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			resp, err = nil, errInternal
		}
	}()
	return h.fn(ctx, from, req)
}

// errorPayload is a status-1 response carrying msg.
func errorPayload(msg string) (byte, *[]byte) {
	bp := payloadPool.Get().(*[]byte)
	*bp = append((*bp)[:0], msg...)
	return statusError, bp
}
