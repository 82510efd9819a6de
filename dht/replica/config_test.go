package replica_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/memnet"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring/ringtest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *replica.Config)
		ok     bool
	}{
		{"defaults", func(*replica.Config) {}, true},
		{"N=1 W=1 R=1", func(c *replica.Config) { c.Replicas, c.WriteQuorum, c.ReadQuorum = 1, 1, 1 }, true},
		{"zero repair wait", func(c *replica.Config) { c.RepairWait = 0 }, true},
		{"no replicas", func(c *replica.Config) { c.Replicas = 0 }, false},
		{"too many replicas", func(c *replica.Config) { c.Replicas = 17 }, false},
		{"W above N", func(c *replica.Config) { c.WriteQuorum = 4 }, false},
		{"W zero", func(c *replica.Config) { c.WriteQuorum = 0 }, false},
		{"R above N", func(c *replica.Config) { c.ReadQuorum = 4 }, false},
		{"R zero", func(c *replica.Config) { c.ReadQuorum = 0 }, false},
		{"no siblings", func(c *replica.Config) { c.MaxSiblings = 0 }, false},
		{"zero request timeout", func(c *replica.Config) { c.RequestTimeout = 0 }, false},
		{"negative repair wait", func(c *replica.Config) { c.RepairWait = -1 }, false},
		{"zero hint interval", func(c *replica.Config) { c.HintInterval = 0 }, false},
		{"zero hint batch", func(c *replica.Config) { c.HintBatch = 0 }, false},
		{"zero key size", func(c *replica.Config) { c.MaxKeySize = 0 }, false},
		{"zero value size", func(c *replica.Config) { c.MaxValueSize = 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := replica.DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, replica.ErrConfig)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			id := ringtest.PeerID(testSeed, 0)
			e, err := replica.New(cfg, id, memnet.New(memnet.DefaultOptions()).Endpoint(id), dhttest.NewMemStore(), &fakeView{self: id}, nil)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, replica.ErrConfig)) {
				t.Fatalf("New() = %v, want ok=%v", err, tt.ok)
			}
			if e != nil && e.Config().Replicas != cfg.Replicas {
				t.Fatal("Config() does not return the configuration")
			}
		})
	}
}

// TestCloseIdempotent closes an engine twice.
func TestCloseIdempotent(t *testing.T) {
	c := newCluster(t, 1, testConfig())
	e := c.node(c.ids[0]).e
	for i := range 2 {
		if err := e.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
}

// TestUseAfterClose checks that a closed engine refuses work at once.
func TestUseAfterClose(t *testing.T) {
	cfg := testConfig()
	c := newCluster(t, 3, cfg)
	r := c.roles("closed-key")
	e := c.node(r.nat[0]).e
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Write(ctx, replica.Write{Key: r.key, Value: []byte("v")}); !errors.Is(err, dht.ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Read(ctx, r.key, 2); !errors.Is(err, dht.ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
}

// TestSharedRegistry builds two engines on one registry, as a process
// running two nodes would: the second registration must not panic.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	net := memnet.New(memnet.DefaultOptions())
	for i := range 2 {
		cfg := replica.DefaultConfig()
		cfg.Registerer = reg
		id := ringtest.PeerID(testSeed, i)
		if _, err := replica.New(cfg, id, net.Endpoint(id), dhttest.NewMemStore(), &fakeView{self: id}, nil); err != nil {
			t.Fatalf("engine %d: %v", i, err)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
}

func TestQuorumErrorMessage(t *testing.T) {
	tests := []struct {
		err  replica.QuorumError
		want []string
	}{
		{replica.QuorumError{Op: "write", Acks: 1, Required: 2}, []string{"only 1 replica(s) acknowledged the write, 2 required (W)"}},
		{replica.QuorumError{Op: "read", Acks: 0, Required: 3}, []string{"only 0 replica(s) answered the read, 3 required (R)"}},
	}
	for _, tt := range tests {
		t.Run(tt.err.Op, func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}
