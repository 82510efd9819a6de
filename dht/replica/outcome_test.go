package replica_test

import (
	"bytes"
	"context"
	"encoding/binary"
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
// of this run; a failed local write retires the actors of every
// generation; after a restart the node continues none of them and stays
// in the new generation. The lease keeps the layout earlier releases read
// for generation 0, and tells them to take no fresh actor after it.
func TestActorGenerations(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	ctx := context.Background()
	r := c.roles("generation-key")
	coord := r.nat[0]
	fs := &failingStore{MemStore: c.node(coord).st}
	e := c.restartWith(coord, fs)
	write := func(key []byte, v string, cctx []dht.Dot) (replica.WriteResult, error) {
		return e.Write(ctx, replica.Write{Key: key, Value: []byte(v), Context: cctx, W: 3})
	}
	// actorOf is coord's newest actor in its record of key.
	actorOf := func(key []byte) uint64 {
		t.Helper()
		rec, _ := c.data(coord, key)
		var a uint64
		for _, d := range rec.Context {
			for g := range uint64(3) {
				if d.Actor>>32 == replica.ActorPrefix(coord, g)>>32 {
					a = max(a, d.Actor)
				}
			}
		}
		return a
	}
	lease := func(key string) []byte {
		rec, err := fs.Get(ctx, []byte(key))
		if err != nil {
			return nil
		}
		return rec.Versions[0].Value
	}
	first, err := write(r.key, "v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	old := actorOf(r.key)
	if old>>32 != replica.ActorPrefix(coord, 0)>>32 {
		t.Fatalf("first actor %#x is not of generation 0", old)
	}
	if b := lease("m/replica/epoch"); len(b) != 8 || binary.BigEndian.Uint64(b) < old&(1<<32-1) || lease("m/replica/generation") != nil {
		t.Fatalf("generation-0 lease %x, generation %x: want 8 bytes covering epoch %d and no generation", b, lease("m/replica/generation"), old&(1<<32-1))
	}

	replica.SetEpochForTest(e, 0, replica.MaxEpoch)
	var other []byte
	for i := 0; other == nil; i++ {
		if k := fmt.Appendf(nil, "generation-other-%d", i); c.roles(string(k)).nat[0] == coord {
			other = k
		}
	}
	if _, err := write(other, "w", nil); err != nil {
		t.Fatal(err)
	}
	if got, want := actorOf(other), replica.ActorPrefix(coord, 1)|1; got != want {
		t.Fatalf("fresh actor after the last epoch = %#x, want generation 1 epoch 1 (%#x)", got, want)
	}
	if b, g := lease("m/replica/epoch"), lease("m/replica/generation"); binary.BigEndian.Uint64(b) != replica.MaxEpoch ||
		len(g) != 16 || binary.BigEndian.Uint64(g) != 1 {
		t.Fatalf("lease after the switch: epoch key %x, generation key %x; want the last epoch, and generation 1", b, g)
	}
	again, err := write(r.key, "v2", first.Context)
	if err != nil {
		t.Fatal(err)
	}
	if got := actorOf(r.key); got != old {
		t.Fatalf("a key written in generation 0 of this run got actor %#x, want %#x continued", got, old)
	}

	fs.fail.Store(true)
	if _, err := write(other, "fails", nil); err == nil {
		t.Fatal("a write whose local store write fails succeeded")
	}
	fs.fail.Store(false)
	if _, err := write(r.key, "v3", again.Context); err != nil {
		t.Fatal(err)
	}
	retired := actorOf(r.key)
	if retired == old || retired>>32 != replica.ActorPrefix(coord, 1)>>32 || retired&(1<<32-1) <= 1 {
		t.Fatalf("after a failed local write the key got actor %#x, want a fresh generation-1 actor (old %#x)", retired, old)
	}

	e = c.restartWith(coord, fs)
	if _, err := write(r.key, "v4", nil); err != nil {
		t.Fatal(err)
	}
	if got := actorOf(r.key); got>>32 != replica.ActorPrefix(coord, 1)>>32 || got <= retired {
		t.Fatalf("after the restart the key got actor %#x, want a fresh generation-1 actor past %#x", got, retired)
	}
}
