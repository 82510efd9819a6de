package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/version"
)

// hintedWrite writes key at nat[0] with W=3 while nat[1] is dead in every
// view, so others[0] takes a hint for nat[1].
func hintedWrite(t *testing.T, c *cluster, r roles, value string) {
	t.Helper()
	c.setDead(true, r.nat[1])
	res, err := c.node(r.nat[0]).e.Write(context.Background(), replica.Write{Key: r.key, Value: []byte(value), W: 3})
	if err != nil || res.Hinted != 1 {
		t.Fatalf("hinted write: %+v %v, want one hint", res, err)
	}
}

func TestHintStoredForOwner(t *testing.T) {
	c := newCluster(t, 5, testConfig())
	r := c.roles("hint-key")
	hintedWrite(t, c, r, "v")
	fb := c.node(r.others[0])
	rec, ok := c.hint(fb.id, r.key, r.nat[1])
	if !ok || !slices.Equal(values(rec), []string{"v"}) {
		t.Fatalf("hint for %s: %v %v", r.nat[1], ok, values(rec))
	}
	if _, ok := c.data(fb.id, r.key); ok {
		t.Fatal("fallback stored a replica record")
	}
	if _, ok := c.data(r.nat[1], r.key); ok {
		t.Fatal("the dead owner received the write")
	}
	if got := fb.e.Hints(); got != 1 {
		t.Fatalf("Hints() = %d, want 1", got)
	}
	// A read of the key on the fallback includes the hint.
	got, found, err := c.node(r.nat[0]).e.ReadReplica(context.Background(), fb.id, r.key)
	if err != nil || !found || !slices.Equal(values(got), []string{"v"}) {
		t.Fatalf("ReadReplica on the fallback: %v %v %v", values(got), found, err)
	}
	sk := replica.HintKey(r.pos, r.key, r.nat[1])
	pos, key, target, ok := replica.ParseHintKey(sk)
	if !ok || pos != r.pos || string(key) != string(r.key) || target != r.nat[1] {
		t.Fatalf("hint key parses to %d %q %s %v", pos, key, target, ok)
	}
}

func TestHandOff(t *testing.T) {
	tests := []struct {
		name          string
		ownerAlive    bool // in the fallback's view
		ownerKilled   bool // unreachable on memnet
		changeInPlace bool // the hint changes while it is being delivered
		wantDelivered int
		wantHints     int64
		wantOwner     []string // owner's replica values after the round; nil: none
	}{
		{name: "owner still dead: kept", wantHints: 1},
		{name: "owner alive: delivered and deleted", ownerAlive: true, wantDelivered: 1, wantOwner: []string{"v"}},
		{name: "owner alive in the view but unreachable: kept", ownerAlive: true, ownerKilled: true, wantHints: 1},
		{
			name: "hint changed during delivery: kept for the next round", ownerAlive: true, changeInPlace: true,
			wantHints: 1, wantOwner: []string{"v"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 5, testConfig())
			r := c.roles("handoff-key")
			hintedWrite(t, c, r, "v")
			fb := c.node(r.others[0])
			if tt.ownerAlive {
				fb.view.setDead(false, r.nat[1])
			}
			if tt.ownerKilled {
				c.net.Kill(r.nat[1])
			}
			if tt.changeInPlace {
				// The owner's handler merges a newer write into the hint
				// before it applies the one being handed off.
				c.wrap(r.nat[1], func(next dht.Handler) dht.Handler {
					var once sync.Once
					return func(ctx context.Context, from peer.ID, req proto.Message) (proto.Message, error) {
						var err error
						once.Do(func() {
							cur, _ := c.hint(fb.id, r.key, r.nat[1])
							_, err = replica.ApplyHint(ctx, fb.e, r.key, mkRecord(cur, r.nat[0], "w", 300), r.nat[1])
						})
						if err != nil {
							return nil, err
						}
						return next(ctx, from, req)
					}
				})
			}
			if got := fb.e.HandOff(context.Background()); got != tt.wantDelivered {
				t.Fatalf("HandOff delivered %d, want %d", got, tt.wantDelivered)
			}
			if got := fb.e.Hints(); got != tt.wantHints {
				t.Fatalf("Hints() = %d, want %d", got, tt.wantHints)
			}
			_, hinted := c.hint(fb.id, r.key, r.nat[1])
			if hinted != (tt.wantHints > 0) {
				t.Fatalf("hint in store: %v, want %v", hinted, tt.wantHints > 0)
			}
			rec, ok := c.data(r.nat[1], r.key)
			if ok != (tt.wantOwner != nil) || !slices.Equal(values(rec), tt.wantOwner) {
				t.Fatalf("owner holds %v (%v), want %v", values(rec), ok, tt.wantOwner)
			}
			if got := counter(t, fb.reg, "ringkv_replica_hints_delivered_total"); int(got) != tt.wantDelivered {
				t.Fatalf("delivered metric %v, want %d", got, tt.wantDelivered)
			}
			if !tt.changeInPlace {
				return
			}
			// The next round delivers the changed hint.
			if got := fb.e.HandOff(context.Background()); got != 1 || fb.e.Hints() != 0 {
				t.Fatalf("second round delivered %d, %d hints left", got, fb.e.Hints())
			}
			if rec, _ := c.data(r.nat[1], r.key); !slices.Equal(values(rec), []string{"w"}) {
				t.Fatalf("owner holds %v after the second round, want [w]", values(rec))
			}
		})
	}
}

