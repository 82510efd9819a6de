package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/daemon/client"
)

// TestBootstrapPeerThatIsNotRingkv gives a daemon two bootstrap peers: a
// libp2p host that speaks no ringkv protocol and a real node. The first is
// reported in status as not a ringkv node; the join goes on through the
// second.
func TestBootstrapPeerThatIsNotRingkv(t *testing.T) {
	stranger, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	mas, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: stranger.ID(), Addrs: stranger.Addrs()})
	if err != nil || len(mas) == 0 {
		t.Fatalf("stranger addrs: %v", err)
	}
	root := t.TempDir()
	a := startNode(t, root+"/a")
	b := startNode(t, root+"/b", "--bootstrap", mas[0].String(), "--bootstrap", a.bootstrapAddr())
	waitFor(t, 30*time.Second, "status to report the stranger and the join to complete", func() bool {
		s := b.status()
		var strangerErr string
		for _, bs := range s.Bootstrap {
			if bs.ID == stranger.ID().String() {
				strangerErr = bs.LastError
			}
		}
		return strings.Contains(strangerErr, "not a ringkv node") && s.LiveMembers == 2
	})
	if !strings.Contains(b.logs.String(), "not a ringkv node") {
		t.Fatalf("the daemon's log does not report the bad bootstrap peer:\n%s", b.logs.String())
	}
}

// TestSiblingsThroughTheCLI writes one key concurrently through three
// daemons without a causal context: the CLI prints every value and says
// there are siblings; a put with the returned context replaces them.
func TestSiblingsThroughTheCLI(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.client().Put(ctx, []byte("cart"), []byte(fmt.Sprintf("item-%d", i)), client.WriteOptions{}); err != nil {
				t.Errorf("blind put through node %d: %v", i+1, err)
			}
		}()
	}
	wg.Wait()
	r := nodes[1].cli("", "get", "cart")
	for i := range nodes {
		if !strings.Contains(r.stdout, fmt.Sprintf("item-%d", i)) {
			t.Fatalf("get after concurrent blind puts printed %q; want every value", r.stdout)
		}
	}
	if r.code != 0 || !strings.Contains(r.stderr, "3 siblings") || !strings.Contains(r.stderr, "--context") {
		t.Fatalf("get with siblings: exit %d, stderr %q; want a note naming the siblings and --context", r.code, r.stderr)
	}
	var gr client.GetResponse
	if err := json.Unmarshal([]byte(nodes[2].cli("", "get", "cart", "-o", "json").stdout), &gr); err != nil || len(gr.Siblings) != 3 {
		t.Fatalf("get -o json: %+v %v", gr, err)
	}
	if r := nodes[0].cli("", "put", "cart", "merged", "--context", gr.Context); r.code != 0 {
		t.Fatalf("put with context: %d %s", r.code, r.stderr)
	}
	if r := nodes[2].cli("", "get", "cart"); r.stdout != "merged" || strings.Contains(r.stderr, "siblings") {
		t.Fatalf("after the put with context: %q %q; want one value", r.stdout, r.stderr)
	}
	// A plain `ringkv put` reads the context first, so it replaces too.
	nodes[1].cli("", "put", "cart", "again")
	if r := nodes[0].cli("", "get", "cart"); r.stdout != "again" {
		t.Fatalf("put without --context did not replace the value: %q %q", r.stdout, r.stderr)
	}
	// A put with a TTL over that value: once it expires, every node reads
	// the key as gone from all three replicas, and the value it replaced
	// stays replaced.
	if r := nodes[2].cli("", "put", "cart", "brief", "--ttl", "2s", "--w", "3"); r.code != 0 {
		t.Fatalf("put --ttl: %d %s", r.code, r.stderr)
	}
	waitFor(t, 10*time.Second, "the key put with --ttl 2s to expire on every replica", func() bool {
		for _, n := range nodes {
			if r := n.cli("", "get", "cart", "--consistency", "all"); r.code != 4 {
				return false
			}
		}
		return true
	})
}

// TestWritesSurviveADeadReplica kills one of five daemons with SIGKILL:
// W=2 puts keep succeeding, every acknowledged write reads back with R=2
// through every survivor, and after the node returns its hints drain and
// a repair round leaves nothing to move.
func TestWritesSurviveADeadReplica(t *testing.T) {
	nodes := startCluster(t, 5)
	ctx := context.Background()
	victim := nodes[4]
	victim.kill()
	written := map[string]string{}
	for i := 0; i < 200; i++ {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if _, err := nodes[i%4].client().Put(ctx, []byte(k), []byte(v), client.WriteOptions{W: 2}); err != nil {
			t.Fatalf("W=2 put %s with one node down: %v", k, err)
		}
		written[k] = v
	}
	for j, n := range nodes[:4] {
		for k, v := range written {
			got, err := n.client().GetValue(ctx, []byte(k), client.ReadOptions{R: 2})
			if err != nil || string(got) != v {
				t.Fatalf("node %d: R=2 get %s = %q, %v", j+1, k, got, err)
			}
		}
	}
	victim.start()
	waitFor(t, 60*time.Second, "hints to drain on every node", func() bool {
		for _, n := range nodes {
			if n.status().Hints != 0 {
				return false
			}
		}
		return true
	})
	for k, v := range written {
		got, err := victim.client().GetValue(ctx, []byte(k), client.ReadOptions{R: 3})
		if err != nil || string(got) != v {
			t.Fatalf("after the restart, R=3 get %s through the restarted node = %q, %v", k, got, err)
		}
	}
	waitFor(t, 60*time.Second, "a repair round that moves nothing", func() bool {
		p, err := victim.client().Repair(ctx, nil)
		return err == nil && p.KeysSent == 0 && p.KeysRecv == 0
	})
}
