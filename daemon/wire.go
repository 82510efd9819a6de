package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
	"github.com/ringkv/ringkv/dht/node"
)

// The wire protocol's server (the protocol: client/wireproto.go). It
// shares the API's address with HTTP: apiListener reads the first bytes
// of every connection and keeps those that open with client.WireMagic,
// handing the others, bytes included, to the HTTP server.

const (
	// wireInFlight bounds the requests one connection may have running:
	// past it the daemon reads no more of that connection's requests
	// until one ends.
	wireInFlight = 256
	// wireFrameSlack is what a request frame may hold beyond its key and
	// value: the options and the causal context.
	wireFrameSlack = 64 << 10
)

// wireFrameTimeout bounds the reading of one request frame, from its
// first byte: a variable for the tests.
var wireFrameTimeout = apiReadTimeout

// apiListener sorts the API's connections: wire-protocol ones go to
// serveWire, the others are returned by Accept for the HTTP server.
type apiListener struct {
	net.Listener
	wire  func(net.Conn)
	http  chan net.Conn
	done  chan struct{}
	close sync.Once
}

func newAPIListener(ln net.Listener, wire func(net.Conn)) *apiListener {
	l := &apiListener{Listener: ln, wire: wire, http: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *apiListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			l.Close()
			return
		}
		if err != nil { // out of file descriptors, say: wait, as net/http does
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-l.done:
				return
			}
		}
		go l.sort(c)
	}
}

// sort reads the connection's first bytes, within the time an HTTP
// request has to arrive.
func (l *apiListener) sort(c net.Conn) {
	var pre [len(client.WireMagic)]byte
	c.SetReadDeadline(time.Now().Add(apiReadTimeout))
	n, err := io.ReadFull(c, pre[:])
	c.SetReadDeadline(time.Time{})
	switch {
	case n == len(pre) && string(pre[:]) == client.WireMagic:
		l.wire(c)
		return
	case n == 0 && err != nil:
		c.Close()
		return
	}
	select {
	case l.http <- &prefixConn{Conn: c, prefix: pre[:n]}:
	case <-l.done:
		c.Close()
	}
}

func (l *apiListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.http:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *apiListener) Close() error {
	var err error
	l.close.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// wireConns tracks the open wire-protocol connections, for Shutdown, and
// runs their requests.
type wireConns struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup // requests running
	workers wireWorkers
}

// wireWorkers runs requests on goroutines that outlive them, so that a
// request starts on a stack already grown to what a write needs: on a
// goroutine of its own, most puts grew their stack by copying it,
// runtime.newstack taking 5.6% of the coordinating daemon's CPU.
type wireWorkers struct {
	work chan func() // unbuffered: a send succeeds when a worker waits
	idle atomic.Int32
}

// wireIdleWorkers is how many workers may wait for work; a worker that
// ends a request when as many wait exits.
const wireIdleWorkers = 64

// run runs f on a waiting worker, or on a new one.
func (p *wireWorkers) run(done <-chan struct{}, f func()) {
	select {
	case p.work <- f:
	default:
		go p.worker(done, f)
	}
}

func (p *wireWorkers) worker(done <-chan struct{}, f func()) {
	for {
		f()
		if p.idle.Add(1) > wireIdleWorkers {
			p.idle.Add(-1)
			return
		}
		select {
		case f = <-p.work:
			p.idle.Add(-1)
		case <-done:
			p.idle.Add(-1)
			return
		}
	}
}

// add tracks c, or reports false once the daemon is shutting down.
func (w *wireConns) add(c net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.conns == nil {
		w.conns = map[net.Conn]struct{}{}
	}
	w.conns[c] = struct{}{}
	return true
}

func (w *wireConns) remove(c net.Conn) {
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
}

// begin counts a request that starts, or reports false once the daemon
// is shutting down.
func (w *wireConns) begin() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	return true
}

