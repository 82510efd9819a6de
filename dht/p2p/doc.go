// Package p2p implements dht.Transport over a libp2p host: request/response
// exchanges of protobuf messages on libp2p streams, one protocol ID per
// dht.Protocol ("/ringkv/<proto>/<semver>").
//
// # Model
//
// A Transport both calls and serves. Handle registers a handler as the host's
// stream handler for a protocol; Call sends a request to a peer and waits for
// its response. A stream carries any number of exchanges, strictly one after
// the other: the client writes a request, reads the response, and may then
// send the next request on the same stream. Between calls the client keeps
// the stream in a pool (per peer and protocol), so a hot path pays for
// opening a stream (and the multistream negotiation) once rather than per
// request: on loopback that is 2-4x more round trips per second.
//
// # Wire format
//
//	request  = uvarint(len) protobuf                  len <= MaxMessageSize
//	response = status uvarint(len) payload            status 0: payload is the protobuf response
//	                                                  status 1: payload is a UTF-8 error message <= 1 KiB
//
// Writes go through a bufio.Writer and one Flush per message; reads through
// a bufio.Reader. Every length is checked against its limit as soon as its
// varint is read, before any allocation, and a large frame's buffer grows
// only as its bytes arrive.
//
// # Limits and deadlines
//
//   - A request over MaxMessageSize fails with dht.ErrMessageTooLarge before
//     anything is sent. A response over the caller's MaxMessageSize fails the
//     call with dht.ErrMessageTooLarge. A handler's response over the
//     server's limit is answered as a remote error.
//   - Each Call is bounded by its ctx, or by CallTimeout when ctx has no
//     deadline. The deadline is set on the stream and the stream is reset
//     when ctx ends, so cancellation works on every transport. Connecting to
//     a peer that is not connected is also bounded by DialTimeout, using
//     the addresses in the peerstore (AddAddrs puts gossip's there for an
//     hour, refreshed each time they are added).
//   - The server waits at most IdleTimeout for the next request on a stream
//     and then closes it; runs each handler under a context bounded by
//     CallTimeout and cancelled by Close; and writes each response under a
//     CallTimeout write deadline. The wire carries no deadline: a client that
//     gives up does not cancel the handler before that bound.
//   - A frame that is too large, truncated or does not decode resets the
//     stream and counts in ringkv_p2p_bad_messages_total. A handler panic is
//     recovered, logged at debug with its stack, counted, and answered as
//     the remote error "internal error"; the node keeps serving.
//
// # Stream reuse and the idempotency contract
//
// After a successful exchange the stream returns to the pool (up to
// MaxIdleStreams idle streams per peer and protocol; 0 disables reuse). A
// pooled stream idle longer than PoolIdleTimeout is closed, not reused;
// PoolIdleTimeout is shorter than the server's IdleTimeout so that the
// client usually gives a stream up first. Any error resets the stream and it
// is never pooled again.
//
// A pooled stream may still have been closed by the peer (idle timeout,
// restart, dropped connection). When a pooled stream fails while ctx is
// still live in a way that shows the peer did not take the request (the
// request could not be written, or the peer had closed the stream cleanly,
// which a server does only between requests), Call retries once on a new
// stream. A request the peer may have taken (the stream was reset after
// the request went out) is never sent again: a peer that restarted in
// between would act on it twice, and a write coordinated twice gets two
// versions.
//
// # Errors
//
// Call returns:
//   - an error wrapping dht.ErrUnreachable, naming the peer and a short
//     reason, when the peer cannot be connected, does not support the
//     protocol, does not answer before ctx ends, resets or closes the stream,
//     or answers with bytes that are not a valid response (those also wrap
//     ErrBadResponse). A timeout also wraps context.DeadlineExceeded, a
//     cancelled ctx context.Canceled. It also wraps dht.ErrNotSent when the
//     peer's handler cannot have seen the request: the connect or the
//     stream open failed, the request was not all written, or the peer
//     refused the protocol or closed the stream cleanly. Pooled streams on
//     connections that have closed are dropped before use, so a call to a
//     peer that died fails at connect, with ErrNotSent.
//   - a *dht.RemoteError when the peer's handler returned an error.
//   - an error wrapping dht.ErrMessageTooLarge for an oversized request or
//     response.
//   - dht.ErrClosed after Close.
//
// A Call to Self is served in-process by the local handler, with the same
// encoding, limits and error mapping.
//
// # Metrics
//
// With Config.Registerer set: ringkv_p2p_calls_total{protocol,outcome},
// ringkv_p2p_call_duration_seconds{protocol},
// ringkv_p2p_streams_opened_total{protocol},
// ringkv_p2p_stale_stream_retries_total{protocol},
// ringkv_p2p_bad_messages_total{protocol,reason} and
// ringkv_p2p_handler_panics_total{protocol}.
package p2p
