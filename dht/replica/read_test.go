package replica_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/version"
)

// seed is a record placed directly in one node's store before a read.
type seed struct {
	at    func(r roles) peer.ID
	owner func(r roles) peer.ID // set: stored as a hint for owner
	rec   func(r roles) dht.Record
}

func (c *cluster) plant(t *testing.T, r roles, seeds []seed) {
	t.Helper()
	ctx := context.Background()
	for _, s := range seeds {
		e := c.node(s.at(r)).e
		var err error
		if s.owner != nil {
			_, err = replica.ApplyHint(ctx, e, r.key, s.rec(r), s.owner(r))
		} else {
			_, err = e.Apply(ctx, r.key, r.pos, s.rec(r))
		}
		if err != nil {
			t.Fatalf("plant: %v", err)
		}
	}
}

// sibA and sibB are concurrent writes of the key by nat[0] and nat[1].
func sibA(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[0], "a", 100) }
func sibB(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[1], "b", 200) }

func TestRead(t *testing.T) {
	nat := func(i int) func(r roles) peer.ID { return func(r roles) peer.ID { return r.nat[i] } }
	other := func(i int) func(r roles) peer.ID { return func(r roles) peer.ID { return r.others[i] } }
	tests := []struct {
		name         string
		size         int
		reader       func(r roles) peer.ID
		r            int
		seeds        []seed
		dead         func(r roles) []peer.ID // dead in every view
		killed       func(r roles) []peer.ID // unreachable, alive in every view
		wantValues   []string
		wantFound    bool
		wantAnswered int
		wantQuorum   *replica.QuorumError
	}{
		{
			name: "R answers merged into siblings", size: 4, reader: nat(0), r: 3,
			seeds:      []seed{{at: nat(0), rec: sibA}, {at: nat(1), rec: sibB}},
			wantValues: []string{"a", "b"}, wantFound: true, wantAnswered: 3,
		},
		{
			name: "read at a non-replica asks the replicas", size: 4, reader: other(0), r: 3,
			seeds:      []seed{{at: nat(2), rec: sibA}},
			wantValues: []string{"a"}, wantFound: true, wantAnswered: 3,
		},
		{
			name: "never written: not found, still a quorum", size: 3, reader: nat(0), r: 3,
			wantFound: false, wantAnswered: 3,
		},
		{
			name: "R above N capped at N", size: 3, reader: nat(1), r: 9,
			seeds:     []seed{{at: nat(1), rec: sibA}},
			wantFound: true, wantValues: []string{"a"}, wantAnswered: 3,
		},
		{
			name: "empty fallback does not count", size: 5, reader: nat(0), r: 3,
			seeds:      []seed{{at: nat(0), rec: sibA}},
			dead:       func(r roles) []peer.ID { return r.nat[1:2] },
			wantQuorum: &replica.QuorumError{Op: "read", Acks: 2, Required: 3},
		},
		{
			name: "fallback holding a hint counts", size: 5, reader: nat(0), r: 3,
			seeds: []seed{
				{at: nat(0), rec: sibA},
				{at: other(0), owner: nat(1), rec: sibB},
			},
			dead:       func(r roles) []peer.ID { return r.nat[1:2] },
			wantValues: []string{"a", "b"}, wantFound: true, wantAnswered: 3,
		},
		{
			name: "fewer than R reachable: quorum error", size: 3, reader: nat(0), r: 2,
			seeds:      []seed{{at: nat(0), rec: sibA}},
			killed:     func(r roles) []peer.ID { return r.nat[1:] },
			wantQuorum: &replica.QuorumError{Op: "read", Acks: 1, Required: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.size, testConfig())
			r := c.roles("read-key")
			c.plant(t, r, tt.seeds)
			if tt.dead != nil {
				c.setDead(true, tt.dead(r)...)
			}
			if tt.killed != nil {
				for _, id := range tt.killed(r) {
					c.net.Kill(id)
				}
			}
			got, err := c.node(tt.reader(r)).e.Read(context.Background(), r.key, tt.r)
			if tt.wantQuorum != nil {
				var qe *replica.QuorumError
				if !errors.As(err, &qe) || *qe != *tt.wantQuorum {
					t.Fatalf("err %v, want %+v", err, tt.wantQuorum)
				}
				return
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if got.Found != tt.wantFound || got.Answered != tt.wantAnswered || !slices.Equal(values(got.Record), tt.wantValues) {
				t.Fatalf("found %v answered %d values %v, want %v %d %v",
					got.Found, got.Answered, values(got.Record), tt.wantFound, tt.wantAnswered, tt.wantValues)
			}
		})
	}
}

