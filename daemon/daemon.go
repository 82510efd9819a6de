package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/valyala/fasthttp"

	"github.com/ringkv/ringkv/bootstrap"
	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/p2p"
	"github.com/ringkv/ringkv/store"
)

// Daemon is one ringkv node: the data dir, the store, the libp2p host, the
// dht node and the local HTTP API. New builds it, Start brings it up, and
// Shutdown takes it down in reverse order.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	clock   dht.Clock

	lock       *dirLock
	allowStale bool // start however long ago the data dir was last up
	lastUp     lastUp
	up         atomic.Bool // Start completed: Shutdown records the last-up time
	store      *store.Badger
	host       host.Host
	self       peer.ID // host.ID()
	selfText   string  // self in text (see peerText)
	tr         *p2p.Transport
	node       *node.Node
	joiner     *bootstrap.Joiner
	peers      []string // bootstrap list and saved members, read once at start
	api        *fasthttp.Server
	apiLn      net.Listener
	wire       wireConns // the API's wire-protocol connections

	ctx      context.Context // lives until Shutdown; background work hangs off it
	cancel   context.CancelFunc
	started  time.Time
	stopping atomic.Bool
	keys     *cached
	left     chan struct{} // closed when a leave request asks the daemon to exit
	leftOnce sync.Once
	wg       sync.WaitGroup // background goroutines of the daemon itself

	closeOnce sync.Once
	closeErr  error
}

// Option adjusts a daemon at construction.
type Option func(*Daemon)

// WithLogger sets the daemon's logger (default: stderr at cfg.LogLevel).
func WithLogger(l *slog.Logger) Option { return func(d *Daemon) { d.log = l } }

// WithClock sets the clock the dht layer uses (fault injection).
func WithClock(c dht.Clock) Option { return func(d *Daemon) { d.clock = c } }

// New validates cfg and builds a daemon without starting anything.
func New(cfg Config, opts ...Option) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, metrics: newMetrics(), clock: dht.SystemClock{}, left: make(chan struct{})}
	d.wire.workers.work = make(chan func())
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(d)
	}
	if d.log == nil {
		l, err := NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return nil, err
		}
		d.log = l
	}
	return d, nil
}

// Start initialises the data dir if needed, takes its lock, opens the
// store, starts libp2p, the dht node, the API and the bootstrap joiner, and
// writes the api file. On error everything started is closed again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			d.Shutdown(context.Background())
		}
	}()
	d.started = time.Now()
	if !Initialized(d.cfg.DataDir) {
		res, err := Init(d.cfg.DataDir)
		if err != nil {
			return err
		}
		d.log.Info("initialized data dir", "dir", d.cfg.DataDir, "peer", res.PeerID)
	}
	if d.lock, err = lockDataDir(d.cfg.DataDir); err != nil {
		return err
	}
	priv, err := LoadIdentity(d.cfg.DataDir)
	if err != nil {
		return err
	}
	d.peers = knownPeers(d.cfg.DataDir, d.cfg.Bootstrap)
	nc := d.nodeConfig()
	reap := nc.Membership.DeadReapTimeout
	d.lastUp.path = filepath.Join(d.cfg.DataDir, LastUpFile)
	if err := d.checkLastUp(reap); err != nil {
		return err
	}
	scfg := store.DefaultConfig(filepath.Join(d.cfg.DataDir, StoreDir))
	scfg.SyncWrites = d.cfg.Sync
	scfg.Logger = d.log.With("component", "store")
	if d.store, err = store.Open(scfg); err != nil {
		return err
	}
	if d.host, err = newHost(priv, d.cfg.Listen, d.metrics.registry); err != nil {
		return err
	}
	d.self = d.host.ID()
	d.selfText = d.self.String()
	pcfg := p2p.DefaultConfig()
	// Records carry every sibling of a value: allow the largest record the
	// store accepts, plus framing. Frames grow as bytes arrive, so the bound
	// is not an allocation up front.
	pcfg.MaxMessageSize = dht.MaxRecordSize + 1<<20
	// Keep enough idle streams per peer for a busy node's concurrency, so
	// calls reuse streams instead of opening new ones.
	pcfg.MaxIdleStreams = 256
	pcfg.Logger = d.log.With("component", "p2p")
	pcfg.Registerer = d.metrics.registry
	if d.tr, err = p2p.New(d.host, pcfg); err != nil {
		return err
	}
	if d.node, err = node.New(nc, d.tr, d.store, d.clock); err != nil {
		return err
	}
	if err := d.node.Start(d.ctx); err != nil {
		return err
	}
	if err := d.startAPI(); err != nil {
		return err
	}
	if err := d.startJoiner(); err != nil {
		return err
	}
	d.registerGauges()
	d.every(peersSaveInterval, func() {
		if err := d.savePeers(); err != nil {
			d.log.Debug("saving the member list", "err", err)
		}
	})
	d.host.Network().Notify(&network.NotifyBundle{DisconnectedF: d.onDisconnect})
	d.saveLastUp()
	d.up.Store(true)
	d.every(lastUpInterval(reap), d.refreshLastUp)
	d.log.Info("ringkv daemon started", "peer", d.host.ID(), "api", d.apiLn.Addr().String(),
		"addrs", strings.Join(dialableAddrs(d.host), " "), "data_dir", d.cfg.DataDir)
	if w := d.cfg.QuorumWarning(); w != "" {
		d.log.Warn(w)
	}
	return nil
}

