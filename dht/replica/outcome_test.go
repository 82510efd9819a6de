package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/replica"
)

// failingStore fails data-key Puts once armed (a full disk, an fsync error).
type failingStore struct {
	*dhttest.MemStore
	fail atomic.Bool
}

func (s *failingStore) Put(ctx context.Context, key []byte, rec dht.Record) error {
	if s.fail.Load() && bytes.HasPrefix(key, replica.DataPrefix()) {
		return errors.New("disk full")
	}
	return s.MemStore.Put(ctx, key, rec)
}

// restartWith replaces id's engine with one over st.
func (c *cluster) restartWith(id peer.ID, st dht.Store) *replica.Engine {
	old := c.node(id)
	_ = old.e.Close()
	cfg := c.cfg
	cfg.Registerer = prometheus.NewRegistry()
	e, err := replica.New(cfg, id, old.ep, st, old.view, c.clock)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = e.Close() })
	old.e = e
	return e
}

// The coordinator's own write fails after the fanout started: the other
// replicas apply the version, so the write's outcome is unknown, not failed.
func TestLocalFailureAfterFanoutIsOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("local-fail")
	coord := r.nat[0]
	fs := &failingStore{MemStore: c.node(coord).st}
	e := c.restartWith(coord, fs)
	fs.fail.Store(true)
	_, err := e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 2})
	if err == nil {
		t.Fatal("write succeeded")
	}
	poll(t, waitTimeout, "the other replicas to apply the version", func() bool {
		_, ok1 := c.data(r.nat[1], r.key)
		_, ok2 := c.data(r.nat[2], r.key)
		return ok1 && ok2
	})
	if !errors.Is(err, replica.ErrOutcomeUnknown) {
		t.Fatalf("err = %v: not ErrOutcomeUnknown, but nat[1] and nat[2] hold the write (2 >= W)", err)
	}
}

// Same, through a non-replica entry node: the remote coordinator's
// outcome-unknown error stays one across the wire.
func TestRemoteLocalFailureIsOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 4, testConfig())
	r := c.roles("local-fail")
	coord := r.nat[0]
	fs := &failingStore{MemStore: c.node(coord).st}
	c.restartWith(coord, fs)
	fs.fail.Store(true)
	_, err := c.node(r.others[0]).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 2})
	poll(t, waitTimeout, "the other replicas to apply the version", func() bool {
		_, ok1 := c.data(r.nat[1], r.key)
		_, ok2 := c.data(r.nat[2], r.key)
		return ok1 && ok2
	})
	if !errors.Is(err, replica.ErrOutcomeUnknown) {
		t.Fatalf("err = %v (%T): not ErrOutcomeUnknown, but two replicas hold the write", err, err)
	}
}

// The remote coordinator took the write and the caller's deadline passed
// before its answer: the write may have been applied.
func TestTimeoutAfterCoordinatorTookItIsOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 4, testConfig())
	r := c.roles("timeout")
	hold := make(chan struct{})
	defer close(hold)
	c.wrap(r.nat[0], func(next dht.Handler) dht.Handler {
		return func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
			resp, err := next(context.Background(), from, req) // coordinates it
			select {                                           // the answer is slow
			case <-ctx.Done():
			case <-hold:
			}
			return resp, err
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.node(r.others[0]).e.Write(ctx, replica.Write{Key: r.key, Value: []byte("v"), W: 2})
	if !errors.Is(err, replica.ErrOutcomeUnknown) {
		t.Fatalf("err = %v: not ErrOutcomeUnknown", err)
	}
}

// The caller's deadline passes mid-fanout, after the local write: the
// other replicas may still apply it.
func TestTimeoutMidFanoutIsOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("timeout")
	defer c.gate(r.nat[1])()
	defer c.gate(r.nat[2])()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.node(r.nat[0]).e.Write(ctx, replica.Write{Key: r.key, Value: []byte("v"), W: 2})
	if !errors.Is(err, replica.ErrOutcomeUnknown) {
		t.Fatalf("err = %v: not ErrOutcomeUnknown", err)
	}
}

