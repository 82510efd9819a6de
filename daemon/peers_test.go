package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// TestRestartWithSavedPeersWaitsForThem: a node that ran in a cluster
// saves its members when it stops. Restarted without bootstrap peers, it
// learns the cluster's members from the saved ones before it takes client
// requests: until then it is not ready and answers 503 saying so. With no
// saved peer answering, it serves after the wait (5s with local timings).
func TestRestartWithSavedPeersWaitsForThem(t *testing.T) {
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := func(cfg Config) *Daemon {
		t.Helper()
		d, err := New(cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfgA := lastUpConfig(t)
	cfgA.Timing = "local"
	cfgA.Replicas, cfgA.WriteQuorum, cfgA.ReadQuorum = 2, 1, 1
	a := start(cfgA)
	cfgB := cfgA
	cfgB.DataDir = t.TempDir()
	cfgB.Bootstrap = []string{a.Addrs()[0]}
	b := start(cfgB)
	deadline := time.Now().Add(20 * time.Second)
	for len(a.node.Members()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("node A knows %d members after 20s, want 2", len(a.node.Members()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx := context.Background()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	a = start(cfgA)
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	if why := a.notReady(); !strings.HasPrefix(why, "rejoining") {
		t.Fatalf("a node restarted with saved peers, none up: not ready = %q, want rejoining", why)
	}
	kv := client.New(a.APIAddr(), 1)
	_, err := kv.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "members") {
		t.Fatalf("put while rejoining: %v; want 503 saying the node is learning the members", err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for a.notReady() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("still not ready 20s after the restart: %s", a.notReady())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := kv.Put(ctx, []byte("k"), []byte("v"), client.WriteOptions{}); err != nil {
		t.Fatalf("put once the node stopped waiting: %v", err)
	}
}
