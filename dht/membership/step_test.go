package membership

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/memnet"
)

// stepCluster is a Manual cluster driven by Step and a fake clock, in one
// goroutine.
type stepCluster struct {
	net   *memnet.Network
	clk   *fakeClock
	ids   []peer.ID
	nodes []*Memberlist
	trace []string
}

func newStepCluster(t testing.TB, n int) *stepCluster {
	t.Helper()
	c := &stepCluster{net: memnet.New(memnet.DefaultOptions()), clk: newFakeClock(), ids: testIDs(t, n)}
	for i, id := range c.ids {
		cfg := DefaultLocalConfig()
		cfg.Manual = true
		cfg.SerialProbes = true
		cfg.Seed = uint64(i + 1)
		m, err := New(cfg, dht.Member{ID: id}, c.net.Endpoint(id), c.clk)
		if err != nil {
			t.Fatal(err)
		}
		m.Subscribe(func(ev Event) {
			c.trace = append(c.trace, fmt.Sprintf("%s:%s=%v", short(id), short(ev.Member.ID), ev.Member.State))
		})
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		c.nodes = append(c.nodes, m)
	}
	for _, m := range c.nodes[1:] {
		if _, err := m.Join(context.Background(), c.ids[:1]); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// run steps every node each 10ms of fake time until cond holds or limit
// passes, and returns the fake time it took.
func (c *stepCluster) run(t testing.TB, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := c.clk.Now()
	for !cond() {
		if c.clk.Now().Sub(start) > limit {
			t.Fatalf("condition not met within %v of fake time", limit)
		}
		c.clk.Advance(10 * time.Millisecond)
		for i, m := range c.nodes {
			if c.net.Alive(c.ids[i]) {
				m.Step(context.Background())
			}
		}
	}
	return c.clk.Now().Sub(start)
}

func (c *stepCluster) allDead(victim peer.ID) bool {
	for i, m := range c.nodes {
		if c.ids[i] == victim {
			continue
		}
		if mb, ok := m.Member(victim); !ok || mb.State != dht.StateDead {
			return false
		}
	}
	return true
}

func stepScenario(t *testing.T) (*stepCluster, time.Duration) {
	c := newStepCluster(t, 8)
	c.run(t, 10*time.Second, func() bool {
		for _, m := range c.nodes {
			if m.NumLive() != 8 {
				return false
			}
		}
		return true
	})
	victim := c.ids[4]
	c.net.Kill(victim)
	took := c.run(t, 30*time.Second, func() bool { return c.allDead(victim) })
	return c, took
}

// TestStepDetectsDeath drives the protocol with Step only: no loops, no
// real time.
func TestStepDetectsDeath(t *testing.T) {
	c, took := stepScenario(t)
	t.Logf("8 manual nodes: killed node dead everywhere after %v of fake time", took)
	for i, m := range c.nodes {
		if c.ids[i] == c.ids[4] {
			continue
		}
		if n := m.NumLive(); n != 7 {
			t.Fatalf("%s: NumLive = %d, want 7", short(c.ids[i]), n)
		}
	}
}

// TestStepDeterministic runs the same Manual scenario twice with the same
// seeds and expects the same event trace.
func TestStepDeterministic(t *testing.T) {
	a, tookA := stepScenario(t)
	b, tookB := stepScenario(t)
	if tookA != tookB || len(a.trace) != len(b.trace) {
		t.Fatalf("runs differ: %v/%d events vs %v/%d events", tookA, len(a.trace), tookB, len(b.trace))
	}
	for i := range a.trace {
		if a.trace[i] != b.trace[i] {
			t.Fatalf("event %d differs: %s vs %s", i, a.trace[i], b.trace[i])
		}
	}
}
