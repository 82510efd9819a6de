package dhttest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/p2p"
)

// LogEnv names the environment variable that sets the level of the nodes'
// logs ("debug", "info", "warn", "error"; default "warn"). Logs go to the
// test's output, which is shown when the test fails or with -v.
const LogEnv = "RINGKV_TEST_LOG"

// Options shape a Cluster. The zero value is a 3-node cluster.
type Options struct {
	// N is the number of nodes New starts. Default 3.
	N int
	// Zones are given to the nodes round-robin: slot i gets
	// Zones[i%len(Zones)]. Default nil: no zones.
	Zones []string
	// Seed derives the slots' keys, so the same seed gives the same peer
	// IDs and ring tokens (and the same membership random choices). Default
	// 0 is a seed like any other.
	Seed uint64
	// Config adjusts slot i's node configuration after NodeConfig's
	// defaults and the slot's zone are set; it is called again at every
	// (re)start of the slot. Default nil.
	Config func(i int, cfg *node.Config)
	// Timeout bounds each wait of the harness itself: New's convergence,
	// Restart's return to Normal. Default 60s, a safety net for a loaded
	// machine under -race, not a measured figure.
	Timeout time.Duration
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 60 * time.Second

// NodeConfig returns the harness's node configuration: node.LocalConfig
// with 16 vnodes (cheap ring builds), anti-entropy rounds every second and
// hints handed off every 200ms.
func NodeConfig() node.Config {
	c := node.LocalConfig()
	c.VNodes = 16
	c.Replica.HintInterval = 200 * time.Millisecond
	c.Maintenance.Interval = time.Second
	return c
}

// Cluster is a set of node slots on one mocknet. See the package doc.
type Cluster struct {
	t     testing.TB
	opts  Options
	mn    mocknet.Mocknet
	clock *Clock
	log   *slog.Logger

	mu     sync.Mutex
	slots  []*slot                   // guarded by mu
	part   atomic.Pointer[partition] // nil when healed; written under mu
	closed bool                      // guarded by mu
}

// slot is one node's lasting identity and, while up, its running parts.
type slot struct {
	i      int
	priv   crypto.PrivKey
	id     peer.ID
	addr   ma.Multiaddr
	store  *MemStore
	clock  *skewedClock
	faults *faults

	up   bool
	host host.Host
	tr   *p2p.Transport
	node *node.Node
}

// New starts a cluster of opts.N nodes and waits until every node sees
// every other one Normal. Close runs at t's cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.N <= 0 {
		opts.N = 3
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	c := &Cluster{t: t, opts: opts, mn: mocknet.New(), clock: NewClock(), log: testLogger(t)}
	t.Cleanup(c.Close)
	for range opts.N {
		c.Add()
	}
	c.Start(0)
	for i := 1; i < opts.N; i++ {
		c.Start(i)
	}
	c.WaitNormal(opts.Timeout)
	return c
}

// testLogger writes at the level LogEnv names to t's output.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if v := os.Getenv(LogEnv); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			t.Fatalf("dhttest: %s=%q: %v", LogEnv, v, err)
		}
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// slotKey derives slot i's Ed25519 key from the seed.
func slotKey(seed uint64, i int) (crypto.PrivKey, error) {
	var in [14 + 16]byte
	copy(in[:], "ringkv/dhttest")
	binary.BigEndian.PutUint64(in[14:], seed)
	binary.BigEndian.PutUint64(in[22:], uint64(i))
	s := sha256.Sum256(in[:])
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
}

// Add creates a new slot, down, with a fresh identity and an empty store,
// and returns its index. Start brings it up and joins it to the cluster.
func (c *Cluster) Add() int {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.slots)
	priv, err := slotKey(c.opts.Seed, i)
	if err != nil {
		c.t.Fatalf("dhttest: key of slot %d: %v", i, err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		c.t.Fatalf("dhttest: peer ID of slot %d: %v", i, err)
	}
	// A mocknet address in the blackholed 100::/64, as mocknet's GenPeer
	// makes, unique per slot.
	ip := make(net.IP, net.IPv6len)
	ip[0] = 1
	binary.BigEndian.PutUint64(ip[8:], uint64(i)+1)
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip6/%s/tcp/4242", ip))
	if err != nil {
		c.t.Fatalf("dhttest: address of slot %d: %v", i, err)
	}
	sc := &skewedClock{base: c.clock}
	c.slots = append(c.slots, &slot{i: i, priv: priv, id: id, addr: addr, store: NewMemStore(), clock: sc,
		faults: &faults{lose: map[dht.Protocol]int{}}})
	return i
}

