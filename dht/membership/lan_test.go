package membership

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht"
)

// lanN is the cluster size of the DefaultLANConfig tests.
const lanN = 50

// lanRuns is how many kills TestLANDetection measures; RINGKV_LAN_RUNS
// overrides it.
func lanRuns() int {
	if n, err := strconv.Atoi(os.Getenv("RINGKV_LAN_RUNS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// TestLANDetection measures, at N = 50 with DefaultLANConfig in real time,
// how long it takes until every survivor declared a killed node dead. The
// target (5s) is reported, not asserted; 30s is a sanity bound.
func TestLANDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time N=50 test; skipped with -short")
	}
	var all []time.Duration
	for run := 0; run < lanRuns(); run++ {
		t.Run(fmt.Sprintf("run%d", run), func(t *testing.T) {
			c := newCluster(t, lanN, DefaultLANConfig())
			c.joinAll()
			c.allSee(60*time.Second, c.ids, c.ids, isNormal)
			victim := c.ids[1+run%(lanN-1)]
			survivors := without(c.ids, victim)
			start := time.Now()
			c.net.Kill(victim)
			c.allSee(30*time.Second, survivors, []peer.ID{victim}, isDead)
			first, last := detectionSpan(c, victim, survivors, start)
			t.Logf("N=%d: first survivor declared the killed node dead after %v, all %d after %v",
				lanN, first, len(survivors), last)
			all = append(all, last)
			if got := c.log.deaths(survivors, survivors); len(got) != 0 {
				t.Fatalf("live node %s declared dead by %s", short(got[0].ev.Member.ID), short(got[0].observer))
			}
		})
	}
	t.Logf("N=%d DefaultLANConfig detection by all survivors: %v", lanN, all)
}

// detectionSpan returns when the first and the last survivor saw victim
// dead, from the event log. It waits for events still being delivered.
func detectionSpan(c *cluster, victim peer.ID, survivors []peer.ID, start time.Time) (first, last time.Duration) {
	var seen map[peer.ID]time.Duration
	waitFor(c.t, 10*time.Second, func() (bool, string) {
		seen = make(map[peer.ID]time.Duration)
		for _, o := range c.log.find(victim, dht.StateDead) {
			if _, ok := seen[o.observer]; !ok && !o.at.Before(start) {
				seen[o.observer] = o.at.Sub(start)
			}
		}
		return len(seen) >= len(survivors), fmt.Sprintf("%d of %d dead events", len(seen), len(survivors))
	})
	first = time.Duration(1<<63 - 1)
	for _, id := range survivors {
		d := seen[id]
		first, last = min(first, d), max(last, d)
	}
	return first, last
}

// TestLANNoFalseDeadUnderLoad joins and runs N = 50 with DefaultLANConfig
// while every core is busy, and expects no live node ever declared dead.
func TestLANNoFalseDeadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time N=50 test; skipped with -short")
	}
	cfg := DefaultLANConfig()
	spin(t)
	c := newCluster(t, lanN, cfg)
	c.joinAll()
	c.allSee(60*time.Second, c.ids, c.ids, isNormal)
	holdFor(t, 10*cfg.ProbeInterval, func() string {
		if got := c.log.deaths(c.ids, c.ids); len(got) != 0 {
			return "live node " + short(got[0].ev.Member.ID) + " declared dead by " + short(got[0].observer)
		}
		return ""
	})
	var health int
	for _, id := range c.ids {
		health = max(health, c.node(id).HealthScore())
	}
	t.Logf("N=%d under load: %d suspect events, 0 dead; worst health score %d",
		lanN, countState(c, dht.StateSuspect), health)
}
