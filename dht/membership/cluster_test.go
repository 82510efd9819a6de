package membership

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// convergeBound is a generous bound for DefaultLocalConfig clusters on a
// loaded 2-core machine under -race.
const convergeBound = 20 * time.Second

func TestJoinConverges(t *testing.T) {
	c := newCluster(t, 16, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	for _, id := range c.ids {
		if n := c.node(id).NumLive(); n != 16 {
			t.Fatalf("%s: NumLive = %d, want 16", short(id), n)
		}
	}
	if got := c.log.deaths(c.ids, c.ids); len(got) != 0 {
		t.Fatalf("%d dead events during a healthy join", len(got))
	}
}

func TestKillDetected(t *testing.T) {
	c := newCluster(t, 16, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	killed := c.ids[13:]
	survivors := c.ids[:13]
	start := time.Now()
	for _, id := range killed {
		c.net.Kill(id)
	}
	// Bound: probe round trip + maximum suspicion timeout (6 × 4 ×
	// log10(16) × 100ms ≈ 2.9s) + gossip, with ample slack for -race.
	c.allSee(15*time.Second, survivors, killed, isDead)
	t.Logf("3 of 16 killed: all survivors declared them dead after %v", time.Since(start))
	c.allSee(convergeBound, survivors, survivors, isNormal)

	// The dead stay dead: a few more push-pull and gossip periods.
	holdFor(t, 2*c.cfg.PushPullInterval, func() string {
		for _, o := range survivors {
			for _, id := range killed {
				if s := c.state(o, id); s != dht.StateDead {
					return short(o) + " sees killed " + short(id) + " as " + s.String()
				}
			}
		}
		return ""
	})
	if got := c.log.deaths(survivors, survivors); len(got) != 0 {
		t.Fatalf("survivor %s declared dead by survivor %s", short(got[0].ev.Member.ID), short(got[0].observer))
	}
}

func TestNoFalseDeadUnderCPULoad(t *testing.T) {
	cfg := DefaultLANConfig()
	c := newCluster(t, 16, cfg)
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	spin(t)
	// About ten probe periods with every core busy.
	holdFor(t, 10*cfg.ProbeInterval, func() string {
		if got := c.log.deaths(c.ids, c.ids); len(got) != 0 {
			return "live node " + short(got[0].ev.Member.ID) + " declared dead by " + short(got[0].observer)
		}
		return ""
	})
	t.Logf("suspect events under load: %d", countState(c, dht.StateSuspect))
}

func countState(c *cluster, s dht.State) int {
	n := 0
	for _, id := range c.ids {
		n += len(c.log.find(id, s))
	}
	return n
}

func TestPartitionHeal(t *testing.T) {
	c := newCluster(t, 12, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	a, b := c.ids[:6], c.ids[6:]
	c.net.Partition(a, b)
	c.allSee(convergeBound, a, b, isDead)
	c.allSee(convergeBound, b, a, isDead)
	c.allSee(convergeBound, a, a, isNormal)
	incs := make(map[string]uint64)
	for _, id := range c.ids {
		incs[string(id)] = c.node(id).Local().Incarnation
	}
	c.net.Heal()
	c.allSee(30*time.Second, c.ids, c.ids, isNormal)
	for _, id := range c.ids {
		if got := c.node(id).Local().Incarnation; got <= incs[string(id)] {
			t.Fatalf("%s healed without refuting: incarnation %d, was %d", short(id), got, incs[string(id)])
		}
	}
}

func TestRestartSameID(t *testing.T) {
	c := newCluster(t, 8, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	victim := c.ids[5]
	others := without(c.ids, victim)
	old := c.node(victim)
	c.net.Kill(victim)
	_ = old.Close()
	c.allSee(convergeBound, others, []peer.ID{victim}, isDead)
	dm, _ := c.node(others[0]).Member(victim)
	deadInc := dm.Incarnation

	c.net.Revive(victim)
	fresh := c.start(victim)
	if fresh.Local().Incarnation != 0 {
		t.Fatalf("fresh node starts at incarnation %d", fresh.Local().Incarnation)
	}
	if _, err := fresh.Join(context.Background(), c.ids[:1]); err != nil {
		t.Fatal(err)
	}
	c.allSee(convergeBound, others, []peer.ID{victim}, isNormal)
	c.allSee(convergeBound, []peer.ID{victim}, c.ids, isNormal)
	if got := fresh.Local().Incarnation; got <= deadInc {
		t.Fatalf("restarted node at incarnation %d, others remembered it dead at %d", got, deadInc)
	}
}

func TestLeave(t *testing.T) {
	c := newCluster(t, 8, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	leaver := c.ids[3]
	others := without(c.ids, leaver)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.node(leaver).Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.node(leaver).SetState(dht.StateNormal); !errors.Is(err, ErrLeft) {
		t.Fatalf("SetState after Leave: %v, want ErrLeft", err)
	}
	_ = c.node(leaver).Close()
	c.net.Kill(leaver)
	c.allSee(convergeBound, others, []peer.ID{leaver}, func(s dht.State) bool { return s == dht.StateLeft })
	// Left must not turn into Dead: watch for a maximum suspicion timeout.
	holdFor(t, 3*time.Second, func() string {
		for _, o := range others {
			if s := c.state(o, leaver); s != dht.StateLeft {
				return short(o) + " sees leaver as " + s.String()
			}
		}
		return ""
	})
	if got := c.log.find(leaver, dht.StateDead); len(got) != 0 {
		t.Fatalf("leaver declared dead by %s", short(got[0].observer))
	}
}

func TestSetStateAndStorageGossip(t *testing.T) {
	c := newCluster(t, 6, DefaultLocalConfig())
	c.joinAll()
	c.allSee(convergeBound, c.ids, c.ids, isNormal)
	n := c.node(c.ids[2])
	if err := n.SetState(dht.StateLeaving); err != nil {
		t.Fatal(err)
	}
	if err := n.SetState(dht.StateDead); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("SetState(Dead) = %v, want ErrInvalidState", err)
	}
	n.SetStorage(12345)
	waitFor(t, convergeBound, func() (bool, string) {
		for _, o := range c.ids {
			m, ok := c.node(o).Member(c.ids[2])
			if !ok || m.State != dht.StateLeaving || m.StorageUsed != 12345 {
				return false, short(o) + " has not seen the change: " + m.State.String()
			}
		}
		return true, ""
	})
}

// TestCompleteComesFromACompletePeer: a node that starts incomplete (a
// restart, a join) becomes complete only by merging the list of a peer
// whose own list is complete, whichever side started the push-pull; two
// restarted nodes that only know each other stay incomplete until one of
// them is told to stop waiting.
func TestCompleteComesFromACompletePeer(t *testing.T) {
	c := newCluster(t, 0, DefaultLocalConfig())
	ids := testIDs(t, 5)
	founder, joiner, r1, r2, alone := ids[0], ids[1], ids[2], ids[3], ids[4]
	incomplete := DefaultLocalConfig()
	incomplete.StartIncomplete = true
	c.start(founder)
	for _, id := range ids[1:] {
		c.startWith(id, incomplete)
	}
	if !c.node(founder).Complete() || c.node(joiner).Complete() {
		t.Fatalf("at start: founder complete %v, joiner %v; want true, false", c.node(founder).Complete(), c.node(joiner).Complete())
	}
	ctx := context.Background()
	if _, err := c.node(joiner).Join(ctx, []peer.ID{founder}); err != nil {
		t.Fatal(err)
	}
	if !c.node(joiner).Complete() {
		t.Fatal("a node that merged the founder's list is not complete")
	}

	// r1 and r2 restarted and found only each other.
	if _, err := c.node(r1).Join(ctx, []peer.ID{r2}); err != nil {
		t.Fatal(err)
	}
	if c.node(r1).Complete() || c.node(r2).Complete() {
		t.Fatalf("two incomplete nodes made each other complete: %v, %v", c.node(r1).Complete(), c.node(r2).Complete())
	}
	// The founder reaches r2 (its push-pull, r2's answer): r2 takes its
	// complete list, and r1 gets it from r2 or the others by push-pull.
	if _, err := c.node(founder).Join(ctx, []peer.ID{r2}); err != nil {
		t.Fatal(err)
	}
	if !c.node(r2).Complete() {
		t.Fatal("a node that merged a push-pull from a complete peer is not complete")
	}
	waitFor(t, convergeBound, func() (bool, string) {
		return c.node(r1).Complete() && c.node(r1).NumLive() == 4, fmt.Sprintf("r1 complete %v with %d live members, want true with 4",
			c.node(r1).Complete(), c.node(r1).NumLive())
	})

	if c.node(alone).Complete() {
		t.Fatal("a node that met no one is complete")
	}
	c.node(alone).MarkComplete()
	if !c.node(alone).Complete() {
		t.Fatal("MarkComplete did not make the list complete")
	}
}
