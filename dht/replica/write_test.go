package replica_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
)

// TestWrite drives Write from an entry node and checks who coordinated,
// the acknowledgements, and where the version landed.
func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		w          int
		entry      func(r roles) peer.ID
		dead       func(r roles) []peer.ID // dead in every view
		killed     func(r roles) []peer.ID // unreachable, alive in every view
		wantCoord  func(r roles) peer.ID
		wantAcks   int
		wantHinted int
		wantQuorum *replica.QuorumError // nil: the write succeeds
		// wantUnavailable: no natural replica can coordinate; nothing is stored.
		wantUnavailable bool
		// hintAt, when set, is a node that must hold a hint for owner.
		hintAt, owner func(r roles) peer.ID
	}{
		{
			name: "entry is a natural replica: coordinates locally", size: 5, w: 2,
			entry:     func(r roles) peer.ID { return r.nat[1] },
			wantCoord: func(r roles) peer.ID { return r.nat[1] }, wantAcks: 2,
		},
		{
			name: "entry is not a replica: forwards to the first natural", size: 5, w: 2,
			entry:     func(r roles) peer.ID { return r.others[0] },
			wantCoord: func(r roles) peer.ID { return r.nat[0] }, wantAcks: 2,
		},
		{
			name: "first natural dead in the view: forwards to the second", size: 5, w: 3,
			entry:     func(r roles) peer.ID { return r.others[1] },
			dead:      func(r roles) []peer.ID { return r.nat[:1] },
			wantCoord: func(r roles) peer.ID { return r.nat[1] }, wantAcks: 3, wantHinted: 1,
			hintAt: func(r roles) peer.ID { return r.others[0] }, owner: func(r roles) peer.ID { return r.nat[0] },
		},
		{
			name: "first natural unreachable though alive in the view: forwards to the second", size: 5, w: 3,
			entry:     func(r roles) peer.ID { return r.others[1] },
			killed:    func(r roles) []peer.ID { return r.nat[:1] },
			wantCoord: func(r roles) peer.ID { return r.nat[1] }, wantAcks: 3, wantHinted: 1,
			hintAt: func(r roles) peer.ID { return r.others[0] }, owner: func(r roles) peer.ID { return r.nat[0] },
		},
		{
			name: "replica fails mid-write: a fallback takes a hint", size: 5, w: 3,
			entry:     func(r roles) peer.ID { return r.nat[0] },
			killed:    func(r roles) []peer.ID { return r.nat[2:] },
			wantCoord: func(r roles) peer.ID { return r.nat[0] }, wantAcks: 3, wantHinted: 1,
			hintAt: func(r roles) peer.ID { return r.others[0] }, owner: func(r roles) peer.ID { return r.nat[2] },
		},
		{
			// Only a natural replica may number versions of the key.
			name: "every natural dead in the view: unavailable, nothing stored", size: 5, w: 2,
			entry:           func(r roles) peer.ID { return r.others[0] },
			dead:            func(r roles) []peer.ID { return r.nat },
			wantUnavailable: true,
		},
		{
			name: "fewer than W replicas: quorum error", size: 3, w: 3,
			entry:      func(r roles) peer.ID { return r.nat[0] },
			killed:     func(r roles) []peer.ID { return r.nat[1:2] },
			wantCoord:  func(r roles) peer.ID { return r.nat[0] },
			wantQuorum: &replica.QuorumError{Op: "write", Acks: 2, Required: 3},
		},
		{
			name: "quorum error reported through a forwarding entry", size: 4, w: 3,
			entry:      func(r roles) peer.ID { return r.others[0] },
			killed:     func(r roles) []peer.ID { return r.nat[1:] },
			wantCoord:  func(r roles) peer.ID { return r.nat[0] },
			wantQuorum: &replica.QuorumError{Op: "write", Acks: 2, Required: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.size, testConfig())
			r := c.roles("write-key")
			if tt.dead != nil {
				c.setDead(true, tt.dead(r)...)
			}
			if tt.killed != nil {
				for _, id := range tt.killed(r) {
					c.net.Kill(id)
				}
			}
			res, err := c.node(tt.entry(r)).e.Write(context.Background(),
				replica.Write{Key: r.key, Value: []byte("v1"), W: tt.w})
			if tt.wantUnavailable {
				if !errors.Is(err, replica.ErrUnavailable) {
					t.Fatalf("err %v, want ErrUnavailable", err)
				}
				for _, id := range c.ids {
					if n := replicaRecords(t, c.node(id)); n != 0 {
						t.Fatalf("node %s stored %d records of a write no replica took", id, n)
					}
				}
				return
			}
			if tt.wantQuorum != nil {
				var qe *replica.QuorumError
				if !errors.As(err, &qe) || *qe != *tt.wantQuorum {
					t.Fatalf("err %v, want %+v", err, tt.wantQuorum)
				}
				if res.Coordinator != tt.wantCoord(r) {
					t.Fatalf("coordinator %s, want %s", res.Coordinator, tt.wantCoord(r))
				}
				return
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			if res.Coordinator != tt.wantCoord(r) || res.Acks != tt.wantAcks || res.Hinted != tt.wantHinted {
				t.Fatalf("coordinator %s acks %d hinted %d, want %s %d %d",
					res.Coordinator, res.Acks, res.Hinted, tt.wantCoord(r), tt.wantAcks, tt.wantHinted)
			}
			if len(res.Context) == 0 {
				t.Fatal("write returned no causal context")
			}
			if tt.hintAt != nil {
				rec, ok := c.hint(tt.hintAt(r), r.key, tt.owner(r))
				if !ok || !slices.Equal(values(rec), []string{"v1"}) {
					t.Fatalf("hint at %s for %s: %v %v", tt.hintAt(r), tt.owner(r), ok, values(rec))
				}
				if _, ok := c.data(tt.hintAt(r), r.key); ok {
					t.Fatal("fallback stored the write as its own replica")
				}
				reg := c.node(res.Coordinator).reg
				if got := counter(t, reg, "ringkv_replica_hinted_writes_total"); int(got) != tt.wantHinted-selfHinted(res, tt.hintAt(r)) {
					t.Fatalf("hinted writes metric %v", got)
				}
			}
		})
	}
}