// stopped reports whether the daemon is shutting down. A connection's
// reader asks after setting its read deadline, which stopReading then
// overrides.
func (w *wireConns) stopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// stopReading ends the reading of every connection, so that no request
// starts, and waits until those running end or ctx does; their answers
// still go out.
func (w *wireConns) stopReading(ctx context.Context) {
	w.mu.Lock()
	w.closed = true
	for c := range w.conns {
		c.SetReadDeadline(time.Now())
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// wireSession is one wire-protocol connection: its reader hands each
// request to a worker goroutine, which sends the answer through a
// WireWriter.
type wireSession struct {
	d       *Daemon
	conn    net.Conn
	out     *client.WireWriter
	running sync.WaitGroup
	slots   chan struct{} // one per request running (wireInFlight)
}

// serveWire serves a connection that opened with the wire magic until the
// client closes it, it sends a frame that cannot be read, it idles for
// apiIdleTimeout, or the daemon shuts down.
func (d *Daemon) serveWire(c net.Conn) {
	defer c.Close()
	if !d.wire.add(c) {
		return
	}
	defer d.wire.remove(c)
	s := &wireSession{d: d, conn: c, out: client.NewWireWriter(c, apiReadTimeout), slots: make(chan struct{}, wireInFlight)}
	s.readLoop()
	s.running.Wait()
}

// readLoop reads and starts requests until the connection ends or sends
// a frame that cannot be read, which it answers with ID 0.
func (s *wireSession) readLoop() {
	limit := s.d.cfg.MaxKeySize + s.d.cfg.MaxValueSize + wireFrameSlack
	br := bufio.NewReaderSize(s.conn, 64<<10)
	var buf []byte // a frame's body, reused: the decoded request holds copies
	for {
		s.conn.SetReadDeadline(time.Now().Add(apiIdleTimeout))
		if s.d.wire.stopped() {
			return
		}
		// A connection may idle between requests; once a frame begins,
		// it must arrive whole as soon as an HTTP request must.
		if _, err := br.Peek(1); err != nil {
			return // the client went away, idled, or the daemon stops
		}
		s.conn.SetReadDeadline(time.Now().Add(wireFrameTimeout))
		if s.d.wire.stopped() {
			return
		}
		body, err := client.ReadWireFrame(br, buf, limit)
		if errors.Is(err, client.ErrFrameTooLarge) {
			s.answer(&client.WireResponse{Status: http.StatusRequestEntityTooLarge,
				Error: fmt.Sprintf("request frame is %v; store a smaller value (max_value_size is %d bytes)", err, s.d.cfg.MaxValueSize)})
			return
		}
		if err != nil {
			return // the client went away, idled, or the daemon stops
		}
		buf = body
		req, err := client.DecodeWireRequest(body)
		if err == nil && req.ID == 0 {
			err = errors.New("request without an ID: number requests from 1")
		}
		if err != nil {
			s.answer(&client.WireResponse{Status: http.StatusBadRequest, Error: "malformed request frame: " + err.Error()})
			return
		}
		s.slots <- struct{}{}
		if !s.d.wire.begin() {
			<-s.slots
			return
		}
		s.running.Add(1)
		s.d.wire.workers.run(s.d.ctx.Done(), func() {
			defer func() { <-s.slots; s.running.Done(); s.d.wire.wg.Done() }()
			s.answer(s.d.wireRequest(&req))
		})
	}
}

// answer sends resp; a connection whose write failed is closed, which
// ends readLoop.
func (s *wireSession) answer(resp *client.WireResponse) {
	if err := s.out.Send(func(b []byte) []byte { return client.AppendWireResponse(b, resp) }); err != nil {
		s.conn.Close()
	}
}

// wireRequest runs one request as the HTTP API runs the same, with the
// same checks, answers and metrics.
// An unknown operation is answered without being counted.
func (d *Daemon) wireRequest(req *client.WireRequest) *client.WireResponse {
	switch req.Op {
	case client.WireGet, client.WirePut, client.WireDelete:
	case client.WirePing:
		return &client.WireResponse{ID: req.ID, Status: http.StatusOK}
	default:
		return &client.WireResponse{ID: req.ID, Status: http.StatusBadRequest,
			Error: fmt.Sprintf("unknown operation %d: use 1 (get), 2 (put), 3 (delete) or 4 (ping)", uint64(req.Op))}
	}
	start := time.Now()
	resp := d.wireRun(req)
	resp.ID = req.ID
	d.metrics.observe(req.Op.String(), resp.Status, time.Since(start))
	return resp
}

// wireRun runs a request for a known operation.
func (d *Daemon) wireRun(req *client.WireRequest) *client.WireResponse {
	fail := func(status int, format string, args ...any) *client.WireResponse {
		return &client.WireResponse{Status: status, Error: fmt.Sprintf(format, args...)}
	}
	if d.stopping.Load() {
		return fail(http.StatusServiceUnavailable, "the daemon is shutting down; retry on another node")
	}
	if err := d.checkKey(req.Key); err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	name := "w"
	if req.Op == client.WireGet {
		name = "r"
	}
	num := ""
	if req.Quorum > 0 {
		num = strconv.FormatUint(req.Quorum, 10)
	}
	n, err := d.quorum(num, req.Consistency, name)
	if err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	if req.Op == client.WireGet {
		res, err := d.node.Get(d.ctx, req.Key, node.ReadOptions{R: n})
		resp := &client.WireResponse{Status: http.StatusOK, Answered: res.Answered, Hinted: res.Hinted}
		if err != nil {
			resp.Status, resp.Error = nodeErrorStatus(err)
			return resp
		}
		resp.Context = res.Context
		for _, s := range res.Siblings {
			resp.Siblings = append(resp.Siblings, client.WireSibling{Value: s.Value, Timestamp: s.Timestamp, ExpiresAt: s.ExpiresAt})
		}
		return resp
	}
	opts := node.WriteOptions{W: n, Context: req.Context}
	if req.TTL > node.MaxTTL {
		return fail(http.StatusBadRequest, "ttl %v is over 100 years: give a shorter one, or none to keep the key", req.TTL)
	}
	opts.TTL = req.TTL
	var res node.WriteResult
	if req.Op == client.WirePut {
		if len(req.Value) > d.cfg.MaxValueSize {
			return fail(http.StatusRequestEntityTooLarge, "value is over the %d-byte limit (max_value_size): store a smaller value", d.cfg.MaxValueSize)
		}
		res, err = d.node.Put(d.ctx, req.Key, req.Value, opts)
	} else {
		res, err = d.node.Delete(d.ctx, req.Key, opts)
	}
	if err != nil {
		status, msg := nodeErrorStatus(err)
		return fail(status, "%s", msg)
	}
	return &client.WireResponse{Status: http.StatusOK, Context: res.Context, Acks: res.Acks, Hinted: res.Hinted,
		Coordinator: d.peerText(res.Coordinator)}
}