// TestEpochsExhausted: a node that has handed out the last actor epoch of
// its last generation takes no fresh actor, so it never reissues an
// earlier actor's dots. It
// still continues the actor a key it wrote holds, and a write of a key
// new to it, sent to it directly or forwarded by a node that is not a
// replica, is coordinated by another replica.
func TestEpochsExhausted(t *testing.T) {
	c := newCluster(t, 4, testConfig())
	ctx := context.Background()
	ex := c.ids[0]
	var keys []roles // keys whose first replica is ex
	for i := 0; len(keys) < 3; i++ {
		if r := c.roles(fmt.Sprint("exhausted-", i)); r.nat[0] == ex {
			keys = append(keys, r)
		}
	}
	e := c.node(ex).e
	old, fresh, forwarded := keys[0], keys[1], keys[2]
	first, err := e.Write(ctx, replica.Write{Key: old.key, Value: []byte("v1"), W: 2})
	if err != nil || first.Coordinator != ex {
		t.Fatalf("first write: %+v %v", first, err)
	}
	replica.SetEpochForTest(e, replica.MaxGeneration, replica.MaxEpoch)
	again, err := e.Write(ctx, replica.Write{Key: old.key, Value: []byte("v2"), Context: first.Context, W: 2})
	if err != nil || again.Coordinator != ex {
		t.Fatalf("write continuing this node's actor: %+v %v; want it coordinated here", again, err)
	}
	res, err := e.Write(ctx, replica.Write{Key: fresh.key, Value: []byte("v"), W: 2})
	if err != nil || res.Coordinator == ex {
		t.Fatalf("write of a new key through the exhausted node: %+v %v; want another replica to coordinate it", res, err)
	}
	res, err = c.node(forwarded.others[0]).e.Write(ctx, replica.Write{Key: forwarded.key, Value: []byte("v"), W: 2})
	if err != nil || res.Coordinator == ex {
		t.Fatalf("forwarded write of a new key: %+v %v; want another replica to coordinate it", res, err)
	}
}

// TestActorGenerations: a node that has handed out the last epoch of a
// generation takes its next actor from the next generation, under a
// prefix none of its earlier actors has, and still continues the actors
// of this run; after a restart it neither continues them nor goes back to
// an earlier generation.
func TestActorGenerations(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	ctx := context.Background()
	r := c.roles("generation-key")
	coord := r.nat[0]
	e := c.node(coord).e
	write := func(key []byte, v string, cctx []dht.Dot) replica.WriteResult {
		t.Helper()
		res, err := e.Write(ctx, replica.Write{Key: key, Value: []byte(v), Context: cctx, W: 3})
		if err != nil || res.Coordinator != coord {
			t.Fatalf("write %s: %+v %v", v, res, err)
		}
		return res
	}
	actorOf := func(key []byte) uint64 {
		t.Helper()
		rec, _ := c.data(coord, key)
		var a uint64
		for _, d := range rec.Context {
			if d.Actor&^uint64(1<<32-1) == replica.ActorPrefix(coord, 0) || d.Actor&^uint64(1<<32-1) == replica.ActorPrefix(coord, 1) ||
				d.Actor&^uint64(1<<32-1) == replica.ActorPrefix(coord, 2) {
				a = max(a, d.Actor)
			}
		}
		return a
	}
	first := write(r.key, "v1", nil)
	old := actorOf(r.key)
	if old>>32 != replica.ActorPrefix(coord, 0)>>32 {
		t.Fatalf("first actor %#x is not of generation 0", old)
	}
	replica.SetEpochForTest(e, 0, replica.MaxEpoch)
	var other []byte
	for i := 0; other == nil; i++ {
		if k := fmt.Appendf(nil, "generation-other-%d", i); c.roles(string(k)).nat[0] == coord {
			other = k
		}
	}
	write(other, "w", nil)
	if got := actorOf(other); got != replica.ActorPrefix(coord, 1)|1 {
		t.Fatalf("fresh actor after the last epoch = %#x, want generation 1 epoch 1 (%#x)", got, replica.ActorPrefix(coord, 1)|1)
	}
	if replica.ActorPrefix(coord, 1) == replica.ActorPrefix(coord, 0) {
		t.Fatal("generations 0 and 1 share a prefix")
	}
	write(r.key, "v2", first.Context)
	if got := actorOf(r.key); got != old {
		t.Fatalf("a key written in generation 0 of this run got actor %#x, want %#x continued", got, old)
	}
	c.restart(coord)
	e = c.node(coord).e
	write(r.key, "v3", nil)
	if got := actorOf(r.key); got>>32 != replica.ActorPrefix(coord, 1)>>32 || got&(1<<32-1) <= 1 {
		t.Fatalf("after the restart the key got actor %#x, want a fresh generation-1 actor past the lease", got)
	}
}
