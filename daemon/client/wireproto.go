package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The wire protocol: the key-value operations of the HTTP API (GET, PUT
// and DELETE /v1/kv/{key}) as length-prefixed binary frames on one TCP
// connection, many requests in flight at once, answered in any order.
// It is served on the API's own address: a connection that opens with
// WireMagic speaks it, any other is HTTP.
//
// After the magic, the client sends request frames and the daemon answers
// each with a response frame carrying the request's ID. A frame is a
// 4-byte big-endian body length and a body of protobuf-encoded fields
// (see the field numbers below), so that either side can add fields that
// the other skips. Status codes and error messages are the HTTP API's.
// A frame the daemon cannot read gets a response with ID 0 and status 400
// or 413, and the daemon then closes the connection.

// WireMagic opens a wire-protocol connection: the last byte is the
// protocol's version.
const WireMagic = "RKV\x01"

// WireOp is a wire request's operation.
type WireOp uint64

const (
	WireGet    WireOp = 1
	WirePut    WireOp = 2
	WireDelete WireOp = 3
	// WirePing is answered at once, with no key, store or cluster work:
	// a round trip to the daemon and nothing else.
	WirePing WireOp = 4
)

func (op WireOp) String() string {
	switch op {
	case WireGet:
		return "get"
	case WirePut:
		return "put"
	case WireDelete:
		return "delete"
	case WirePing:
		return "ping"
	}
	return fmt.Sprintf("op %d", uint64(op))
}

// WireRequest is one request frame.
type WireRequest struct {
	ID  uint64
	Op  WireOp
	Key []byte
	// Value is a put's value.
	Value []byte
	// Quorum is W for a write and R for a read; 0 is the cluster default.
	Quorum uint64
	// Consistency is one, quorum or all, instead of Quorum.
	Consistency string
	// TTL is a put's time to live; 0 never expires.
	TTL time.Duration
	// Context is the causal context of a previous read, for a write.
	Context string
}

// WireSibling is one version of a value in a WireResponse.
type WireSibling struct {
	Value     []byte
	Timestamp int64 // Unix nanoseconds
	ExpiresAt int64 // Unix nanoseconds; 0 never expires
}

// WireResponse is one response frame.
type WireResponse struct {
	ID uint64
	// Status is the HTTP API's status code for the same request: 200, or
	// 404 for a missing key, 400 for a bad request, 503 for a missed
	// quorum, and so on.
	Status int
	// Error is the HTTP API's error message when Status is not 200.
	Error   string
	Context string
	// Acks, Hinted and Coordinator describe a write; Answered and Hinted
	// a read.
	Acks        int
	Hinted      int
	Answered    int
	Coordinator string
	Siblings    []WireSibling
}

// Field numbers of the frames' bodies.
const (
	wfID          = 1
	wfOp          = 2 // request
	wfKey         = 3
	wfValue       = 4
	wfQuorum      = 5
	wfConsistency = 6
	wfTTL         = 7
	wfContext     = 8

	wfStatus      = 2 // response
	wfError       = 3
	wfRespContext = 4
	wfAcks        = 5
	wfHinted      = 6
	wfAnswered    = 7
	wfCoordinator = 8
	wfSibling     = 9

	wfSibValue     = 1 // sibling
	wfSibTimestamp = 2
	wfSibExpires   = 3
)

// wireHeader is the size of a frame's length prefix.
const wireHeader = 4

// ErrFrameTooLarge is returned by ReadWireFrame for a frame over its limit.
var ErrFrameTooLarge = errors.New("wire frame too large")

// AppendWireRequest appends r's frame to b.
func AppendWireRequest(b []byte, r *WireRequest) []byte {
	b, at := beginFrame(b)
	b = appendUint(b, wfID, r.ID)
	b = appendUint(b, wfOp, uint64(r.Op))
	b = protowire.AppendTag(b, wfKey, protowire.BytesType)
	b = protowire.AppendBytes(b, r.Key)
	if r.Op == WirePut {
		b = protowire.AppendTag(b, wfValue, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Value)
	}
	b = appendUint(b, wfQuorum, r.Quorum)
	b = appendString(b, wfConsistency, r.Consistency)
	b = appendUint(b, wfTTL, uint64(max(r.TTL, 0)))
	b = appendString(b, wfContext, r.Context)
	return endFrame(b, at)
}

// AppendWireResponse appends r's frame to b.
func AppendWireResponse(b []byte, r *WireResponse) []byte {
	b, at := beginFrame(b)
	b = appendUint(b, wfID, r.ID)
	b = appendUint(b, wfStatus, uint64(r.Status))
	b = appendString(b, wfError, r.Error)
	b = appendString(b, wfRespContext, r.Context)
	b = appendUint(b, wfAcks, uint64(r.Acks))
	b = appendUint(b, wfHinted, uint64(r.Hinted))
	b = appendUint(b, wfAnswered, uint64(r.Answered))
	b = appendString(b, wfCoordinator, r.Coordinator)
	for _, s := range r.Siblings {
		n := protowire.SizeTag(wfSibValue) + protowire.SizeBytes(len(s.Value))
		if s.Timestamp != 0 {
			n += protowire.SizeTag(wfSibTimestamp) + protowire.SizeVarint(uint64(s.Timestamp))
		}
		if s.ExpiresAt != 0 {
			n += protowire.SizeTag(wfSibExpires) + protowire.SizeVarint(uint64(s.ExpiresAt))
		}
		b = protowire.AppendTag(b, wfSibling, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = protowire.AppendTag(b, wfSibValue, protowire.BytesType)
		b = protowire.AppendBytes(b, s.Value)
		b = appendUint(b, wfSibTimestamp, uint64(s.Timestamp))
		b = appendUint(b, wfSibExpires, uint64(s.ExpiresAt))
	}
	return endFrame(b, at)
}

func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0), len(b)
}

