package membership

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/memnet"
)

// testIDs returns n valid, deterministic peer IDs.
func testIDs(t testing.TB, n int) []peer.ID {
	t.Helper()
	r := rand.New(rand.NewSource(int64(n)))
	ids := make([]peer.ID, n)
	for i := range ids {
		_, pub, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = peer.IDFromPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// waitFor polls cond every 10ms until it holds or timeout passes, then
// fails with cond's last explanation.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdFor checks every 10ms for d that violated() stays "", and fails with
// the first violation. It watches that something does not happen.
func holdFor(t testing.TB, d time.Duration, violated func() string) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if why := violated(); why != "" {
			t.Fatal(why)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if why := violated(); why != "" {
		t.Fatal(why)
	}
}

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventLog records every event of every node.
type eventLog struct {
	mu  sync.Mutex
	evs []observed
}

type observed struct {
	at       time.Time
	observer peer.ID
	ev       Event
}

func (l *eventLog) add(observer peer.ID, ev Event) {
	l.mu.Lock()
	l.evs = append(l.evs, observed{at: time.Now(), observer: observer, ev: ev})
	l.mu.Unlock()
}

// find returns the events about id in state s.
func (l *eventLog) find(id peer.ID, s dht.State) []observed {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []observed
	for _, o := range l.evs {
		if o.ev.Member.ID == id && o.ev.Member.State == s {
			out = append(out, o)
		}
	}
	return out
}

// deaths returns every Dead event about a member in about that a member in
// by observed. A node the network killed keeps running, cut off: it suspects
// everyone and declares them dead, so tests count only what live nodes saw.
func (l *eventLog) deaths(by, about []peer.ID) []observed {
	var out []observed
	for _, id := range about {
		for _, o := range l.find(id, dht.StateDead) {
			if slices.Contains(by, o.observer) {
				out = append(out, o)
			}
		}
	}
	return out
}

// cluster is n Memberlists over one memnet network, in real time.
type cluster struct {
	t     testing.TB
	cfg   Config
	net   *memnet.Network
	ids   []peer.ID
	nodes map[peer.ID]*Memberlist
	log   eventLog
	mu    sync.Mutex
}

func newCluster(t testing.TB, n int, cfg Config) *cluster {
	t.Helper()
	c := &cluster{t: t, cfg: cfg, net: memnet.New(memnet.DefaultOptions()),
		ids: testIDs(t, n), nodes: make(map[peer.ID]*Memberlist)}
	for _, id := range c.ids {
		c.start(id)
	}
	t.Cleanup(c.closeAll)
	return c
}

// start builds and starts a fresh Memberlist for id (incarnation 0).
func (c *cluster) start(id peer.ID) *Memberlist {
	c.t.Helper()
	return c.startWith(id, c.cfg)
}

// startWith is start with a configuration of id's own.
func (c *cluster) startWith(id peer.ID, cfg Config) *Memberlist {
	c.t.Helper()
	m, err := New(cfg, dht.Member{ID: id, Capacity: 1}, c.net.Endpoint(id), dht.SystemClock{})
	if err != nil {
		c.t.Fatal(err)
	}
	m.Subscribe(func(ev Event) { c.log.add(id, ev) })
	if err := m.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[id] = m
	c.mu.Unlock()
	return m
}

func (c *cluster) node(id peer.ID) *Memberlist {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *cluster) closeAll() {
	c.mu.Lock()
	nodes := c.nodes
	c.mu.Unlock()
	for _, m := range nodes {
		_ = m.Close()
	}
}

// joinAll joins every node but the first through the first.
func (c *cluster) joinAll() {
	c.t.Helper()
	for _, id := range c.ids[1:] {
		if _, err := c.node(id).Join(context.Background(), c.ids[:1]); err != nil {
			c.t.Fatalf("join %s: %v", id, err)
		}
	}
}

// states returns how observer sees id ("" when unknown).
func (c *cluster) state(observer, id peer.ID) dht.State {
	m, ok := c.node(observer).Member(id)
	if !ok {
		return 0
	}
	return m.State
}

// allSee waits until every observer sees every target in a state accepted by
// ok.
func (c *cluster) allSee(timeout time.Duration, observers, targets []peer.ID, ok func(dht.State) bool) {
	c.t.Helper()
	waitFor(c.t, timeout, func() (bool, string) {
		for _, o := range observers {
			for _, id := range targets {
				if s := c.state(o, id); !ok(s) {
					return false, fmt.Sprintf("%s sees %s as %v", short(o), short(id), s)
				}
			}
		}
		return true, ""
	})
}

func isNormal(s dht.State) bool { return s == dht.StateNormal }
func isDead(s dht.State) bool   { return s == dht.StateDead }

func short(id peer.ID) string {
	s := id.String()
	return s[len(s)-6:]
}

func without(ids []peer.ID, drop ...peer.ID) []peer.ID {
	var out []peer.ID
next:
	for _, id := range ids {
		for _, d := range drop {
			if id == d {
				continue next
			}
		}
		out = append(out, id)
	}
	return out
}

// spin keeps GOMAXPROCS*4 goroutines busy until the test ends.
func spin(t testing.TB) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0)*4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for !stop.Load() {
				x++
			}
			_ = x
		}()
	}
	t.Cleanup(func() {
		stop.Store(true)
		wg.Wait()
	})
}