// TestHandOffLoop checks that the background loop hands hints off by
// itself once the owner is alive.
func TestHandOffLoop(t *testing.T) {
	cfg := testConfig()
	cfg.HintInterval = 10 * time.Millisecond
	c := newCluster(t, 5, cfg)
	r := c.roles("loop-key")
	hintedWrite(t, c, r, "v")
	fb := c.node(r.others[0])
	fb.view.setDead(false, r.nat[1])
	poll(t, waitTimeout, "the hint to be handed off", func() bool { return fb.e.Hints() == 0 })
	if rec, ok := c.data(r.nat[1], r.key); !ok || !slices.Equal(values(rec), []string{"v"}) {
		t.Fatalf("owner holds %v (%v)", values(rec), ok)
	}
}

// TestHintsCountAndRestart stores hints for several keys and owners,
// restarts the fallback over the same store and checks that the count and
// the reads survive, and that handoff still works.
func TestHintsCountAndRestart(t *testing.T) {
	c := newCluster(t, 6, testConfig())
	ctx := context.Background()
	fbID := c.ids[5]
	type held struct {
		key   []byte
		owner peer.ID
	}
	var hints []held
	for i := range 4 {
		key := fmt.Appendf(nil, "count-%d", i)
		r := c.roles(string(key))
		owners := slices.DeleteFunc(slices.Clone(r.nat), func(id peer.ID) bool { return id == fbID })
		owners = owners[:1+i%2] // odd keys get two hints, for two owners
		for _, owner := range owners {
			rec := mkRecord(dht.Record{}, r.nat[2], fmt.Sprintf("v%d", i), 100)
			if _, err := replica.ApplyHint(ctx, c.node(fbID).e, key, rec, owner); err != nil {
				t.Fatal(err)
			}
			hints = append(hints, held{key, owner})
		}
	}
	// Merging into a hint that exists adds no hint.
	if _, err := replica.ApplyHint(ctx, c.node(fbID).e, hints[0].key, mkRecord(dht.Record{}, c.ids[0], "x", 1), hints[0].owner); err != nil {
		t.Fatal(err)
	}
	want := int64(len(hints))
	if got := c.node(fbID).e.Hints(); got != want {
		t.Fatalf("Hints() = %d, want %d", got, want)
	}
	fb := c.restart(fbID)
	if got := fb.e.Hints(); got != want {
		t.Fatalf("after restart Hints() = %d, want %d", got, want)
	}
	for _, h := range hints {
		_, found, err := c.node(c.ids[0]).e.ReadReplica(ctx, fbID, h.key)
		if err != nil || !found {
			t.Fatalf("read of %q on the restarted fallback: %v %v", h.key, found, err)
		}
	}
	c.setDead(false, c.ids...)
	if got := fb.e.HandOff(ctx); got != len(hints) || fb.e.Hints() != 0 {
		t.Fatalf("HandOff delivered %d of %d, %d left", got, len(hints), fb.e.Hints())
	}
	for _, h := range hints {
		if _, ok := c.data(h.owner, h.key); !ok {
			t.Fatalf("owner %s lacks %q after handoff", h.owner, h.key)
		}
	}
}

// TestHintBatch checks that one round delivers at most HintBatch hints
// per target.
func TestHintBatch(t *testing.T) {
	cfg := testConfig()
	cfg.HintBatch = 2
	c := newCluster(t, 4, cfg)
	ctx := context.Background()
	fb, owner := c.node(c.ids[3]), c.ids[0]
	for i := range 5 {
		key := fmt.Appendf(nil, "batch-%d", i)
		if _, err := replica.ApplyHint(ctx, fb.e, key, mkRecord(dht.Record{}, c.ids[1], "v", 1), owner); err != nil {
			t.Fatal(err)
		}
	}
	for round, want := range []int{2, 2, 1, 0} {
		if got := fb.e.HandOff(ctx); got != want {
			t.Fatalf("round %d delivered %d, want %d", round, got, want)
		}
	}
}

