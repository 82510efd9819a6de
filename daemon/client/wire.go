package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Wire is a client of the daemon's wire protocol (see wireproto.go): the
// key-value operations over a few connections, each carrying many
// requests at once, the way etcd's gRPC client shares one HTTP/2
// connection. Requests that are sent together leave in one write, and
// answers that arrive together are read in one, where HTTP/1.1 spends a
// connection and a write and two reads on each side per request. Safe for
// concurrent use.
type Wire struct {
	addr     string
	conns    []*wireConn
	next     atomic.Uint32
	maxFrame int
}

const (
	// wireDialTimeout bounds connecting to the daemon.
	wireDialTimeout = 5 * time.Second
	// wireIdle closes a connection left unused this long before it is
	// used again, well before the daemon closes it (after apiIdleTimeout,
	// 2 minutes), so that a request is never sent on a connection the
	// daemon is closing.
	wireIdle = time.Minute
	// wireMaxResponse bounds a response frame: every sibling of a key,
	// each up to the daemon's max_value_size.
	wireMaxResponse = 1 << 30
)

// NewWire returns a client of the wire protocol for the daemon at addr
// (host:port or an http:// URL, the API's address), spreading requests
// over conns connections (at least 1), each dialled when first used.
func NewWire(addr string, conns int) (*Wire, error) {
	host, err := apiHost(addr)
	if err != nil {
		return nil, err
	}
	w := &Wire{addr: host, maxFrame: wireMaxResponse}
	for range max(conns, 1) {
		w.conns = append(w.conns, &wireConn{w: w})
	}
	return w, nil
}

// Close closes the connections; calls in flight fail.
func (w *Wire) Close() {
	for _, c := range w.conns {
		c.close(errors.New("client: closed"))
	}
}

// Put stores value under key, as Client.Put.
func (w *Wire) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResponse, error) {
	return w.write(ctx, &WireRequest{Op: WirePut, Key: key, Value: value, Quorum: uint64(max(o.W, 0)),
		Consistency: o.Consistency, TTL: o.TTL, Context: o.Context})
}

// Delete deletes key, as Client.Delete.
func (w *Wire) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResponse, error) {
	return w.write(ctx, &WireRequest{Op: WireDelete, Key: key, Quorum: uint64(max(o.W, 0)),
		Consistency: o.Consistency, Context: o.Context})
}

func (w *Wire) write(ctx context.Context, req *WireRequest) (WriteResponse, error) {
	resp, err := w.do(ctx, req)
	if err != nil {
		return WriteResponse{}, err
	}
	return WriteResponse{Context: resp.Context, Acks: resp.Acks, Hinted: resp.Hinted, Coordinator: resp.Coordinator}, nil
}

// Ping makes a round trip to the daemon that does no other work.
func (w *Wire) Ping(ctx context.Context) error {
	_, err := w.do(ctx, &WireRequest{Op: WirePing})
	return err
}

// Get reads key: every sibling, the causal context to write with, and how
// many replicas answered. A missing key is ErrNotFound.
func (w *Wire) Get(ctx context.Context, key []byte, o ReadOptions) (WireResponse, error) {
	return w.do(ctx, &WireRequest{Op: WireGet, Key: key, Quorum: uint64(max(o.R, 0)), Consistency: o.Consistency})
}

// ErrSiblings is GetValue's error for a key with concurrent versions:
// read them all with Get.
var ErrSiblings = errors.New("client: the key has siblings; read them all with Get")

// GetValue reads key's value; a key with siblings is ErrSiblings.
func (w *Wire) GetValue(ctx context.Context, key []byte, o ReadOptions) ([]byte, error) {
	resp, err := w.Get(ctx, key, o)
	if err != nil {
		return nil, err
	}
	if len(resp.Siblings) != 1 {
		return nil, fmt.Errorf("%w (%d of them)", ErrSiblings, len(resp.Siblings))
	}
	return resp.Siblings[0].Value, nil
}