// Start brings down slot i up with its identity and store and, unless no
// other slot is up, joins it through the first up slot it can reach (it
// fails the test when other slots are up but none is reachable). A slot
// that joins runs with node.Config.Join set: a new node starts Joining
// and pulls its data, a restarted one (its store records a completed
// join) starts Normal. Start returns once Join returned: the node may
// still be Joining (see WaitNodeNormal). It fails the test if i is up.
// The cluster's lock is not held while the node starts or joins, so
// callbacks such as OnWrite hooks may call the Cluster.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	n, seed, err := c.boot(i, false)
	if err != nil {
		c.t.Fatalf("dhttest: Start(%d): %v", i, err)
	}
	if seed == "" {
		return
	}
	if err := join(n, seed, c.opts.Timeout); err != nil {
		c.t.Fatalf("dhttest: Start(%d): join through %s: %v", i, seed, err)
	}
}

// join calls n.Join(seed) until it succeeds or bound passes, doubling the
// pause between attempts from 50ms, as the daemon's bootstrap joiner
// retries: one attempt is a single push-pull bounded by a few probe
// intervals, which a loaded machine can miss.
func join(n *node.Node, seed peer.ID, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	pause := 50 * time.Millisecond
	for {
		err := n.Join(ctx, seed)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// Boot brings slot i up as Start does but joins it through no one, even
// when it can reach no other slot: until a peer contacts it, or the test
// calls JoinThrough, the node knows only itself and the members that
// gossip names to it.
func (c *Cluster) Boot(i int) {
	c.t.Helper()
	if _, _, err := c.boot(i, true); err != nil {
		c.t.Fatalf("dhttest: Boot(%d): %v", i, err)
	}
}

// JoinThrough joins up slot i through up slot j, retrying as Start does.
func (c *Cluster) JoinThrough(i, j int) {
	c.t.Helper()
	if err := join(c.Node(i), c.ID(j), c.opts.Timeout); err != nil {
		c.t.Fatalf("dhttest: JoinThrough(%d, %d): %v", i, j, err)
	}
}

// boot brings slot i's host up and links it, then builds and starts its
// transport and node without the lock. It returns the node and the peer
// it should join through ("" when no other slot is up). Unless alone, a
// slot that no up slot can reach is refused.
func (c *Cluster) boot(i int, alone bool) (*node.Node, peer.ID, error) {
	c.mu.Lock()
	s := c.slotLocked(i)
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, "", errors.New("cluster closed")
	case s.up:
		c.mu.Unlock()
		return nil, "", errors.New("slot is up")
	}
	h, err := c.mn.AddPeer(s.priv, s.addr)
	if err != nil {
		c.mu.Unlock()
		return nil, "", fmt.Errorf("mocknet host: %w", err)
	}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: c.guard})
	s.host, s.up = h, true
	seed, others := c.seedLocked(s)
	err = c.relinkLocked()
	if err == nil && others && seed == "" && !alone {
		// Started alone it would never learn of the others.
		err = errors.New("no up slot is reachable to join through (partitioned alone)")
	}
	if err != nil {
		return nil, "", c.abortBoot(s, h, running{}, err)
	}
	cfg := c.nodeConfig(s.i, others)
	c.mu.Unlock()

	parts, err := c.startNode(s, h, cfg)
	c.mu.Lock()
	if err == nil && (c.closed || s.host != h) {
		err = errors.New("slot stopped while starting")
	}
	if err != nil {
		return nil, "", c.abortBoot(s, h, parts, err)
	}
	s.tr, s.node = parts.tr, parts.node
	c.mu.Unlock()
	return parts.node, seed, nil
}

// seedLocked returns the first up slot other than s that s can reach, and
// whether any other slot is up.
func (c *Cluster) seedLocked(s *slot) (seed peer.ID, others bool) {
	for _, o := range c.slots {
		if o != s && o.up {
			others = true
			if c.reachableLocked(o.i, s.i) {
				return o.id, true
			}
		}
	}
	return "", others
}

// abortBoot undoes a failed boot of s on host h: it marks s down (if it
// still runs h), relinks, releases the lock and closes what was started.
func (c *Cluster) abortBoot(s *slot, h host.Host, parts running, cause error) error {
	if s.host == h {
		c.detachLocked(s)
		if err := c.relinkLocked(); err != nil {
			cause = errors.Join(cause, err)
		}
	}
	c.mu.Unlock()
	parts.host = h
	return errors.Join(cause, parts.close())
}