// TestHintLongKey stores a hint for a key of MaxKeySize bytes, the
// largest a peer may send, and checks that it is found after a restart
// and handed off.
func TestHintLongKey(t *testing.T) {
	cfg := testConfig()
	c := newCluster(t, 4, cfg)
	ctx := context.Background()
	key := []byte(strings.Repeat("k", cfg.MaxKeySize))
	fbID, owner := c.ids[3], c.ids[0]
	req := &pb.KVRequest{Op: &pb.KVRequest_Write{Write: &pb.WriteRequest{
		Key: key, Record: dht.RecordToPB(mkRecord(dht.Record{}, c.ids[1], "v", 1)), HintFor: []byte(owner),
	}}}
	if _, err := replica.Handle(ctx, c.node(fbID).e, c.ids[1], req); err != nil {
		t.Fatalf("hinted write of a %d-byte key: %v", len(key), err)
	}
	fb := c.restart(fbID)
	if _, found, err := c.node(owner).e.ReadReplica(ctx, fbID, key); err != nil || !found {
		t.Fatalf("read after restart: found %v, %v", found, err)
	}
	if got := fb.e.HandOff(ctx); got != 1 || fb.e.Hints() != 0 {
		t.Fatalf("HandOff delivered %d, %d hints left", got, fb.e.Hints())
	}
	if rec, ok := c.data(owner, key); !ok || !version.Identical(rec, mkRecord(dht.Record{}, c.ids[1], "v", 1)) {
		t.Fatal("owner did not receive the hint")
	}
}

// TestHintIndexedWhenCallerGaveUp: a hinted write whose context ends while
// it is stored is reported failed, but the store may still have taken it
// (as Badger's committer does); the hint is indexed anyway, so the handoff
// loop, which runs while the index is not empty, delivers it.
func TestHintIndexedWhenCallerGaveUp(t *testing.T) {
	c, fbID, key, r, owner := hintSetup(t, "gave-up")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fb := c.node(fbID)
	fb.st.OnWrite(func(k []byte) {
		if bytes.HasPrefix(k, replica.HintPrefix()) {
			cancel() // the caller gives up while the hint is stored
		}
	})
	rec := mkRecord(dht.Record{}, r.nat[2], "v", 100)
	if _, err := replica.ApplyHint(ctx, fb.e, key, rec, owner); !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyHint = %v, want context.Canceled", err)
	}
	fb.st.OnWrite(nil)
	if got := fb.e.Hints(); got != 1 {
		t.Fatalf("Hints() = %d after a hint was stored for a caller that gave up, want 1", got)
	}
	c.setDead(false, c.ids...)
	if got := fb.e.HandOff(context.Background()); got != 1 || fb.e.Hints() != 0 {
		t.Fatalf("HandOff delivered %d of 1, %d left", got, fb.e.Hints())
	}
	if _, ok := c.data(owner, key); !ok {
		t.Fatalf("owner %s lacks %q after handoff", owner, key)
	}
}

// TestHintIndexForgetsFailedWrite: a hint indexed before a store write that
// did not happen is forgotten by the next handoff round.
func TestHintIndexForgetsFailedWrite(t *testing.T) {
	c, fbID, key, r, owner := hintSetup(t, "never-stored")
	fb := c.node(fbID)
	big := mkRecord(dht.Record{}, r.nat[2], strings.Repeat("x", dht.MaxRecordSize+1), 100)
	if _, err := replica.ApplyHint(context.Background(), fb.e, key, big, owner); !errors.Is(err, dht.ErrRecordTooLarge) {
		t.Fatalf("ApplyHint of an oversized record = %v, want ErrRecordTooLarge from the store", err)
	}
	if got := fb.e.Hints(); got != 1 {
		t.Fatalf("Hints() = %d after a failed hinted write, want 1 (indexed before the write)", got)
	}
	fb.e.HandOff(context.Background())
	if got := fb.e.Hints(); got != 0 {
		t.Fatalf("Hints() = %d after a round, want the unstored hint forgotten", got)
	}
}

// hintSetup is a 6-node cluster, a fallback (the last node), key and its
// roles, and the replica of key the fallback will hold a hint for.
func hintSetup(t *testing.T, name string) (c *cluster, fbID peer.ID, key []byte, r roles, owner peer.ID) {
	c = newCluster(t, 6, testConfig())
	fbID, key = c.ids[5], []byte(name)
	r = c.roles(name)
	owner = r.nat[0]
	if owner == fbID {
		owner = r.nat[1]
	}
	return c, fbID, key, r, owner
}