func endFrame(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-wireHeader))
	return b
}

// appendUint appends field num with v, unless v is 0.
func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// appendString appends field num with s, unless s is empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

// ReadWireFrame reads one frame's body from r into buf (grown as needed)
// and returns it. A body over limit bytes is not read: the error is
// ErrFrameTooLarge, and the stream cannot be read further.
func ReadWireFrame(r io.Reader, buf []byte, limit int) ([]byte, error) {
	var h [wireHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrFrameTooLarge, n, limit)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// DecodeWireRequest decodes a request frame's body. Key, Value and Context
// are copies: b may be reused.
func DecodeWireRequest(b []byte) (WireRequest, error) {
	var r WireRequest
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case wfID:
			r.ID = v
		case wfOp:
			r.Op = WireOp(v)
		case wfKey:
			r.Key = append([]byte(nil), data...)
		case wfValue:
			r.Value = append([]byte{}, data...)
		case wfQuorum:
			r.Quorum = v
		case wfConsistency:
			r.Consistency = string(data)
		case wfTTL:
			if v > uint64(1<<63-1) {
				return errors.New("ttl out of range")
			}
			r.TTL = time.Duration(v)
		case wfContext:
			r.Context = string(data)
		}
		return nil
	}, requestFieldTypes)
	return r, err
}

// DecodeWireResponse decodes a response frame's body. Sibling values
// are copies: b may be reused.
func DecodeWireResponse(b []byte) (WireResponse, error) {
	var r WireResponse
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case wfID:
			r.ID = v
		case wfStatus:
			r.Status = int(min(v, 999))
		case wfError:
			r.Error = string(data)
		case wfRespContext:
			r.Context = string(data)
		case wfAcks:
			r.Acks = int(min(v, 1<<31))
		case wfHinted:
			r.Hinted = int(min(v, 1<<31))
		case wfAnswered:
			r.Answered = int(min(v, 1<<31))
		case wfCoordinator:
			r.Coordinator = string(data)
		case wfSibling:
			s, err := decodeSibling(data)
			if err != nil {
				return err
			}
			r.Siblings = append(r.Siblings, s)
		}
		return nil
	}, responseFieldTypes)
	return r, err
}

func decodeSibling(b []byte) (WireSibling, error) {
	s := WireSibling{Value: []byte{}}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case wfSibValue:
			s.Value = append([]byte{}, data...)
		case wfSibTimestamp:
			s.Timestamp = int64(v)
		case wfSibExpires:
			s.ExpiresAt = int64(v)
		}
		return nil
	}, siblingFieldTypes)
	return s, err
}

// The wire type each known field must have; unknown fields are skipped.
var (
	requestFieldTypes = map[protowire.Number]protowire.Type{
		wfID: protowire.VarintType, wfOp: protowire.VarintType, wfKey: protowire.BytesType,
		wfValue: protowire.BytesType, wfQuorum: protowire.VarintType, wfConsistency: protowire.BytesType,
		wfTTL: protowire.VarintType, wfContext: protowire.BytesType,
	}
	responseFieldTypes = map[protowire.Number]protowire.Type{
		wfID: protowire.VarintType, wfStatus: protowire.VarintType, wfError: protowire.BytesType,
		wfRespContext: protowire.BytesType, wfAcks: protowire.VarintType, wfHinted: protowire.VarintType,
		wfAnswered: protowire.VarintType, wfCoordinator: protowire.BytesType, wfSibling: protowire.BytesType,
	}
	siblingFieldTypes = map[protowire.Number]protowire.Type{
		wfSibValue: protowire.BytesType, wfSibTimestamp: protowire.VarintType, wfSibExpires: protowire.VarintType,
	}
)

// eachField calls fn with every field of b: v for a varint, data for
// bytes. A known field of the wrong type, or a malformed one, is an error.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error, types map[protowire.Number]protowire.Type) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad field tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		want, known := types[num]
		if known && want != typ {
			return fmt.Errorf("field %d has wire type %d, not %d", num, typ, want)
		}
		var v uint64
		var data []byte
		switch {
		case known && typ == protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case known && typ == protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if known {
			if err := fn(num, typ, v, data); err != nil {
				return fmt.Errorf("field %d: %w", num, err)
			}
		}
	}
	return nil
}

// WireWriter writes frames to a connection from many goroutines at once,
// in as few writes as it can: a frame is appended to a buffer, and the
// goroutine that finds no write in progress writes the buffer, then what
// the others appended meanwhile, until none is left. Under load, frames
// leave in batches with no goroutine of its own to wake per frame; alone,
// a frame leaves at once.
type WireWriter struct {
	conn    net.Conn
	timeout time.Duration

	mu      sync.Mutex
	buf     []byte
	spare   []byte
	writing bool
	err     error
}

// NewWireWriter returns a writer to conn whose every write must end
// within timeout.
func NewWireWriter(conn net.Conn, timeout time.Duration) *WireWriter {
	return &WireWriter{conn: conn, timeout: timeout}
}

// Send appends a frame with appendFrame and sees it written, by this
// goroutine or by the one writing already. It returns the error of an
// earlier write that failed, after which nothing more is sent.
func (w *WireWriter) Send(appendFrame func([]byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.buf = appendFrame(w.buf)
	if w.writing {
		return nil
	}
	w.writing = true
	// Let the goroutines that are ready to run append their frames first.
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	for len(w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		_, err := w.conn.Write(out)
		w.mu.Lock()
		w.spare = out
		w.err = err
	}
	w.writing = false
	return w.err
}