// nodeConfig is slot i's node configuration: NodeConfig, its zone, a
// membership seed from Options.Seed, its logger, Join when it will join
// through another slot, then Options.Config.
func (c *Cluster) nodeConfig(i int, join bool) node.Config {
	cfg := NodeConfig()
	if len(c.opts.Zones) > 0 {
		cfg.Zone = c.opts.Zones[i%len(c.opts.Zones)]
	}
	cfg.Membership.Seed = c.opts.Seed*1000 + uint64(i) + 1
	cfg.Logger = c.log.With("node", i)
	cfg.Join = join
	if c.opts.Config != nil {
		c.opts.Config(i, &cfg)
	}
	return cfg
}

// startNode builds slot s's transport on h and its node over it and the
// slot's store, and starts the node. On failure it returns what it built
// for the caller to close.
func (c *Cluster) startNode(s *slot, h host.Host, cfg node.Config) (running, error) {
	var parts running
	pcfg := p2p.DefaultConfig()
	pcfg.Logger = cfg.Logger.With("component", "p2p")
	tr, err := p2p.New(h, pcfg)
	if err != nil {
		return parts, fmt.Errorf("transport: %w", err)
	}
	parts.tr = tr
	n, err := node.New(cfg, &faultTransport{Transport: tr, f: s.faults, part: &c.part}, s.store, s.clock)
	if err != nil {
		return parts, fmt.Errorf("node: %w", err)
	}
	parts.node = n
	if err := n.Start(context.Background()); err != nil {
		return parts, fmt.Errorf("node start: %w", err)
	}
	return parts, nil
}

// running is what an up slot runs.
type running struct {
	node *node.Node
	tr   *p2p.Transport
	host host.Host
}

// close closes the node, the transport and the host, in that order. It
// runs without the cluster's lock: the node's goroutines, which Close
// waits for, may call the Cluster (an OnWrite hook does).
func (r running) close() error {
	var errs []error
	if r.node != nil {
		errs = append(errs, r.node.Close())
	}
	if r.tr != nil {
		errs = append(errs, r.tr.Close())
	}
	if r.host != nil {
		errs = append(errs, r.host.Close())
	}
	return errors.Join(errs...)
}

// detachLocked marks s down and hands over what it runs, for the caller
// to close once it released the lock. The caller relinks first to make it
// a crash.
func (c *Cluster) detachLocked(s *slot) running {
	r := running{node: s.node, tr: s.tr, host: s.host}
	s.node, s.tr, s.host, s.up = nil, nil, nil, false
	return r
}

// Kill crashes slot i: it cuts every link to it (unlink, then disconnect,
// which resets every stream), then closes its node, transport and host
// without a Leave. Its store is kept for Restart.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.slotLocked(i)
	if !s.up {
		c.mu.Unlock()
		c.t.Fatalf("dhttest: Kill(%d): slot is down", i)
	}
	parts := c.detachLocked(s) // down: relink cuts its links
	err := c.relinkLocked()
	c.mu.Unlock()
	if err != nil {
		c.t.Fatalf("dhttest: Kill(%d): %v", i, err)
	}
	if err := parts.close(); err != nil {
		c.t.Logf("dhttest: Kill(%d): closing: %v", i, err)
	}
}

// Restart brings killed slot i back with the same key (so the same peer
// ID and tokens) and the same store, rejoins it through a live node it can
// reach, and waits until it is Normal in its own view and in the view of
// every up node it can reach.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Start(i)
	c.WaitNodeNormal(i, c.opts.Timeout)
}

// Close stops every up node and the mocknet. New registers it with
// t.Cleanup; it is idempotent.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	var parts []running
	for _, s := range c.slots {
		if s.up {
			parts = append(parts, c.detachLocked(s))
		}
	}
	c.mu.Unlock()
	for i, p := range parts {
		if err := p.close(); err != nil {
			c.t.Logf("dhttest: closing node %d of %d: %v", i+1, len(parts), err)
		}
	}
	if err := c.mn.Close(); err != nil {
		c.t.Logf("dhttest: closing mocknet: %v", err)
	}
}

func (c *Cluster) slotLocked(i int) *slot {
	c.t.Helper()
	if i < 0 || i >= len(c.slots) {
		c.t.Fatalf("dhttest: no slot %d (have %d)", i, len(c.slots))
	}
	return c.slots[i]
}