// selfHinted is 1 when the coordinator itself held a hint (counted in
// the result, not in the fan-out metric).
func selfHinted(res replica.WriteResult, hintAt peer.ID) int {
	if res.Coordinator == hintAt {
		return 1
	}
	return 0
}

// TestWriteRedirect checks the NotReplica answer: an entry node whose view
// is wrong about the key's replicas is redirected to the real ones.
func TestWriteRedirect(t *testing.T) {
	c := newCluster(t, 7, testConfig())
	r := c.roles("redirect-key")
	entry := c.node(r.others[3])
	// The entry believes the natural replicas hold no tokens, so it sends
	// the write to others[0..2], which know better and redirect it.
	entry.view.setRings(c.ring.Without(r.nat...), nil)
	res, err := entry.e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 3})
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if res.Coordinator != r.nat[0] || res.Acks != 3 {
		t.Fatalf("coordinator %s acks %d, want %s acks 3", res.Coordinator, res.Acks, r.nat[0])
	}
	for _, id := range r.nat {
		if _, ok := c.data(id, r.key); !ok {
			t.Fatalf("natural replica %s has no record", id)
		}
	}
	for _, id := range r.others {
		if _, ok := c.data(id, r.key); ok {
			t.Fatalf("non-replica %s stored the write", id)
		}
	}
}

// TestCoordinateNotReplica checks the NotReplica answer on the wire.
func TestCoordinateNotReplica(t *testing.T) {
	c := newCluster(t, 5, testConfig())
	r := c.roles("redirect-key")
	req := &pb.KVRequest{Op: &pb.KVRequest_Coordinate{Coordinate: &pb.CoordinateRequest{Key: r.key, Value: []byte("v")}}}
	var resp pb.KVResponse
	if err := c.node(r.others[0]).ep.Call(context.Background(), r.others[1], replica.Protocol, req, &resp); err != nil {
		t.Fatalf("call: %v", err)
	}
	cr := resp.GetCoordinate()
	var got []peer.ID
	for _, b := range cr.GetReplicas() {
		got = append(got, peer.ID(b))
	}
	if !cr.GetNotReplica() || !slices.Equal(got, r.nat) {
		t.Fatalf("not_replica %v replicas %v, want true %v", cr.GetNotReplica(), got, r.nat)
	}
	if _, ok := c.data(r.others[1], r.key); ok {
		t.Fatal("a non-replica stored the write it refused")
	}
}

