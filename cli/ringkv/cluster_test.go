package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// startCluster starts n daemons, node 1 first and the others
// bootstrapping from it, and waits until every node lists n normal members.
func startCluster(t *testing.T, n int, extra ...string) []*node {
	t.Helper()
	root := t.TempDir()
	nodes := []*node{startNode(t, filepath.Join(root, "n1"), extra...)}
	seed := nodes[0].bootstrapAddr()
	for i := 2; i <= n; i++ {
		args := append([]string{"--bootstrap", seed, "--zone", fmt.Sprintf("z%d", i%3)}, extra...)
		nodes = append(nodes, startNode(t, filepath.Join(root, fmt.Sprintf("n%d", i)), args...))
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d normal members on every node", n), func() bool {
		for _, nd := range nodes {
			ms, err := nd.client().Members(context.Background())
			if err != nil {
				return false
			}
			normal := 0
			for _, m := range ms {
				if m.State == "normal" {
					normal++
				}
			}
			if normal != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// TestFiveDaemonsServeEveryKeyFromEveryNode writes keys through one node
// and reads each through every other.
func TestFiveDaemonsServeEveryKeyFromEveryNode(t *testing.T) {
	nodes := startCluster(t, 5)
	ctx := context.Background()
	const keys = 100
	w := nodes[0].client()
	for i := 0; i < keys; i++ {
		if _, err := w.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i)), client.WriteOptions{}); err != nil {
			t.Fatalf("put k%d: %v", i, err)
		}
	}
	for j, nd := range nodes {
		cl := nd.client()
		for i := 0; i < keys; i++ {
			v, err := cl.GetValue(ctx, []byte(fmt.Sprintf("k%d", i)), client.ReadOptions{})
			if err != nil || string(v) != fmt.Sprintf("v%d", i) {
				t.Fatalf("node %d get k%d = %q, %v", j+1, i, v, err)
			}
		}
	}
	// Every node locates every key to the same owner and replicas.
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("k%d", i)
		var first client.Location
		for j, nd := range nodes {
			r := nd.cli("", "locate", key, "--trace", "-o", "json")
			var loc client.Location
			if err := json.Unmarshal([]byte(r.stdout), &loc); err != nil || r.code != 0 {
				t.Fatalf("locate %s on node %d: %d %q %q", key, j+1, r.code, r.stdout, r.stderr)
			}
			if len(loc.Replicas) != 3 || loc.Owner != loc.Replicas[0] {
				t.Fatalf("locate %s: %+v; want 3 replicas led by the owner", key, loc)
			}
			if j == 0 {
				first = loc
			} else if loc.Owner != first.Owner || strings.Join(loc.Replicas, ",") != strings.Join(first.Replicas, ",") {
				t.Fatalf("node %d locates %s at %v, node 1 at %v", j+1, key, loc.Replicas, first.Replicas)
			}
		}
	}
	// members and ring list every node.
	r := nodes[2].cli("", "ring", "-o", "json")
	var shares []client.RingShare
	if err := json.Unmarshal([]byte(r.stdout), &shares); err != nil || len(shares) != 5 {
		t.Fatalf("ring: %q %v", r.stdout, err)
	}
	total := 0.0
	for _, s := range shares {
		total += s.Share
	}
	if total < 0.999 || total > 1.001 {
		t.Fatalf("ring shares sum to %v", total)
	}
}

// TestLeaveHandsOffAndExits: `ringkv leave` makes the daemon hand its data
// to the nodes that take over its ranges, announce its departure and exit
// cleanly; the others list it as left and still serve every key with R=2.
func TestLeaveHandsOffAndExits(t *testing.T) {
	nodes := startCluster(t, 4)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := nodes[0].client().Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"), client.WriteOptions{W: 3}); err != nil {
			t.Fatal(err)
		}
	}
	leaver := nodes[3]
	id := leaver.status().PeerID
	if r := leaver.cli("", "leave"); r.code != 0 || !strings.Contains(r.stdout, "left") {
		t.Fatalf("leave: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	done := make(chan error, 1)
	go func() { done <- leaver.cmd.Wait() }()
	select {
	case err := <-done:
		leaver.stopped = true
		if err != nil {
			t.Fatalf("the daemon did not exit cleanly after leave: %v\n%s", err, leaver.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit within 30s of leave")
	}
	waitFor(t, 30*time.Second, "the others to list the leaver as left", func() bool {
		ms, err := nodes[0].client().Members(ctx)
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == id {
				return m.State == "left"
			}
		}
		return false
	})
	for i := 0; i < 100; i++ {
		if v, err := nodes[1].client().GetValue(ctx, []byte(fmt.Sprintf("k%d", i)), client.ReadOptions{R: 2}); err != nil || string(v) != "v" {
			t.Fatalf("after the leave, k%d = %q, %v", i, v, err)
		}
	}
}