// TestHintAgedOut: a hint whose newest version is older than HintMaxAge
// is dropped undelivered, whether its replica is up or not, so it can
// never arrive after tombstone collection purged the key it would bring
// back; tombstones and expired values age the same way. A young write
// keeps its hint, old siblings and all.
func TestHintAgedOut(t *testing.T) {
	maxAge := testConfig().HintMaxAge
	value := func(r roles) dht.Record { return mkRecord(dht.Record{}, r.nat[2], "v", 0) }
	tests := []struct {
		name          string
		hint          func(r roles) dht.Record
		advance       time.Duration
		ownerDown     bool
		wantDelivered int
		wantAged      float64
	}{
		{name: "young value delivered", hint: value, advance: maxAge - time.Second, wantDelivered: 1},
		{name: "old value dropped", hint: value, advance: maxAge + time.Second, wantAged: 1},
		{name: "old value dropped while its replica is down", hint: value, advance: maxAge + time.Second, ownerDown: true, wantAged: 1},
		{name: "old tombstone dropped", hint: func(r roles) dht.Record { return mkTombstone(dht.Record{}, r.nat[2], 0) },
			advance: maxAge + time.Second, ownerDown: true, wantAged: 1},
		{name: "old expired value dropped", hint: func(r roles) dht.Record {
			return writeVersion(dht.Record{}, r.nat[2], dht.Version{Value: []byte("v"), ExpiresAt: clockStart.Add(time.Minute).UnixNano()})
		}, advance: maxAge + time.Second, ownerDown: true, wantAged: 1},
		{name: "a young write keeps a hint with an old sibling", hint: func(r roles) dht.Record {
			old := mkRecord(dht.Record{}, r.nat[2], "old", 0)
			return version.Merge(old, mkRecord(dht.Record{}, r.nat[1], "young", int64(maxAge)))
		}, advance: maxAge + time.Second, wantDelivered: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fbID, key, r, owner := hintSetup(t, "aged")
			fb := c.node(fbID)
			if _, err := replica.ApplyHint(context.Background(), fb.e, key, tt.hint(r), owner); err != nil {
				t.Fatal(err)
			}
			c.clock.Advance(tt.advance)
			c.setDead(tt.ownerDown, owner)
			if got := fb.e.HandOff(context.Background()); got != tt.wantDelivered {
				t.Fatalf("HandOff delivered %d, want %d", got, tt.wantDelivered)
			}
			if got := counter(t, fb.reg, "ringkv_replica_hints_aged_out_total"); got != tt.wantAged {
				t.Fatalf("aged-out metric %v, want %v", got, tt.wantAged)
			}
			if _, held := c.hint(fbID, key, owner); held || fb.e.Hints() != 0 {
				t.Fatalf("hint still held (%v, Hints() = %d) after the round", held, fb.e.Hints())
			}
			if _, ok := c.data(owner, key); ok != (tt.wantDelivered == 1) {
				t.Fatalf("owner holds the key: %v, want %v", ok, tt.wantDelivered == 1)
			}
		})
	}
}

// TestHintAgeingKeepsFreshWrite: a blind put over a value nobody wrote
// for longer than HintMaxAge, with two replicas down, is acknowledged by
// its coordinator and a fallback's hint. The hint carries the old value
// as a sibling of the new one, and the next handoff round keeps it: the
// acknowledged write is still on two nodes.
func TestHintAgeingKeepsFreshWrite(t *testing.T) {
	c := newCluster(t, 5, testConfig())
	ctx := context.Background()
	r := c.roles("fresh-over-old")
	coord := c.node(r.nat[0]).e
	if _, err := coord.Write(ctx, replica.Write{Key: r.key, Value: []byte("old"), W: 3}); err != nil {
		t.Fatal(err)
	}
	c.clock.Advance(c.cfg.HintMaxAge + time.Minute)
	c.setDead(true, r.nat[1], r.nat[2])
	res, err := coord.Write(ctx, replica.Write{Key: r.key, Value: []byte("new"), W: 2})
	if err != nil || res.Acks < 2 || res.Hinted == 0 {
		t.Fatalf("write with two replicas down: %+v %v; want it acknowledged through a hint", res, err)
	}
	poll(t, waitTimeout, "both hints to be stored", func() bool {
		n := int64(0)
		for _, id := range r.others {
			n += c.node(id).e.Hints()
		}
		return n == 2
	})
	for _, id := range r.others {
		c.node(id).e.HandOff(ctx)
	}
	holders := 0
	for _, id := range c.ids {
		if rec, ok := c.data(id, r.key); ok && slices.Contains(values(rec), "new") {
			holders++
		}
		for _, o := range r.nat {
			if h, ok := c.hint(id, r.key, o); ok && slices.Contains(values(h), "new") {
				holders++
			}
		}
	}
	if holders < 2 {
		t.Fatalf("an acknowledged W=2 write is held by %d node(s) after a handoff round, want 2 or more", holders)
	}
}