// TestWriteW1ReturnsAfterLocalWrite holds every other replica's handler
// and checks that a W=1 write at a replica returns with only its own
// write, the others completing once released.
func TestWriteW1ReturnsAfterLocalWrite(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("w1-key")
	releases := []func(){c.gate(r.nat[1]), c.gate(r.nat[2])}
	res, err := c.node(r.nat[0]).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 1})
	if err != nil || res.Acks != 1 || res.Coordinator != r.nat[0] {
		t.Fatalf("write: %+v %v, want 1 ack at %s", res, err, r.nat[0])
	}
	if _, ok := c.data(r.nat[0], r.key); !ok {
		t.Fatal("coordinator did not store the write")
	}
	for _, id := range r.nat[1:] {
		if _, ok := c.data(id, r.key); ok {
			t.Fatalf("held replica %s already has the write", id)
		}
	}
	for _, release := range releases {
		release()
	}
	poll(t, waitTimeout, "the held replicas to apply the write", func() bool {
		_, ok1 := c.data(r.nat[1], r.key)
		_, ok2 := c.data(r.nat[2], r.key)
		return ok1 && ok2
	})
}

// TestWriteTTL checks that a TTL becomes the new version's expiry, locally
// and through a forwarded coordinate request, and that a TTL past MaxTTL
// is capped instead of overflowing the timestamp.
func TestWriteTTL(t *testing.T) {
	for _, entry := range []string{"natural", "forwarded"} {
		for _, ttl := range []time.Duration{time.Minute, 2500000 * time.Hour} {
			t.Run(fmt.Sprint(entry, "/", ttl), func(t *testing.T) {
				c := newCluster(t, 4, testConfig())
				r := c.roles("ttl-key")
				from := r.nat[0]
				if entry == "forwarded" {
					from = r.others[0]
				}
				_, err := c.node(from).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 3, TTL: ttl})
				if err != nil {
					t.Fatalf("write: %v", err)
				}
				want := c.clock.Now().Add(min(ttl, replica.MaxTTL)).UnixNano()
				for _, id := range r.nat {
					if rec, ok := c.data(id, r.key); !ok || len(rec.Versions) != 1 || rec.Versions[0].ExpiresAt != want {
						t.Fatalf("replica %s: found %v, versions %+v, want one expiring at %d", id, ok, rec.Versions, want)
					}
				}
			})
		}
	}
}

// TestWriteWithContext checks causality through the engine: blind writes
// become siblings, and a write with the context of a read replaces them.
func TestWriteWithContext(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("ctx-key")
	ctx := context.Background()
	e := c.node(r.nat[0]).e
	for _, v := range []string{"a", "b"} {
		if _, err := e.Write(ctx, replica.Write{Key: r.key, Value: []byte(v), W: 3}); err != nil {
			t.Fatalf("write %s: %v", v, err)
		}
	}
	got, err := e.Read(ctx, r.key, 3)
	if err != nil || !slices.Equal(values(got.Record), []string{"a", "b"}) {
		t.Fatalf("read after blind writes: %v %v, want siblings a b", values(got.Record), err)
	}
	if _, err := c.node(r.nat[1]).e.Write(ctx, replica.Write{Key: r.key, Value: []byte("c"), Context: got.Record.Context, W: 3}); err != nil {
		t.Fatalf("write with context: %v", err)
	}
	for _, id := range r.nat {
		if rec, _ := c.data(id, r.key); !slices.Equal(values(rec), []string{"c"}) {
			t.Fatalf("replica %s holds %v, want [c]", id, values(rec))
		}
	}
}

