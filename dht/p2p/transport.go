package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ringkv/ringkv/dht"
)

// addrTTL is how long an address learned by AddAddrs stays in the
// peerstore. Gossip re-announces live members' addresses far more often, so
// an hour keeps them while letting the addresses of a peer that moved or
// left expire (peerstore.PermanentAddrTTL would keep them forever).
var addrTTL = peerstore.AddressTTL

// minSweepInterval bounds how often the pool janitor runs.
const minSweepInterval = 10 * time.Millisecond

var _ dht.Transport = (*Transport)(nil)

// Transport is a dht.Transport over a libp2p host. See the package doc for
// the wire format and the contract.
type Transport struct {
	h    host.Host
	cfg  Config
	log  *slog.Logger
	m    *metrics // nil without a Registerer
	pool *streamPool

	notifee *network.NotifyBundle
	root    context.Context // cancelled by Close; parent of handler contexts
	cancel  context.CancelFunc
	wg      sync.WaitGroup // server stream goroutines and the janitor
	once    sync.Once      // Close
	closed  atomic.Bool    // set under mu, read without it on the Call path

	mu       sync.Mutex
	handlers map[dht.Protocol]*route     // guarded by mu
	serving  map[network.Stream]struct{} // guarded by mu; server streams being served
}

// New returns a Transport on h. It starts one janitor goroutine that closes
// pooled streams idle longer than cfg.PoolIdleTimeout; Close stops it. The
// Transport does not own h: Close leaves the host running.
func New(h host.Host, cfg Config) (*Transport, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil host", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, cancel := context.WithCancel(context.Background())
	t := &Transport{
		h:        h,
		cfg:      cfg,
		log:      log.With("component", "p2p"),
		m:        m,
		pool:     newStreamPool(cfg.MaxIdleStreams, cfg.PoolIdleTimeout),
		root:     root,
		cancel:   cancel,
		handlers: make(map[dht.Protocol]*route),
		serving:  make(map[network.Stream]struct{}),
	}
	t.notifee = &network.NotifyBundle{
		DisconnectedF: func(_ network.Network, c network.Conn) { t.pool.dropConn(c) },
	}
	h.Network().Notify(t.notifee)
	t.wg.Add(1)
	go t.janitor()
	return t, nil
}

// Self is the local peer ID.
func (t *Transport) Self() peer.ID { return t.h.ID() }

// Host is the libp2p host the Transport runs on.
func (t *Transport) Host() host.Host { return t.h }

// AddAddrs records addresses of id learned from gossip, for addrTTL (an
// hour, extended each time they are added again). Strings that are not
// multiaddrs, or that name another peer in a /p2p/ suffix, are skipped.
func (t *Transport) AddAddrs(id peer.ID, addrs []string) {
	if id == "" || id == t.h.ID() {
		return
	}
	parsed := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.log.Debug("skipping bad address", "peer", id, "addr", s, "err", err)
			continue
		}
		transport, pid := peer.SplitAddr(a)
		if transport == nil || (pid != "" && pid != id) {
			t.log.Debug("skipping address of another peer", "peer", id, "addr", s)
			continue
		}
		parsed = append(parsed, transport)
	}
	if len(parsed) > 0 {
		t.h.Peerstore().AddAddrs(id, parsed, addrTTL)
	}
}

// LocalAddrs returns every address the host listens on or was observed at,
// as multiaddr strings without /p2p/. Callers filter (loopback, private).
func (t *Transport) LocalAddrs() []string {
	addrs := t.h.Addrs()
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Close removes the stream handlers, resets the streams being served,
// cancels the handlers' contexts, closes the pooled streams and waits for
// the goroutines the Transport owns. Calls made after Close fail with
// dht.ErrClosed. Close is idempotent and always returns nil; it does not
// close the host.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed.Store(true)
		for p := range t.handlers {
			t.h.RemoveStreamHandler(protocol.ID(p))
		}
		serving := make([]network.Stream, 0, len(t.serving))
		for s := range t.serving {
			serving = append(serving, s)
		}
		t.mu.Unlock()

		t.h.Network().StopNotify(t.notifee)
		t.cancel()
		for _, s := range serving {
			_ = s.Reset()
		}
		t.pool.closeAll()
		t.wg.Wait()
	})
	return nil
}

// track registers a server stream so Close can reset it and wait for its
// goroutine. It returns false after Close.
func (t *Transport) track(s network.Stream) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return false
	}
	t.serving[s] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *Transport) untrack(s network.Stream) {
	t.mu.Lock()
	delete(t.serving, s)
	t.mu.Unlock()
	t.wg.Done()
}

// janitor closes pooled streams that idled past PoolIdleTimeout, so streams
// to peers no longer called do not linger until the server's IdleTimeout.
func (t *Transport) janitor() {
	defer t.wg.Done()
	tick := time.NewTicker(max(t.cfg.PoolIdleTimeout/2, minSweepInterval))
	defer tick.Stop()
	for {
		select {
		case <-t.root.Done():
			return
		case now := <-tick.C:
			t.pool.sweep(now)
		}
	}
}