// do sends req on the next connection and waits for its answer, mapping a
// status other than 200 to the errors Client returns.
func (w *Wire) do(ctx context.Context, req *WireRequest) (WireResponse, error) {
	if err := ctx.Err(); err != nil {
		return WireResponse{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultKVTimeout)
		defer cancel()
	}
	c := w.conns[int(w.next.Add(1))%len(w.conns)]
	resp, err := c.call(ctx, req)
	if err != nil {
		return WireResponse{}, err
	}
	if resp.Status == 200 {
		return resp, nil
	}
	ae := &APIError{Status: resp.Status, Message: resp.Error}
	if resp.Status == 404 {
		return resp, notFound(ae)
	}
	return resp, ae
}

// wireConn is one connection, dialled on first use and again after it
// broke or idled: callers send their frames through a WireWriter, and a
// reader goroutine hands each answer to its caller.
type wireConn struct {
	w *Wire

	mu       sync.Mutex
	conn     net.Conn
	out      *WireWriter
	pending  map[uint64]chan WireResponse
	nextID   uint64
	lastUsed time.Time
}

// call sends req and waits for its answer or for ctx to end.
func (c *wireConn) call(ctx context.Context, req *WireRequest) (WireResponse, error) {
	ch := make(chan WireResponse, 1)
	c.mu.Lock()
	if c.conn != nil && len(c.pending) == 0 && time.Since(c.lastUsed) > wireIdle {
		c.closeLocked(errors.New("idle"))
	}
	if c.conn == nil {
		if err := c.dialLocked(ctx); err != nil {
			c.mu.Unlock()
			return WireResponse{}, err
		}
	}
	c.nextID++
	req.ID = c.nextID
	c.pending[req.ID] = ch
	c.lastUsed = time.Now()
	conn, out := c.conn, c.out
	c.mu.Unlock()

	if err := out.Send(func(b []byte) []byte { return AppendWireRequest(b, req) }); err != nil {
		c.broken(conn, err) // ch then holds the failure
	}
	select {
	case resp := <-ch:
		if resp.Status == 0 {
			return WireResponse{}, fmt.Errorf("%w at %s: %s", ErrUnreachable, c.w.addr, resp.Error)
		}
		return resp, nil
	case <-ctx.Done():
		c.forget(req.ID)
		return WireResponse{}, ctx.Err()
	}
}

func (c *wireConn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *wireConn) dialLocked(ctx context.Context) error {
	d := net.Dialer{Timeout: wireDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.w.addr)
	if err == nil {
		conn.SetWriteDeadline(time.Now().Add(wireDialTimeout))
		_, err = conn.Write([]byte(WireMagic))
		conn.SetWriteDeadline(time.Time{})
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.w.addr, rootCause(err))
	}
	c.conn, c.out, c.pending = conn, NewWireWriter(conn, defaultKVTimeout), map[uint64]chan WireResponse{}
	go c.readLoop(conn)
	return nil
}

// readLoop hands each answer to the call waiting for it, until conn
// breaks or is closed.
func (c *wireConn) readLoop(conn net.Conn) {
	br := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		body, err := ReadWireFrame(br, buf, c.w.maxFrame)
		if err != nil {
			c.broken(conn, err)
			return
		}
		buf = body
		resp, err := DecodeWireResponse(body)
		if err == nil && resp.Status == 0 {
			err = errors.New("an answer without a status")
		}
		if err != nil {
			c.broken(conn, fmt.Errorf("malformed answer: %v", err))
			return
		}
		if resp.ID == 0 {
			// The daemon could not read a frame and closes the connection.
			c.broken(conn, fmt.Errorf("the daemon refused a request (%d): %s", resp.Status, resp.Error))
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ok {
			ch <- resp
		}
	}
}

// broken closes conn, if it is still this connection's, failing the
// calls waiting on it.
func (c *wireConn) broken(conn net.Conn, err error) {
	c.mu.Lock()
	if c.conn == conn {
		c.closeLocked(err)
	}
	c.mu.Unlock()
}

func (c *wireConn) close(err error) {
	c.mu.Lock()
	c.closeLocked(err)
	c.mu.Unlock()
}

func (c *wireConn) closeLocked(err error) {
	if c.conn == nil {
		return
	}
	c.conn.Close()
	for id, ch := range c.pending {
		ch <- WireResponse{ID: id, Error: rootCause(err).Error()}
	}
	c.conn, c.out, c.pending = nil, nil, nil
}