// TestWriteTooManySiblings checks MaxSiblings at a local coordinator and
// through a forwarded request (the error crosses the wire as text).
func TestWriteTooManySiblings(t *testing.T) {
	for _, entry := range []string{"natural", "forwarded"} {
		t.Run(entry, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxSiblings = 2
			c := newCluster(t, 4, cfg)
			r := c.roles("siblings-key")
			from := c.node(r.nat[0])
			if entry == "forwarded" {
				from = c.node(r.others[0])
			}
			ctx := context.Background()
			for _, v := range []string{"a", "b"} {
				if _, err := from.e.Write(ctx, replica.Write{Key: r.key, Value: []byte(v), W: 3}); err != nil {
					t.Fatalf("write %s: %v", v, err)
				}
			}
			_, err := from.e.Write(ctx, replica.Write{Key: r.key, Value: []byte("c"), W: 3})
			if !errors.Is(err, replica.ErrTooManySiblings) {
				t.Fatalf("third blind write: %v, want ErrTooManySiblings", err)
			}
			if rec, _ := c.data(r.nat[0], r.key); !slices.Equal(values(rec), []string{"a", "b"}) {
				t.Fatalf("coordinator holds %v after the refused write", values(rec))
			}
		})
	}
}

// TestWriteIdempotent retries one client write (same WriteID) at the
// same coordinator and checks that every replica ends with one version of
// it. (A write whose answer was lost is not retried elsewhere: see
// TestWriteMovesOnOnlyWhenNotSent.)
func TestWriteIdempotent(t *testing.T) {
	const id = 0xfeedface
	c := newCluster(t, 5, testConfig())
	r := c.roles("idem-key")
	ctx := context.Background()
	w := replica.Write{Key: r.key, Value: []byte("once"), W: 3, WriteID: id}
	entry := c.node(r.nat[0]).e
	for attempt := range 2 {
		res, err := entry.Write(ctx, w)
		if err != nil || res.Coordinator != r.nat[0] {
			t.Fatalf("attempt %d: %v coordinator %s, want %s", attempt, err, res.Coordinator, r.nat[0])
		}
	}
	for _, n := range r.nat {
		rec, ok := c.data(n, r.key)
		if !ok || len(rec.Versions) != 1 || rec.Versions[0].WriteID != id {
			t.Fatalf("replica %s holds %+v, want the write once", n, rec.Versions)
		}
	}
	got, err := entry.Read(ctx, r.key, 3)
	if err != nil || len(got.Record.Versions) != 1 || string(got.Record.Versions[0].Value) != "once" {
		t.Fatalf("read: %+v %v, want one version", got.Record.Versions, err)
	}
}

// TestCoordinateRetryKeepsDot checks at the record level that a retry at
// the same coordinator reissues nothing: the stored record is unchanged.
func TestCoordinateRetryKeepsDot(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("retry-key")
	e := c.node(r.nat[0]).e
	w := replica.Write{Key: r.key, Value: []byte("v"), W: 3, WriteID: 42}
	first, err := e.Write(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := c.data(r.nat[0], r.key)
	c.clock.Advance(time.Second)
	second, err := e.Write(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := c.data(r.nat[0], r.key)
	if !proto.Equal(dht.RecordToPB(before), dht.RecordToPB(after)) || !slices.Equal(first.Context, second.Context) {
		t.Fatalf("retry changed the record: %+v -> %+v", before, after)
	}
}

// TestWritePending checks that a write reaches a joining (pending)
// replica and requires one more acknowledgement per live pending replica.
func TestWritePending(t *testing.T) {
	tests := []struct {
		name        string
		joinerState string // "reachable", "unreachable" (alive in views), "dead" (in views)
		wantAcks    int
		wantJoiner  bool
	}{
		{"pending replica reachable", "reachable", 3, true},
		{"pending replica unreachable: the others make up the quorum", "unreachable", 3, false},
		{"pending replica dead: not required", "dead", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 4, testConfig())
			joiner := c.addJoiner()
			r := c.roles(c.pendingKey(joiner))
			switch tt.joinerState {
			case "unreachable":
				c.net.Kill(joiner)
			case "dead":
				c.setDead(true, joiner)
			}
			res, err := c.node(r.nat[0]).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 2})
			if err != nil || res.Acks != tt.wantAcks {
				t.Fatalf("write: acks %d err %v, want %d acks", res.Acks, err, tt.wantAcks)
			}
			if tt.wantJoiner {
				poll(t, waitTimeout, "the joiner to receive the write", func() bool {
					_, ok := c.data(joiner, r.key)
					return ok
				})
			}
			// Every write in flight finishes within the test; none may
			// leave a record on an unreachable or dead joiner.
			poll(t, waitTimeout, "the natural replicas to hold the write", func() bool {
				for _, id := range r.nat {
					if _, ok := c.data(id, r.key); !ok {
						return false
					}
				}
				return true
			})
			if _, ok := c.data(joiner, r.key); ok != tt.wantJoiner {
				t.Fatalf("joiner holds the write: %v, want %v", ok, tt.wantJoiner)
			}
		})
	}
}

