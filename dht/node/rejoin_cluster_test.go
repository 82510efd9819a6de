package node_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
)

// TestClusterRestartedNodeLearnsTheMembersBeforeServing: a node that
// restarts knows only itself, and then whichever members gossip names to
// it. Preference lists drawn from that partial ring would acknowledge a
// write on nodes that a read through any other node never asks (a W=2 put
// and an R=2 get that miss each other). So until it has merged the member
// list of a peer that knows the cluster, it refuses client requests as
// unavailable and says why in NotReady; once a peer reaches it, it serves
// with the whole ring. Cut off from every peer, it gives up waiting after
// RejoinWait and serves with what it knows.
func TestClusterRestartedNodeLearnsTheMembersBeforeServing(t *testing.T) {
	const n, victim = 4, 3
	var rejoinWait atomic.Int64
	rejoinWait.Store(int64(time.Hour))
	c := dhttest.New(t, dhttest.Options{N: n, Seed: 11, Config: func(_ int, cfg *node.Config) {
		cfg.RejoinWait = time.Duration(rejoinWait.Load())
	}})
	ctx := opCtx(t)
	key := []byte("rejoin")
	if _, err := c.Node(0).Put(ctx, key, []byte("v1"), node.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	others := without(c.Live(), victim)
	c.Kill(victim)
	c.Partition([]int{victim}, others)
	c.Boot(victim)
	v := c.Node(victim)
	if why := v.NotReady(); !strings.HasPrefix(why, "rejoining") {
		t.Fatalf("NotReady of a restarted node that reached no peer = %q, want it rejoining", why)
	}
	_, err := v.Put(ctx, key, []byte("v2"), node.WriteOptions{})
	if !errors.Is(err, node.ErrUnavailable) || !strings.Contains(err.Error(), "members") {
		t.Fatalf("put through the rejoining node: %v; want unavailable, saying it is learning the members", err)
	}
	if _, err := v.Get(ctx, key, node.ReadOptions{R: 1}); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("get through the rejoining node: %v; want unavailable", err)
	}
	if _, err := v.Delete(ctx, key, node.WriteOptions{}); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("delete through the rejoining node: %v; want unavailable", err)
	}

	c.Heal()
	c.JoinThrough(victim, others[0])
	if why := v.NotReady(); why != "" {
		t.Fatalf("NotReady after a join through a live node = %q, want ready", why)
	}
	if got := len(v.Members()); got != n {
		t.Fatalf("the rejoined node knows %d members, want %d", got, n)
	}
	key2 := []byte("rejoined")
	if _, err := v.Put(ctx, key2, []byte("w1"), node.WriteOptions{}); err != nil {
		t.Fatalf("put through the rejoined node: %v", err)
	}
	for _, i := range c.Live() {
		for k, want := range map[string]string{string(key): "v1", string(key2): "w1"} {
			got, err := getValues(ctx, c, i, []byte(k), 2)
			if err != nil || len(got) != 1 || got[0] != want {
				t.Fatalf("get %q through slot %d after the rejoin: %v, %v; want [%s]", k, i, got, err, want)
			}
		}
	}

	// Cut off from every peer, the node serves after RejoinWait, with
	// only itself for a ring: a W=2 put fails for want of replicas.
	rejoinWait.Store(int64(200 * time.Millisecond))
	c.Kill(victim)
	c.Partition([]int{victim}, others)
	c.Boot(victim)
	v = c.Node(victim)
	dhttest.WaitUntil(t, 10*time.Second, "the isolated node to stop waiting", func() bool { return v.NotReady() == "" })
	var qe *node.QuorumError
	if _, err := v.Put(ctx, key, []byte("v3"), node.WriteOptions{}); !errors.As(err, &qe) {
		t.Fatalf("put through an isolated node that stopped waiting: %v; want a quorum error", err)
	}
}
