package antientropy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/version"
)

// divergence writes keys to the replicas of each key in one of several
// ways and returns the state every replica should converge to: the merge
// of everything written.
func divergence(c *cluster, keys int) map[string]dht.Record {
	ts := c.clock.Now()
	want := map[string]dht.Record{}
	for i := range keys {
		key := keyName(i)
		reps := c.natural(key)
		base := write(dht.Record{}, actor(0), "v0-"+key, ts)
		put := func(k int, rec dht.Record) {
			id := reps[min(k, len(reps)-1)] // with N < 3 replicas take several writes
			if cur, found, _ := getLocal(context.Background(), c.nodes[id].st, []byte(key)); found {
				rec = version.Merge(cur, rec)
			}
			c.put(id, key, rec)
			want[key] = version.Merge(want[key], rec)
		}
		switch i % 7 {
		case 0: // equal everywhere
			for k := range reps {
				put(k, base)
			}
		case 1: // missing on one replica
			put(0, base)
			put(1, base)
		case 2: // stale on one replica
			put(0, base)
			put(1, write(base, actor(1), "v1", ts))
			put(2, write(base, actor(1), "v1", ts))
		case 3: // concurrent siblings, one replica has neither
			put(0, write(base, actor(1), "left", ts))
			put(1, write(base, actor(2), "right", ts))
		case 4: // a tombstone on one replica, the old value on the others
			put(0, base)
			put(1, del(base, actor(1), ts))
			put(2, base)
		case 5: // only on the last replica
			put(len(reps)-1, base)
		case 6: // three different histories
			put(0, write(base, actor(1), "a", ts))
			put(1, del(base, actor(2), ts))
			put(2, write(write(base, actor(1), "a", ts), actor(3), "b", ts))
		}
	}
	return want
}

// checkConverged fails unless every natural replica of every key holds
// exactly want[key], no other node holds it, and every replica of every
// arc reports the same Merkle root.
func checkConverged(t *testing.T, c *cluster, want map[string]dht.Record) {
	t.Helper()
	held := map[peer.ID]map[string]dht.Record{}
	for id, nd := range c.nodes {
		held[id] = nd.st.records(t)
	}
	for key, rec := range want {
		reps := c.natural(key)
		for _, id := range reps {
			got, ok := held[id][key]
			if !ok {
				t.Fatalf("replica %s lacks %s", id, key)
			}
			if !version.Identical(got, rec) {
				t.Fatalf("replica %s holds %s as %+v, want %+v", id, key, got, rec)
			}
		}
		for id := range c.nodes {
			if _, ok := held[id][key]; ok && !contains(reps, id) {
				t.Fatalf("%s holds %s but is not a replica", id, key)
			}
		}
	}
	roots := map[peer.ID]map[[2]uint64]uint64{}
	for id, nd := range c.nodes {
		rs, err := nd.s.Roots(context.Background())
		if err != nil {
			t.Fatalf("Roots: %v", err)
		}
		roots[id] = map[[2]uint64]uint64{}
		for arc, r := range rs {
			roots[id][[2]uint64{arc.Start, arc.End}] = r
		}
	}
	serving := placement{w: c.w}.Serving()
	for _, arc := range serving.Arcs() {
		reps := serving.PreferenceList(arc.End, c.w.n)
		k := [2]uint64{arc.Start, arc.End}
		for _, id := range reps[1:] {
			if roots[id][k] != roots[reps[0]][k] {
				t.Fatalf("arc %v: root %#x on %s, %#x on %s", arc, roots[id][k], id, roots[reps[0]][k], reps[0])
			}
		}
	}
}

func TestRoundConverges(t *testing.T) {
	tests := []struct {
		name         string
		nodes, n     int
		vnodes, keys int
		cfg          func(*Config)
	}{
		{"3 nodes, N=3", 3, 3, 8, 300, nil},
		{"5 nodes, N=3", 5, 3, 16, 700, nil},
		{"4 nodes, N=3, small batches and deep trees", 4, 3, 4, 2000, func(c *Config) {
			c.BatchKeys, c.BatchBytes, c.Depth = 7, 1<<10, 16
		}},
		{"4 nodes, N=2, one token each", 4, 2, 1, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newCluster(t, tt.nodes, tt.n, tt.vnodes, cfg)
			want := divergence(c, tt.keys)
			first := c.roundAll()
			if first.KeysSent == 0 || first.KeysReceived == 0 {
				t.Fatalf("first round moved nothing: %+v", first)
			}
			if first.RangesDone != first.RangesTotal || first.RangesTotal == 0 {
				t.Fatalf("first round ranges %d of %d", first.RangesDone, first.RangesTotal)
			}
			checkConverged(t, c, want)
			second := c.roundAll()
			if second.KeysSent != 0 || second.KeysReceived != 0 {
				t.Fatalf("second round moved keys: %+v", second)
			}
			checkConverged(t, c, want)
		})
	}
}