// N returns the number of slots, up or down.
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slots)
}

// Node returns the node running on slot i, or nil while it is down.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotLocked(i).node
}

// ID returns slot i's peer ID (the same across restarts).
func (c *Cluster) ID(i int) peer.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotLocked(i).id
}

// Index returns the slot whose peer ID is id.
func (c *Cluster) Index(id peer.ID) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.slots {
		if s.id == id {
			return s.i, true
		}
	}
	return -1, false
}

// Store returns slot i's store, which outlives restarts.
func (c *Cluster) Store(i int) *MemStore {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotLocked(i).store
}

// Up reports whether slot i is running.
func (c *Cluster) Up(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotLocked(i).up
}

// Live returns the indexes of the up slots, ascending.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, s := range c.slots {
		if s.up {
			out = append(out, s.i)
		}
	}
	return out
}

// Zone returns the zone slot i's node is configured with by Options.Zones.
func (c *Cluster) Zone(i int) string {
	if len(c.opts.Zones) == 0 {
		return ""
	}
	return c.opts.Zones[i%len(c.opts.Zones)]
}

// Members returns what slot i's node knows of the cluster, by slot
// (members it knows that are no slot of this cluster are left out). It
// fails the test if slot i is down.
func (c *Cluster) Members(i int) map[int]dht.Member {
	c.t.Helper()
	n := c.Node(i)
	if n == nil {
		c.t.Fatalf("dhttest: Members(%d): slot is down", i)
	}
	out := map[int]dht.Member{}
	for _, m := range n.Members() {
		if j, ok := c.Index(m.ID); ok {
			out[j] = m
		}
	}
	return out
}

// pollEvery is the pause between two checks of a polled condition.
const pollEvery = 20 * time.Millisecond

// WaitUntil polls cond until it returns true and returns how long that
// took. If bound passes first it fails the test with "timed out after
// <bound> waiting for <what>". It must run on the test's goroutine.
func WaitUntil(t testing.TB, bound time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return WaitFor(t, bound, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("condition false")
	})
}

// WaitFor polls check until it returns nil and returns how long that took.
// If bound passes first it fails the test with what and check's last
// error, which should say what is still missing. It must run on the test's
// goroutine.
func WaitFor(t testing.TB, bound time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(bound)
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", bound, what, err)
		}
		time.Sleep(pollEvery)
	}
}

// StateOf returns the state slot observer's node records for slot
// subject, or 0 when it does not know it (or observer is down).
func (c *Cluster) StateOf(observer, subject int) dht.State {
	n := c.Node(observer)
	if n == nil {
		return 0
	}
	id := c.ID(subject)
	for _, m := range n.Members() {
		if m.ID == id {
			return m.State
		}
	}
	return 0
}

// CheckNormal returns nil when every up slot is ready (node.NotReady is
// "") and sees every up slot it can reach as Normal; otherwise an error
// naming the first disagreement.
func (c *Cluster) CheckNormal() error {
	for _, i := range c.Live() {
		if err := c.checkNodeNormal(i); err != nil {
			return err
		}
	}
	return nil
}

// checkNodeNormal checks that slot i is ready and that it and every slot
// it can reach see each other Normal.
func (c *Cluster) checkNodeNormal(i int) error {
	n := c.Node(i)
	if n == nil {
		return fmt.Errorf("slot %d is down", i)
	}
	if why := n.NotReady(); why != "" {
		return fmt.Errorf("slot %d not ready: %s", i, why)
	}
	for _, j := range c.Group(i) {
		if st := c.StateOf(i, j); st != dht.StateNormal {
			return fmt.Errorf("slot %d sees slot %d as %v", i, j, st)
		}
		if st := c.StateOf(j, i); st != dht.StateNormal {
			return fmt.Errorf("slot %d sees slot %d as %v", j, i, st)
		}
	}
	return nil
}

// WaitNormal waits up to bound until CheckNormal holds.
func (c *Cluster) WaitNormal(bound time.Duration) time.Duration {
	c.t.Helper()
	return WaitFor(c.t, bound, "every node to see every reachable node Normal", c.CheckNormal)
}

// WaitNodeNormal waits up to bound until slot i is ready and it and every
// slot it can reach see each other Normal.
func (c *Cluster) WaitNodeNormal(i int, bound time.Duration) time.Duration {
	c.t.Helper()
	return WaitFor(c.t, bound, fmt.Sprintf("slot %d to be Normal everywhere it is reachable", i),
		func() error { return c.checkNodeNormal(i) })
}
