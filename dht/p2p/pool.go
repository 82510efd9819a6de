package p2p

import (
	"bufio"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// poolKey names the streams that can serve a call: same peer, same protocol.
type poolKey struct {
	peer  peer.ID
	proto dht.Protocol
}

// clientStream is an outgoing stream with its buffers. At any moment it is
// owned by exactly one Call or by the pool.
type clientStream struct {
	s   network.Stream
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte // reused for response payloads; small ones only
	// pooled is set once the stream has waited in the pool: from then on the
	// peer may have closed it while it was idle.
	pooled    bool
	idleSince time.Time
}

func newClientStream(s network.Stream) *clientStream {
	return &clientStream{s: s, r: getReader(s), w: getWriter(s)}
}

// progress says how far a round trip got before it failed.
type progress int

const (
	// unwritten: the request frame was not all written, so the peer's
	// handler, which needs the whole frame, cannot have run.
	unwritten progress = iota
	// written: the request went out and no byte of the response came back.
	written
	// answering: part of the response arrived.
	answering
)

// roundTrip writes one request and reads the response.
func (cs *clientStream) roundTrip(payload []byte, max int) (status byte, body []byte, got progress, err error) {
	if err := writeRequest(cs.w, payload); err != nil {
		return 0, nil, unwritten, err
	}
	status, body, started, err := readResponse(cs.r, max, cs.buf)
	if started {
		return status, body, answering, err
	}
	return status, body, written, err
}

// close ends the stream gracefully (the peer reads EOF) and frees buffers.
func (cs *clientStream) close() {
	_ = cs.s.Close()
	cs.release()
}

// reset aborts the stream and frees buffers.
func (cs *clientStream) reset() {
	_ = cs.s.Reset()
	cs.release()
}

func (cs *clientStream) release() {
	if cs.r != nil {
		putReader(cs.r)
		putWriter(cs.w)
		cs.r, cs.w, cs.buf = nil, nil, nil
	}
}

// streamPool keeps idle outgoing streams per (peer, protocol), most recently
// used last. Streams are taken LIFO, so the ones at the bottom age out and
// are closed by sweep.
type streamPool struct {
	max         int           // idle streams kept per key; 0 disables pooling
	idleTimeout time.Duration // a stream idle longer is closed, not reused

	mu     sync.Mutex
	closed bool                        // guarded by mu
	idle   map[poolKey][]*clientStream // guarded by mu; oldest first
}

func newStreamPool(max int, idleTimeout time.Duration) *streamPool {
	return &streamPool{max: max, idleTimeout: idleTimeout, idle: make(map[poolKey][]*clientStream)}
}

// get takes the most recently used idle stream for k, or returns nil. If
// that one is stale, so are all older ones: they are all closed. Streams
// whose connection has closed (the peer died or restarted) are reset and
// skipped, so a call to a dead peer fails at connect, where it is certain
// that nothing was sent.
func (p *streamPool) get(k poolKey, now time.Time) *clientStream {
	var dead []*clientStream
	defer func() {
		for _, cs := range dead {
			cs.reset()
		}
	}()
	p.mu.Lock()
	list := p.idle[k]
	for len(list) > 0 {
		cs := list[len(list)-1]
		if now.Sub(cs.idleSince) > p.idleTimeout {
			delete(p.idle, k)
			p.mu.Unlock()
			closeStreams(list)
			return nil
		}
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		p.idle[k] = list
		if !cs.s.Conn().IsClosed() {
			p.mu.Unlock()
			return cs
		}
		dead = append(dead, cs)
	}
	delete(p.idle, k)
	p.mu.Unlock()
	return nil
}

// put offers cs back for reuse. It returns false, and the caller closes cs,
// when the pool is closed, disabled or full for k.
func (p *streamPool) put(k poolKey, cs *clientStream, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[k]
	if p.closed || len(list) >= p.max {
		return false
	}
	cs.pooled = true
	cs.idleSince = now
	p.idle[k] = append(list, cs)
	return true
}

// sweep closes the streams idle longer than idleTimeout and forgets empty
// keys.
func (p *streamPool) sweep(now time.Time) {
	var stale []*clientStream
	p.mu.Lock()
	for k, list := range p.idle {
		i := 0
		for i < len(list) && now.Sub(list[i].idleSince) > p.idleTimeout {
			i++
		}
		if i == 0 && len(list) > 0 {
			continue
		}
		stale = append(stale, list[:i]...)
		if i == len(list) {
			delete(p.idle, k)
			continue
		}
		n := copy(list, list[i:])
		clear(list[n:])
		p.idle[k] = list[:n]
	}
	p.mu.Unlock()
	closeStreams(stale)
}

// dropConn resets every idle stream on connection c (it closed, or one of
// its streams turned out stale).
func (p *streamPool) dropConn(c network.Conn) {
	var dead []*clientStream
	p.mu.Lock()
	for k, list := range p.idle {
		kept := list[:0]
		for _, cs := range list {
			if cs.s.Conn() == c {
				dead = append(dead, cs)
			} else {
				kept = append(kept, cs)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = kept
		}
	}
	p.mu.Unlock()
	for _, cs := range dead {
		cs.reset()
	}
}

// closeAll closes every idle stream and refuses further puts.
func (p *streamPool) closeAll() {
	var all []*clientStream
	p.mu.Lock()
	p.closed = true
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = make(map[poolKey][]*clientStream)
	p.mu.Unlock()
	closeStreams(all)
}

// size reports the number of idle streams, for tests and debugging.
func (p *streamPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, list := range p.idle {
		n += len(list)
	}
	return n
}

func closeStreams(list []*clientStream) {
	for _, cs := range list {
		cs.close()
	}
}