func TestRoundProgress(t *testing.T) {
	c := newCluster(t, 3, 3, 8, testConfig())
	divergence(c, 100)
	var seen []Progress
	p, err := c.nodes[c.ids[0]].s.Round(context.Background(), func(p Progress) { seen = append(seen, p) })
	if err != nil {
		t.Fatalf("Round: %v", err)
	}
	if len(seen) < 3 {
		t.Fatalf("progress reported %d times, want at least 3", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		a, b := seen[i-1], seen[i]
		if b.RangesDone < a.RangesDone || b.KeysSent < a.KeysSent || b.KeysReceived < a.KeysReceived || b.Bytes < a.Bytes {
			t.Fatalf("progress went backwards: %+v then %+v", a, b)
		}
	}
	if last := seen[len(seen)-1]; last != p || p.RangesTotal != 2*8*3 || p.RangesDone != p.RangesTotal {
		t.Fatalf("final progress %+v, last reported %+v, want %d ranges", p, last, 2*8*3)
	}
}

func TestRoundSkipsDownReplica(t *testing.T) {
	c := newCluster(t, 3, 3, 8, testConfig())
	want := divergence(c, 200)
	down := c.ids[2]
	c.w.setDown(down, true)
	c.w.net.Kill(down)
	for _, id := range c.ids[:2] {
		p, err := c.nodes[id].s.Round(context.Background(), nil)
		if err != nil {
			t.Fatalf("Round with a replica down: %v", err)
		}
		if p.RangesTotal != 8*3 {
			t.Fatalf("ranges %d, want only the live peer's %d", p.RangesTotal, 8*3)
		}
	}
	c.w.setDown(down, false)
	c.w.net.Revive(down)
	c.roundAll()
	checkConverged(t, c, want)
}

func TestRoundPeerUnreachable(t *testing.T) {
	c := newCluster(t, 3, 3, 8, testConfig())
	divergence(c, 50)
	// The failure detector still trusts the peer, but calls to it fail.
	c.w.net.Partition([]peer.ID{c.ids[1]})
	p, err := c.nodes[c.ids[0]].s.Round(context.Background(), nil)
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("Round error = %v, want ErrIncomplete wrapping ErrUnreachable", err)
	}
	if p.RangesDone >= p.RangesTotal {
		t.Fatalf("ranges %d of %d done with a peer unreachable", p.RangesDone, p.RangesTotal)
	}
}

func TestConcurrentRounds(t *testing.T) {
	c := newCluster(t, 4, 3, 8, testConfig())
	want := divergence(c, 400)
	var wg sync.WaitGroup
	for _, id := range c.ids {
		for range 2 {
			wg.Go(func() {
				if _, err := c.nodes[id].s.Round(context.Background(), nil); err != nil {
					t.Errorf("Round: %v", err)
				}
			})
		}
	}
	wg.Wait()
	c.roundAll()
	checkConverged(t, c, want)
}

func TestRateLimitedRoundCompletes(t *testing.T) {
	cfg := testConfig()
	cfg.RateBytes = 16 << 10
	cfg.BatchBytes = 4 << 10
	c := newCluster(t, 2, 2, 4, cfg)
	want := map[string]dht.Record{}
	for i := range 36 {
		key := keyName(i)
		rec := write(dht.Record{}, actor(1), strings.Repeat("x", 1000), c.clock.Now())
		c.put(c.ids[i%2], key, rec)
		want[key] = rec
	}
	p := c.roundAll()
	if p.Bytes <= int64(cfg.RateBytes) {
		t.Fatalf("moved %d bytes, want more than one burst (%d) to exercise the limiter", p.Bytes, cfg.RateBytes)
	}
	checkConverged(t, c, want)
}

func TestRoundCancelled(t *testing.T) {
	c := newCluster(t, 3, 3, 8, testConfig())
	divergence(c, 50)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.nodes[c.ids[0]].s.Round(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Round with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBackgroundLoopRepairs(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = 10 * time.Millisecond
	c := newCluster(t, 3, 3, 8, cfg)
	key := keyName(1)
	reps := c.natural(key)
	rec := write(dht.Record{}, actor(1), "v", c.clock.Now())
	c.put(reps[0], key, rec)
	poll(t, 10*time.Second, "the loop to copy the key to every replica", func() bool {
		for _, id := range reps {
			got, found, err := getLocal(context.Background(), c.nodes[id].st, []byte(key))
			if err != nil || !found || digest(got) != digest(rec) {
				return false
			}
		}
		return true
	})
}

func TestLifecycle(t *testing.T) {
	c := newCluster(t, 2, 2, 4, testConfig())
	s := c.nodes[c.ids[0]].s
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Round(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Round after Close = %v, want ErrClosed", err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
	// The closed node refuses requests; its peer's round reports that.
	if _, err := c.nodes[c.ids[1]].s.Round(context.Background(), nil); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Round against a closed peer = %v, want ErrIncomplete", err)
	}
}