// TestRestartDoesNotReissueDots: a coordinator sends a new version to the
// other replicas before its own write is durable, so a crash can leave
// its store one version behind what they hold. After the restart its next
// write must not get the dot of the version it lost, or the replicas
// holding that version take the new write for it and drop it.
func TestRestartDoesNotReissueDots(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	r := c.roles("crash-key")
	coord := r.nat[0]
	ctx := context.Background()
	write := func(v string) {
		t.Helper()
		if _, err := c.node(coord).e.Write(ctx, replica.Write{Key: r.key, Value: []byte(v), W: 3}); err != nil {
			t.Fatalf("write %s: %v", v, err)
		}
	}
	write("v1")
	durable, _ := c.data(coord, r.key)
	write("v2")
	// The crash: the coordinator's store lost v2, the others hold it.
	if err := c.node(coord).st.Put(ctx, replica.DataKey(r.pos, r.key), durable); err != nil {
		t.Fatal(err)
	}
	c.restart(coord)
	write("v3")
	got, err := c.node(r.nat[1]).e.Read(ctx, r.key, 3)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if want := []string{"v1", "v2", "v3"}; !slices.Equal(values(got.Record), want) {
		t.Fatalf("after the restart the replicas hold %v, want the blind writes %v as siblings", values(got.Record), want)
	}
}

// TestWriteMovesOnOnlyWhenNotSent: a write goes on to the next replica
// only when the first one certainly did not act on it. A replica that
// took the write and lost its answer leaves the outcome unknown, and the
// write has one version, not a second one made elsewhere.
func TestWriteMovesOnOnlyWhenNotSent(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(c *cluster, r roles, entry peer.ID)
		wantErr error // nil: the write succeeds, coordinated by nat[1]
	}{
		{"first replica unreachable", func(c *cluster, r roles, _ peer.ID) { c.net.Kill(r.nat[0]) }, nil},
		{"first replica shutting down", func(c *cluster, r roles, _ peer.ID) { _ = c.node(r.nat[0]).e.Close() }, nil},
		{"first replica learning the members", func(c *cluster, r roles, _ peer.ID) {
			cfg := c.cfg
			cfg.Coordinates = func() bool { return false }
			c.restartWithConfig(r.nat[0], cfg)
		}, nil},
		{"answer lost", func(c *cluster, r roles, entry peer.ID) { c.net.Block(r.nat[0], entry) }, replica.ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 5, testConfig())
			r := c.roles("moves-on")
			entry := r.others[0]
			tt.breakIt(c, r, entry)
			res, err := c.node(entry).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte("v"), W: 2})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil || res.Coordinator != r.nat[1] {
				t.Fatalf("write: coordinator %s, err %v; want %s, nil", res.Coordinator, err, r.nat[1])
			}
			for _, id := range r.nat {
				if rec, ok := c.data(id, r.key); ok && len(rec.Versions) != 1 {
					t.Fatalf("replica %s holds %d versions of one write", id, len(rec.Versions))
				}
			}
			if tt.wantErr != nil {
				if _, ok := c.data(r.nat[0], r.key); !ok {
					t.Fatal("the first replica did not apply the write whose answer was lost")
				}
			}
		})
	}
}