// TestReadRepair checks that a read that asks every replica
// (ReadRepairChance 1) writes the merged record to every natural replica
// whose answer was stale or missing, and only to those.
func TestReadRepair(t *testing.T) {
	nat := func(i int) func(r roles) peer.ID { return func(r roles) peer.ID { return r.nat[i] } }
	v1 := func(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[0], "v1", 100) }
	v2 := func(r roles) dht.Record { return mkRecord(v1(r), r.nat[1], "v2", 200) }
	tests := []struct {
		name        string
		r           int
		seeds       []seed
		wantValues  []string
		wantRepairs int
	}{
		{
			name: "missing remote replica", r: 2,
			seeds:      []seed{{at: nat(0), rec: v2}, {at: nat(1), rec: v2}},
			wantValues: []string{"v2"}, wantRepairs: 1,
		},
		{
			name: "stale remote replica", r: 2,
			seeds:      []seed{{at: nat(0), rec: v2}, {at: nat(1), rec: v2}, {at: nat(2), rec: v1}},
			wantValues: []string{"v2"}, wantRepairs: 1,
		},
		{
			name: "stale local replica", r: 3,
			seeds:      []seed{{at: nat(0), rec: v1}, {at: nat(1), rec: v2}, {at: nat(2), rec: v2}},
			wantValues: []string{"v2"}, wantRepairs: 1,
		},
		{
			name: "concurrent siblings spread to every replica", r: 1,
			seeds:      []seed{{at: nat(0), rec: sibA}, {at: nat(1), rec: sibB}},
			wantValues: []string{"a", "b"}, wantRepairs: 3,
		},
		{
			name: "replicas in agreement: no repair", r: 3,
			seeds:      []seed{{at: nat(0), rec: v2}, {at: nat(1), rec: v2}, {at: nat(2), rec: v2}},
			wantValues: []string{"v2"}, wantRepairs: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ReadRepairChance = 1 // ask every replica, so every one is repaired
			c := newCluster(t, 4, cfg)
			r := c.roles("repair-key")
			c.plant(t, r, tt.seeds)
			reader := c.node(r.nat[0])
			if _, err := reader.e.Read(context.Background(), r.key, tt.r); err != nil {
				t.Fatalf("read: %v", err)
			}
			poll(t, waitTimeout, "every natural replica to hold the merged record", func() bool {
				for _, id := range r.nat {
					rec, ok := c.data(id, r.key)
					if !ok || !slices.Equal(values(rec), tt.wantValues) {
						return false
					}
				}
				return true
			})
			poll(t, waitTimeout, "the repair count", func() bool {
				return int(counter(t, reader.reg, "ringkv_replica_read_repairs_total")) == tt.wantRepairs
			})
			if _, ok := c.data(r.others[0], r.key); ok {
				t.Fatal("read repair wrote to a node that is not a replica")
			}
		})
	}
}

// TestReadLWW checks last-writer-wins mode: reads and writes keep one
// sibling, the one with the latest timestamp.
func TestReadLWW(t *testing.T) {
	cfg := testConfig()
	cfg.LWW = true
	t.Run("read resolves concurrent replicas", func(t *testing.T) {
		c := newCluster(t, 3, cfg)
		r := c.roles("lww-key")
		c.plant(t, r, []seed{
			{at: func(r roles) peer.ID { return r.nat[1] }, rec: sibA},
			{at: func(r roles) peer.ID { return r.nat[2] }, rec: sibB},
		})
		got, err := c.node(r.nat[0]).e.Read(context.Background(), r.key, 3)
		if err != nil || !slices.Equal(values(got.Record), []string{"b"}) {
			t.Fatalf("read: %v %v, want [b]", values(got.Record), err)
		}
	})
	t.Run("blind writes keep the latest", func(t *testing.T) {
		c := newCluster(t, 3, cfg)
		r := c.roles("lww-key")
		for i, v := range []string{"first", "second", "third"} {
			c.clock.Advance(1)
			entry := c.node(r.nat[i%3]).e
			if _, err := entry.Write(context.Background(), replica.Write{Key: r.key, Value: []byte(v), W: 3}); err != nil {
				t.Fatalf("write %s: %v", v, err)
			}
		}
		for _, id := range r.nat {
			if rec, _ := c.data(id, r.key); !slices.Equal(values(rec), []string{"third"}) {
				t.Fatalf("replica %s holds %v, want [third]", id, values(rec))
			}
		}
	})
}

// TestReadDedupesRetriedWrite: two coordinators each made a version of
// one client write (the first one's answer was lost and the write was
// retried through the second); a read that meets both must return one.
func TestReadDedupesRetriedWrite(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("dup-key")
	x := version.Update(dht.Record{}, nil, dht.Version{Value: []byte("once"), WriteID: 7, Timestamp: 1}, dht.ActorOf(r.nat[0]), 1)
	y := version.Update(dht.Record{}, nil, dht.Version{Value: []byte("once"), WriteID: 7, Timestamp: 2}, dht.ActorOf(r.nat[1]), 2)
	c.plant(t, r, []seed{
		{at: func(r roles) peer.ID { return r.nat[0] }, rec: func(roles) dht.Record { return x }},
		{at: func(r roles) peer.ID { return r.nat[1] }, rec: func(roles) dht.Record { return y }},
	})
	got, err := c.node(r.nat[0]).e.Read(context.Background(), r.key, 3)
	if err != nil || len(got.Record.Versions) != 1 {
		t.Fatalf("read: %d versions %v, want one", len(got.Record.Versions), err)
	}
	if _, err := c.node(r.nat[2]).e.Apply(context.Background(), r.key, r.pos, version.Merge(x, y)); err != nil {
		t.Fatal(err)
	}
	if rec, _ := c.data(r.nat[2], r.key); len(rec.Versions) != 1 {
		t.Fatalf("stored %d versions of one write", len(rec.Versions))
	}
}

