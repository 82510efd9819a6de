package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"one node", func(c *Config) { c.Nodes = 1 }, false},
		{"too many nodes", func(c *Config) { c.Nodes = MaxNodes + 1 }, false},
		{"no lookups", func(c *Config) { c.Lookups = 0 }, false},
		{"churn without periods", func(c *Config) { c.Churn = 0.1 }, false},
		{"churn with periods", func(c *Config) { c.Churn, c.Periods = 0.1, 2 }, true},
		{"churn over half", func(c *Config) { c.Churn, c.Periods = 0.6, 2 }, false},
		{"vnodes 0", func(c *Config) { c.VNodes = 0 }, false},
		{"warm without askers", func(c *Config) { c.Warm, c.WarmAskers = true, 0 }, false},
		{"zero period", func(c *Config) { c.Period = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestPeerIDsDecode(t *testing.T) {
	seen := make(map[peer.ID]bool)
	for i := range 1000 {
		id := PeerID(7, i)
		if _, err := peer.IDFromBytes([]byte(id)); err != nil {
			t.Fatalf("PeerID(7, %d) does not decode: %v", i, err)
		}
		if seen[id] {
			t.Fatalf("PeerID(7, %d) repeats", i)
		}
		seen[id] = true
	}
}

func TestRun(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		short bool // runs under -short
		edit  func(*Config)
		check func(t *testing.T, r Report)
	}{
		{"1000 nodes cold", true, func(c *Config) {}, func(t *testing.T, r Report) {
			if r.SuccessRate != 1 || r.CorrectRate != 1 {
				t.Errorf("success %v correct %v, want 1 and 1 without churn", r.SuccessRate, r.CorrectRate)
			}
			if r.MeanHopsCold > r.HalfLog2N+1 {
				t.Errorf("cold mean hops %.2f over ½·log2 N + 1 = %.2f", r.MeanHopsCold, r.HalfLog2N+1)
			}
			if r.MaxTableSize > r.TableBound || r.MeanTableSize < 1 {
				t.Errorf("table sizes mean %.1f max %d, bound %d", r.MeanTableSize, r.MaxTableSize, r.TableBound)
			}
		}},
		{"1000 nodes warm", true, func(c *Config) { c.Warm = true }, func(t *testing.T, r Report) {
			if r.SuccessRate != 1 || r.CorrectRate != 1 {
				t.Errorf("success %v correct %v, want 1 and 1", r.SuccessRate, r.CorrectRate)
			}
			if r.MeanHopsWarm > 1 {
				t.Errorf("warm mean hops %.2f with a cache holding the cluster, want <= 1", r.MeanHopsWarm)
			}
		}},
		{"1000 nodes recursive", false, func(c *Config) { c.Recursive = true }, func(t *testing.T, r Report) {
			if r.SuccessRate != 1 || r.CorrectRate != 1 {
				t.Errorf("success %v correct %v, want 1 and 1", r.SuccessRate, r.CorrectRate)
			}
		}},
		{"1000 nodes 10% churn", false, func(c *Config) { c.Churn, c.Periods = 0.1, 2 }, func(t *testing.T, r Report) {
			if r.ChurnSuccessRate < 0.99 {
				t.Errorf("churn success %.4f, want >= 0.99", r.ChurnSuccessRate)
			}
			if r.ChurnLookups != 2000 {
				t.Errorf("%d churn lookups, want 2000", r.ChurnLookups)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && !tc.short {
				t.Skip("-short")
			}
			cfg := DefaultConfig()
			cfg.Nodes, cfg.Lookups = 1000, 2000
			tc.edit(&cfg)
			r, err := Run(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cold %.2f (p99 %d), warm %.2f (p99 %d), ½·log2 N %.2f, success %.4f, correct %.4f, churn success %.4f, table mean %.1f max %d",
				r.MeanHopsCold, r.P99HopsCold, r.MeanHopsWarm, r.P99HopsWarm, r.HalfLog2N,
				r.SuccessRate, r.CorrectRate, r.ChurnSuccessRate, r.MeanTableSize, r.MaxTableSize)
			tc.check(t, r)
		})
	}
}

func TestRunIsReproducible(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Lookups = 300, 300
	a, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.MeanHopsCold != b.MeanHopsCold || a.MessagesPerLookup != b.MessagesPerLookup || a.MeanTableSize != b.MeanTableSize {
		t.Fatalf("two runs of one seed differ: %+v vs %+v", a, b)
	}
}

func TestRunHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := DefaultConfig()
	cfg.Nodes = 100
	if _, err := Run(ctx, cfg, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cfg := DefaultMembershipConfig()
	cfg.Nodes, cfg.Kill = 100, 2
	r, err := RunMembership(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Undetected != 0 || r.FalsePositives != 0 {
		t.Errorf("%d undetected, %d false positives; want 0 and 0", r.Undetected, r.FalsePositives)
	}
	// SWIM's bound: a probe period to be probed, the suspicion timeout
	// (at most SuspicionMaxTimeoutMult × the minimum), and the gossip.
	if limit := 40 * time.Second; r.DetectMaxSeconds <= 0 || r.DetectMaxSeconds > limit.Seconds() {
		t.Errorf("max detection %.1fs, want in (0, %v]", r.DetectMaxSeconds, limit)
	}
	if r.Messages == 0 {
		t.Errorf("no messages counted")
	}
}

func TestMembershipConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*MembershipConfig)
		ok   bool
	}{
		{"default", func(*MembershipConfig) {}, true},
		{"two nodes", func(c *MembershipConfig) { c.Nodes = 2 }, false},
		{"too many", func(c *MembershipConfig) { c.Nodes = MaxMembershipNodes + 1 }, false},
		{"kill none", func(c *MembershipConfig) { c.Kill = 0 }, false},
		{"kill most", func(c *MembershipConfig) { c.Kill = 600 }, false},
		{"zero tick", func(c *MembershipConfig) { c.Tick = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultMembershipConfig()
			tc.edit(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
