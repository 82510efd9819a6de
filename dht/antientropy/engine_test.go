package antientropy

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/replica"
)

// engineView is the replica.View of a test node, from the shared world.
type engineView struct{ p placement }

func (v engineView) Natural(pos uint64) []peer.ID {
	return v.p.Serving().PreferenceList(pos, v.p.Replicas())
}

func (v engineView) Pending(pos uint64) []peer.ID {
	nat := v.Natural(pos)
	var out []peer.ID
	for _, id := range v.p.Future().PreferenceList(pos, v.p.Replicas()) {
		if !contains(nat, id) {
			out = append(out, id)
		}
	}
	return out
}

func (v engineView) Walk(pos uint64, fn func(peer.ID) bool) { v.p.Serving().Walk(pos, fn) }
func (v engineView) Alive(id peer.ID) bool                  { return v.p.Alive(id) }
func (v engineView) Down(id peer.ID) bool                   { return !v.p.Alive(id) }

// newEngineCluster is a cluster whose nodes run the real replica engine
// (as dht/node wires them) instead of the fake.
func newEngineCluster(t *testing.T, count, n int) (*cluster, map[peer.ID]*replica.Engine) {
	c := newCluster(t, count, n, 8, testConfig())
	engines := map[peer.ID]*replica.Engine{}
	for _, id := range c.ids {
		old := c.nodes[id]
		_ = old.s.Close()
		cfg := replica.DefaultConfig()
		cfg.Replicas, cfg.WriteQuorum, cfg.ReadQuorum = n, 1, 1
		ep := c.w.net.Endpoint(id)
		eng, err := replica.New(cfg, id, ep, old.st, engineView{placement{w: c.w, self: id}}, c.clock)
		if err != nil {
			t.Fatalf("replica.New: %v", err)
		}
		if err := eng.Start(context.Background()); err != nil {
			t.Fatalf("engine Start: %v", err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		s, err := New(c.cfg, placement{w: c.w, self: id}, eng, ep, old.st, c.clock)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		c.nodes[id] = &tnode{id: id, st: old.st, s: s}
		engines[id] = eng
	}
	return c, engines
}

func TestWithReplicaEngine(t *testing.T) {
	c, engines := newEngineCluster(t, 4, 3)
	want := divergence(c, 300)
	c.roundAll()
	checkConverged(t, c, want)

	// A delete through the engine at W=1 reaches every replica only after
	// anti-entropy; then collection removes it everywhere.
	key := keyName(11)
	ctx := context.Background()
	if _, err := engines[c.ids[0]].Write(ctx, replica.Write{Key: []byte(key), Tombstone: true, W: 1}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	c.roundAll()
	c.clock.Advance(2 * c.cfg.TombstoneGrace)
	c.roundAll()
	for _, id := range c.ids {
		if _, ok, err := getLocal(ctx, c.nodes[id].st, []byte(key)); err != nil || ok {
			t.Fatalf("%s still holds the deleted key after collection (err %v)", id, err)
		}
	}
	res, err := engines[c.ids[1]].Read(ctx, []byte(key), 3)
	if err != nil || (res.Found && !res.Record.DeletedAt(c.clock.Now().UnixNano())) {
		t.Fatalf("read after collection: %+v, %v", res, err)
	}
}