// TestReadReplicaRefusesOversizedAnswer checks that a reader validates a
// peer's answer: a record with more versions than any replica may hold is
// refused and counted, not merged.
func TestReadReplicaRefusesOversizedAnswer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSiblings = 2
	c := newCluster(t, 3, cfg)
	r := c.roles("hostile-key")
	huge := &pb.Record{}
	for i := range 4*cfg.MaxSiblings + 1 {
		huge.Versions = append(huge.Versions, &pb.Version{Value: []byte("x"), Dot: &pb.Dot{Actor: 1, Counter: uint64(i + 1)}})
	}
	c.wrap(r.nat[1], func(dht.Handler) dht.Handler {
		return func(context.Context, peer.ID, proto.Message) (proto.Message, error) {
			return &pb.KVResponse{Result: &pb.KVResponse_ReadBatch{ReadBatch: &pb.ReadBatchResponse{
				Reads: []*pb.ReadResponse{{Found: true, Record: huge}}, Errors: []string{""},
			}}}, nil
		}
	})
	reader := c.node(r.nat[0])
	if _, _, err := reader.e.ReadReplica(context.Background(), r.nat[1], r.key); !errors.Is(err, replica.ErrBadRequest) {
		t.Fatalf("ReadReplica: %v, want ErrBadRequest", err)
	}
	if got := counter(t, reader.reg, "ringkv_replica_refused_total", "reason", "record"); got != 1 {
		t.Fatalf("refused{reason=record} = %v, want 1", got)
	}
}

// TestReadPlanPending: a live pending replica is asked and raises R by
// one, as it raises W; a dead one is neither.
func TestReadPlanPending(t *testing.T) {
	for _, dead := range []bool{false, true} {
		c := newCluster(t, 5, testConfig())
		j := c.addJoiner()
		key := c.pendingKey(j)
		if dead {
			c.setDead(true, j)
		}
		r := c.roles(key)
		got, required := replica.ReadPlan(c.node(r.nat[0]).e, r.pos, 2)
		want := []replica.TargetInfo{{ID: r.nat[0]}, {ID: r.nat[1]}, {ID: r.nat[2]}}
		wantRequired := 2
		if !dead {
			want, wantRequired = append(want, replica.TargetInfo{ID: j, Pending: true}), 3
		}
		if !slices.Equal(got, want) || required != wantRequired {
			t.Errorf("pending dead=%v: targets %v required %d, want %v required %d", dead, got, required, want, wantRequired)
		}
	}
}

// TestReadWithLaggingViewSeesNewReplicasWrite: a node whose view still
// shows a join in progress reads a key whose write went, from a view
// where the join had completed, to W of the new replicas only. Reading
// R of the old replicas alone could miss it; the pending replica's extra
// answer makes the read meet the write.
func TestReadWithLaggingViewSeesNewReplicasWrite(t *testing.T) {
	cfg := testConfig()
	cfg.ReadRepairChance = 0
	cfg.SpeculativeRead = time.Hour
	c := newCluster(t, 5, cfg)
	j := c.addJoiner()
	r := c.roles(c.pendingKey(j))
	future := c.ring.With(ring.Node{ID: j, Capacity: 1})
	newNat := future.PreferenceList(r.pos, cfg.Replicas)
	var dropped peer.ID // the old replica the join displaces: the lagging reader
	for _, id := range r.nat {
		if !slices.Contains(newNat, id) {
			dropped = id
		}
	}
	if dropped == "" {
		t.Fatalf("joiner %s displaces no replica of %q", j, r.key)
	}
	// The order the reader asks in: itself first, then its plan's order.
	plan, required := replica.ReadPlan(c.node(dropped).e, r.pos, 2)
	if required != 3 {
		t.Errorf("lagging reader requires %d answers, want 3", required)
	}
	order := make([]peer.ID, len(plan))
	for i, tg := range plan {
		order[i] = tg.ID
	}
	if i := slices.Index(order, dropped); i > 0 {
		order[0], order[i] = order[i], order[0]
	}
	// The write reached the joiner and the one new replica that R=2 of
	// the old replicas, in the reader's order, would not ask.
	rec := mkRecord(dht.Record{}, j, "written-after-the-join", 100)
	c.plant(t, r, []seed{
		{at: func(roles) peer.ID { return j }, rec: func(roles) dht.Record { return rec }},
		{at: func(roles) peer.ID { return order[2] }, rec: func(roles) dht.Record { return rec }},
	})
	got, err := c.node(dropped).e.Read(context.Background(), r.key, 2)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !got.Found || !slices.Equal(values(got.Record), []string{"written-after-the-join"}) {
		t.Fatalf("lagging reader got found=%v %v, want the write on the new replicas", got.Found, values(got.Record))
	}
}
