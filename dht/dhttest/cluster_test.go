package dhttest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/dhttest"
	"github.com/ringkv/ringkv/dht/node"
	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// bound is the safety net of every wait in these tests, not a measured
// figure.
const bound = 30 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	t.Cleanup(cancel)
	return ctx
}

// TestClusterBasics checks that New converges, the identities are
// deterministic, and a write is stored on N replicas' stores.
func TestClusterBasics(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 4, Seed: 7, Zones: []string{"a", "b"}})
	if got := c.N(); got != 4 {
		t.Fatalf("N() = %d, want 4", got)
	}
	for i := range 4 {
		if c.Node(i).Self() != c.ID(i) {
			t.Errorf("slot %d runs peer %s, slot ID is %s", i, c.Node(i).Self(), c.ID(i))
		}
		if j, ok := c.Index(c.ID(i)); !ok || j != i {
			t.Errorf("Index(ID(%d)) = %d, %v", i, j, ok)
		}
		if got := len(c.Members(i)); got != 4 {
			t.Errorf("slot %d knows %d members, want 4", i, got)
		}
	}
	again := dhttest.New(t, dhttest.Options{N: 1, Seed: 7})
	if again.ID(0) != c.ID(0) {
		t.Errorf("same seed gave slot 0 the IDs %s and %s", c.ID(0), again.ID(0))
	}

	ctx := ctxFor(t)
	key := []byte("basics")
	if _, err := c.Node(0).Put(ctx, key, []byte("v"), node.WriteOptions{W: 3}); err != nil {
		t.Fatalf("put: %v", err)
	}
	holders := 0
	for i := range 4 {
		if _, err := c.Store(i).Get(ctx, replica.DataKey(ring.KeyPos(key), key)); err == nil {
			holders++
		}
	}
	if holders != 3 {
		t.Errorf("%d stores hold the key after a W=3 put, want 3", holders)
	}
}

// TestKillRestartKeepsStore checks that a killed node looks dead to the
// others, and that Restart brings back the same peer with its data.
func TestKillRestartKeepsStore(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 3})
	ctx := ctxFor(t)
	if _, err := c.Node(0).Put(ctx, []byte("k"), []byte("v"), node.WriteOptions{W: 3}); err != nil {
		t.Fatalf("put: %v", err)
	}
	before := c.Store(2).Len()
	id := c.ID(2)
	c.Kill(2)
	if c.Up(2) || c.Node(2) != nil {
		t.Fatal("slot 2 is still up after Kill")
	}
	dhttest.WaitUntil(t, bound, "slots 0 and 1 to see slot 2 dead", func() bool {
		return c.StateOf(0, 2) == dht.StateDead && c.StateOf(1, 2) == dht.StateDead
	})
	c.Restart(2)
	if c.Node(2).Self() != id {
		t.Fatalf("restarted slot 2 is %s, was %s", c.Node(2).Self(), id)
	}
	if got := c.Store(2).Len(); got < before {
		t.Errorf("restarted slot 2 holds %d records, had %d", got, before)
	}
	res, err := c.Node(2).Get(ctx, []byte("k"), node.ReadOptions{R: 3})
	if err != nil || len(res.Siblings) != 1 || string(res.Siblings[0].Value) != "v" {
		t.Fatalf("get after restart: %+v, %v", res, err)
	}
}

// TestPartitionAndHeal checks that partitioned slots cannot call each
// other and can again after Heal.
func TestPartitionAndHeal(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 4})
	c.Partition([]int{0, 1})
	tests := []struct {
		i, j int
		want bool
	}{
		{0, 1, true}, {2, 3, true}, {0, 2, false}, {1, 3, false},
	}
	for _, tt := range tests {
		if got := c.Reachable(tt.i, tt.j); got != tt.want {
			t.Errorf("Reachable(%d, %d) = %v, want %v", tt.i, tt.j, got, tt.want)
		}
	}
	dhttest.WaitFor(t, bound, "each side to see the other down", func() error {
		for _, p := range [][2]int{{0, 2}, {0, 3}, {1, 2}, {1, 3}} {
			for _, o := range [][2]int{p, {p[1], p[0]}} {
				if st := c.StateOf(o[0], o[1]); st.Live() && st != dht.StateSuspect {
					return fmt.Errorf("slot %d sees slot %d as %v", o[0], o[1], st)
				}
			}
		}
		return nil
	})
	c.Heal()
	c.WaitNormal(bound)
}

// TestWaitForReportsElapsed checks that WaitFor returns once the check
// passes and reports a non-negative duration.
func TestWaitForReportsElapsed(t *testing.T) {
	calls := 0
	d := dhttest.WaitFor(t, bound, "third call", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 || d < 0 {
		t.Fatalf("WaitFor returned after %d calls, elapsed %v", calls, d)
	}
}

// TestLoseResponses checks that a lost answer fails the caller's call
// (here one replica read of an R=3 get) and that the loss is consumed.
func TestLoseResponses(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 3, Seed: 3})
	ctx := ctxFor(t)
	key := []byte("lossy")
	if _, err := c.Node(0).Put(ctx, key, []byte("v"), node.WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	c.LoseResponses(0, replica.Protocol, 1)
	if got := c.PendingLosses(0, replica.Protocol); got != 1 {
		t.Fatalf("PendingLosses = %d, want 1", got)
	}
	_, err := c.Node(0).Get(ctx, key, node.ReadOptions{R: 3})
	var qe *node.QuorumError
	if !errors.As(err, &qe) {
		t.Errorf("R=3 get with one answer lost = %v, want a QuorumError", err)
	}
	if got := c.PendingLosses(0, replica.Protocol); got != 0 {
		t.Errorf("PendingLosses = %d after the get, want 0", got)
	}
	if _, err := c.Node(0).Get(ctx, key, node.ReadOptions{R: 3}); err != nil {
		t.Errorf("R=3 get once the loss is spent: %v", err)
	}
}

// TestPartitionRefusesCalls checks that calls between separated slots
// fail at once with dht.ErrUnreachable and work again after Heal, and
// that a slot added during a partition joins the group of the unlisted.
func TestPartitionRefusesCalls(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 3, Seed: 4})
	ctx := ctxFor(t)
	c.Partition([]int{0})
	// Slot 0 alone can write W=1 (it coordinates as a fallback) but not W=3.
	if _, err := c.Node(0).Put(ctx, []byte("k"), []byte("v"), node.WriteOptions{W: 1}); err != nil {
		t.Fatalf("W=1 put on the isolated slot: %v", err)
	}
	if _, err := c.Node(0).Put(ctx, []byte("k"), []byte("v"), node.WriteOptions{W: 3}); err == nil {
		t.Fatal("W=3 put on the isolated slot succeeded")
	}
	j := c.Add()
	c.Start(j)
	if !c.Reachable(j, 1) || c.Reachable(j, 0) {
		t.Errorf("slot %d added during the partition: reaches 1 %v, reaches 0 %v; want true, false", j, c.Reachable(j, 1), c.Reachable(j, 0))
	}
	c.Heal()
	c.WaitNormal(bound)
	if _, err := c.Node(0).Put(ctx, []byte("k"), []byte("v"), node.WriteOptions{W: 3}); err != nil {
		t.Fatalf("W=3 put after Heal: %v", err)
	}
}