func (d *Daemon) nodeConfig() node.Config {
	nc := node.DefaultConfig()
	if d.cfg.Timing == "local" {
		nc = node.LocalConfig()
	}
	nc.Zone = d.cfg.Zone
	nc.Capacity = d.cfg.Capacity
	nc.Replicas = d.cfg.Replicas
	nc.WriteQuorum = d.cfg.WriteQuorum
	nc.ReadQuorum = d.cfg.ReadQuorum
	nc.LWW = d.cfg.Conflicts == "lww"
	nc.Join = len(d.cfg.Bootstrap) > 0
	// A node that ran in a cluster before learns its members again from
	// the peers it saved before it serves (node.Config.Peers).
	nc.Peers = len(d.peers) > 0
	nc.Logger = d.log
	nc.Registerer = d.metrics.registry
	return nc
}

// every runs fn every interval on a goroutine of the daemon's own, until
// Shutdown.
func (d *Daemon) every(interval time.Duration, fn func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

func (d *Daemon) startAPI() error {
	ln, err := net.Listen("tcp", d.cfg.API)
	if err != nil {
		return fmt.Errorf("daemon: API cannot listen on %s: %w; pick a free address with --api", d.cfg.API, err)
	}
	d.apiLn = ln
	d.api = d.newAPIServer()
	go d.api.Serve(newAPIListener(ln, d.serveWire))
	return writeFileAtomic(filepath.Join(d.cfg.DataDir, APIFile), []byte(ln.Addr().String()+"\n"), 0o644)
}

func (d *Daemon) startJoiner() error {
	peers, err := bootstrap.ParseList(d.peers)
	if err != nil {
		return err
	}
	d.lastUp.expectPeers = len(peers) > 0
	bcfg := bootstrap.DefaultConfig()
	bcfg.Self = d.host.ID()
	bcfg.Logger = d.log.With("component", "bootstrap")
	if d.cfg.Timing == "local" {
		bcfg.InitialBackoff = 100 * time.Millisecond
		bcfg.MaxBackoff = 2 * time.Second
	}
	dialer := bootstrapDialer{h: d.host, join: d.node.Join}
	if d.joiner, err = bootstrap.NewJoiner(bcfg, dialer, peers); err != nil {
		return err
	}
	return d.joiner.Start(d.ctx)
}

// onDisconnect puts a bootstrap peer back into retry when its last
// connection drops.
func (d *Daemon) onDisconnect(_ network.Network, c network.Conn) {
	if d.joiner != nil && d.host.Network().Connectedness(c.RemotePeer()) != network.Connected {
		d.joiner.Reconnect(c.RemotePeer())
	}
}

func (d *Daemon) registerGauges() {
	d.keys = &cached{ttl: 5 * time.Second, fn: func() float64 {
		n, _ := d.node.KeyCount(context.Background())
		return float64(n)
	}}
	d.metrics.gauge("ringkv_store_keys", "Keys stored on this node (including tombstones awaiting collection).", d.keys.get)
	d.metrics.gauge("ringkv_store_bytes", "Bytes the store occupies on disk.", func() float64 { return float64(d.store.Size()) })
	d.metrics.counter("ringkv_store_cache_hits_total", "Store reads answered from the record cache.",
		func() float64 { h, _ := d.store.CacheStats(); return float64(h) })
	d.metrics.counter("ringkv_store_cache_misses_total", "Store reads that went to Badger.",
		func() float64 { _, m := d.store.CacheStats(); return float64(m) })
	d.metrics.counter("ringkv_store_commits_total", "Badger commits made by the store's group committer.",
		func() float64 { c, _, _ := d.store.CommitStats(); return float64(c) })
	d.metrics.counter("ringkv_store_commit_requests_total", "Write requests carried by those commits.",
		func() float64 { _, r, _ := d.store.CommitStats(); return float64(r) })
	d.metrics.counter("ringkv_store_commit_seconds_total", "Time the group committer spent committing (the commit log's write and fdatasync, and Badger's commit); as fast as the clock when it is saturated.",
		func() float64 { _, _, b := d.store.CommitStats(); return b.Seconds() })
	d.metrics.gauge("ringkv_peers_connected", "Peers with an open libp2p connection.", func() float64 {
		return float64(len(connectedPeers(d.host)))
	})
}

// notReady explains why the daemon should not take traffic yet ("" if ready).
func (d *Daemon) notReady() string {
	switch {
	case d.stopping.Load():
		return "shutting down"
	case d.node == nil:
		return "starting"
	}
	return d.node.NotReady()
}

// APIAddr is the address the API listens on.
func (d *Daemon) APIAddr() string {
	if d.apiLn == nil {
		return ""
	}
	return d.apiLn.Addr().String()
}

// PeerID is the node's peer ID.
func (d *Daemon) PeerID() peer.ID { return d.host.ID() }

// Addrs are the node's dialable multiaddrs with /p2p/.
func (d *Daemon) Addrs() []string { return dialableAddrs(d.host) }

// Left is closed when a client asked the node to leave the cluster; the
// process should then shut down.
func (d *Daemon) Left() <-chan struct{} { return d.left }

// Shutdown stops accepting requests, lets in-flight ones finish until ctx
// ends, then closes the joiner, the node, libp2p and the store, removes the
// api file and releases the lock. It is idempotent.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.closeOnce.Do(func() {
		d.stopping.Store(true)
		var errs []error
		if d.api != nil {
			// Past ctx, requests still running end when d.ctx is
			// cancelled below.
			_ = d.api.ShutdownWithContext(ctx)
			d.wire.stopReading(ctx)
			os.Remove(filepath.Join(d.cfg.DataDir, APIFile))
		}
		d.cancel()
		d.wg.Wait()
		if d.joiner != nil {
			d.joiner.Close()
		}
		if d.node != nil {
			if err := d.savePeers(); err != nil {
				d.log.Debug("saving the member list", "err", err)
			}
		}
		if d.up.Load() {
			d.refreshLastUp()
		}
		for _, c := range []io.Closer{d.node, d.tr, d.host, d.store} {
			if c == nil || isNilCloser(c) {
				continue
			}
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.lock.release(); err != nil {
			errs = append(errs, err)
		}
		d.closeErr = errors.Join(errs...)
		d.log.Info("ringkv daemon stopped")
	})
	return d.closeErr
}

// isNilCloser catches typed nil pointers stored in the io.Closer list.
func isNilCloser(c io.Closer) bool {
	switch v := c.(type) {
	case *node.Node:
		return v == nil
	case *p2p.Transport:
		return v == nil
	case *store.Badger:
		return v == nil
	}
	return false
}
