package replica_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ringkv/ringkv/dht/replica"
	"github.com/ringkv/ringkv/dht/ring"
)

// Placement of writes: which nodes a write goes to and how many
// acknowledgements it needs, from the coordinator's view.

func TestWriteTargets(t *testing.T) {
	type want struct {
		targets  []replica.TargetInfo
		required int
	}
	nat := func(id peer.ID) replica.TargetInfo { return replica.TargetInfo{ID: id} }
	fb := func(id, owner peer.ID) replica.TargetInfo { return replica.TargetInfo{ID: id, HintFor: owner} }
	tests := []struct {
		name   string
		size   int
		coord  func(r roles) peer.ID
		dead   func(r roles) []peer.ID // dead in the coordinator's view
		joiner string                  // "alive" or "dead": a joining node is a pending replica of the key
		w      int
		want   func(r roles, joiner peer.ID) want
	}{
		{
			name: "all natural replicas alive", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.nat[0] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2])}, 2}
			},
		},
		{
			name: "one natural dead: first other node in ring order stands in", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.nat[0] },
			dead:  func(r roles) []peer.ID { return r.nat[1:2] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[2]), fb(r.others[0], r.nat[1])}, 2}
			},
		},
		{
			name: "first natural dead, coordinator second", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.nat[1] },
			dead:  func(r roles) []peer.ID { return r.nat[0:1] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[1]), nat(r.nat[2]), fb(r.others[0], r.nat[0])}, 2}
			},
		},
		{
			name: "two naturals dead: fallbacks in ring order, owners in preference order", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.nat[1] },
			dead:  func(r roles) []peer.ID { return []peer.ID{r.nat[0], r.nat[2]} },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[1]), fb(r.others[0], r.nat[0]), fb(r.others[1], r.nat[2])}, 2}
			},
		},
		{
			name: "dead fallback skipped", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.nat[0] },
			dead:  func(r roles) []peer.ID { return []peer.ID{r.nat[1], r.others[0]} },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[2]), fb(r.others[1], r.nat[1])}, 2}
			},
		},
		{
			name: "non-replica coordinator stands in first", size: 6, w: 2,
			coord: func(r roles) peer.ID { return r.others[2] },
			dead:  func(r roles) []peer.ID { return r.nat[1:2] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[2]), fb(r.others[2], r.nat[1])}, 2}
			},
		},
		{
			name: "no node left to stand in", size: 3, w: 2,
			coord: func(r roles) peer.ID { return r.nat[0] },
			dead:  func(r roles) []peer.ID { return r.nat[1:2] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[2])}, 2}
			},
		},
		{
			name: "live pending replica added and required", size: 5, w: 2, joiner: "alive",
			coord: func(r roles) peer.ID { return r.nat[0] },
			want: func(r roles, j peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2]), {ID: j, Pending: true}}, 3}
			},
		},
		{
			name: "pending replica with W=1", size: 5, w: 1, joiner: "alive",
			coord: func(r roles) peer.ID { return r.nat[0] },
			want: func(r roles, j peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2]), {ID: j, Pending: true}}, 2}
			},
		},
		{
			name: "dead pending replica neither added nor required", size: 5, w: 2, joiner: "dead",
			coord: func(r roles) peer.ID { return r.nat[0] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2])}, 2}
			},
		},
		{
			name: "W above N capped at N", size: 4, w: 7,
			coord: func(r roles) peer.ID { return r.nat[2] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2])}, 3}
			},
		},
		{
			name: "W=0 uses the configured quorum", size: 4, w: 0,
			coord: func(r roles) peer.ID { return r.nat[2] },
			want: func(r roles, _ peer.ID) want {
				return want{[]replica.TargetInfo{nat(r.nat[0]), nat(r.nat[1]), nat(r.nat[2])}, 2}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.size, testConfig())
			key := "target-key"
			var joiner peer.ID
			if tt.joiner != "" {
				joiner = c.addJoiner()
				key = c.pendingKey(joiner)
				if tt.joiner == "dead" {
					c.setDead(true, joiner)
				}
			}
			r := c.roles(key)
			coord := c.node(tt.coord(r))
			if tt.dead != nil {
				coord.view.setDead(true, tt.dead(r)...)
			}
			got, required := replica.WriteTargets(coord.e, r.pos, tt.w)
			w := tt.want(r, joiner)
			if !slices.Equal(got, w.targets) || required != w.required {
				t.Fatalf("targets %v required %d,\nwant    %v required %d", got, required, w.targets, w.required)
			}
		})
	}
}

// TestWriteTargetsInvariants checks, over many keys and random sets of
// dead nodes, what every placement must satisfy: no node twice; every
// live natural replica a plain target; a fallback never a natural
// replica, always alive, standing in for a dead natural; fallbacks taken
// in ring order (the coordinator first when it is not a replica); and as
// many of them as there are dead naturals and free live nodes.
func TestWriteTargetsInvariants(t *testing.T) {
	c := newCluster(t, 8, testConfig())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		r := c.roles(fmt.Sprintf("inv-%d", i))
		coord := c.node(c.ids[rng.IntN(len(c.ids))])
		dead := map[peer.ID]bool{}
		for _, id := range c.ids {
			if id != coord.id && rng.IntN(3) == 0 {
				dead[id] = true
			}
		}
		coord.view.setDead(false, c.ids...)
		for id := range dead {
			coord.view.setDead(true, id)
		}
		got, _ := replica.WriteTargets(coord.e, r.pos, 2)
		if err := checkPlacement(r, coord.id, dead, got); err != nil {
			t.Fatalf("key %q coordinator %s dead %v: %v\ntargets %v", r.key, coord.id, dead, err, got)
		}
	}
}

func checkPlacement(r roles, coord peer.ID, dead map[peer.ID]bool, got []replica.TargetInfo) error {
	seen := map[peer.ID]bool{}
	var downNat []peer.ID
	for _, id := range r.nat {
		if dead[id] {
			downNat = append(downNat, id)
		}
	}
	// The free nodes, in the order fallbacks must be taken.
	var free []peer.ID
	if !slices.Contains(r.nat, coord) {
		free = append(free, coord)
	}
	for _, id := range r.others {
		if id != coord && !dead[id] {
			free = append(free, id)
		}
	}
	var fallbacks []peer.ID
	for _, tg := range got {
		if seen[tg.ID] {
			return fmt.Errorf("%s targeted twice", tg.ID)
		}
		seen[tg.ID] = true
		switch {
		case tg.HintFor == "":
			if !slices.Contains(r.nat, tg.ID) || dead[tg.ID] {
				return fmt.Errorf("%s is a plain target but not a live natural replica", tg.ID)
			}
		case slices.Contains(r.nat, tg.ID):
			return fmt.Errorf("fallback %s is a natural replica", tg.ID)
		case dead[tg.ID]:
			return fmt.Errorf("fallback %s is dead", tg.ID)
		case !slices.Contains(downNat, tg.HintFor):
			return fmt.Errorf("fallback %s stands in for %s, not a dead natural", tg.ID, tg.HintFor)
		default:
			fallbacks = append(fallbacks, tg.ID)
		}
	}
	for _, id := range r.nat {
		if !dead[id] && !seen[id] {
			return fmt.Errorf("live natural %s not targeted", id)
		}
	}
	want := free[:min(len(downNat), len(free))]
	if !slices.Equal(fallbacks, want) {
		return fmt.Errorf("fallbacks %v, want %v", fallbacks, want)
	}
	return nil
}

// TestCoordinatorCountsItself checks that a natural replica coordinating a
// write counts its own durable write once, and that a node that is not a
// replica refuses to coordinate (it could not number the version safely).
func TestCoordinatorCountsItself(t *testing.T) {
	tests := []struct {
		name       string
		coord      func(r roles) peer.ID
		wantAcks   int
		wantHinted int
		wantHint   bool // the coordinator holds a hint for nat[0]
	}{
		{"natural replica counts itself", func(r roles) peer.ID { return r.nat[0] }, 2, 1, false},
	}
	t.Run("non-replica refuses", func(t *testing.T) {
		c := newCluster(t, 4, testConfig())
		r := c.roles("count-key")
		_, err := replica.Coordinate(context.Background(), c.node(r.others[0]).e,
			replica.Write{Key: r.key, Value: []byte("v"), W: 3})
		if !errors.Is(err, replica.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
		if n := replicaRecords(t, c.node(r.others[0])); n != 0 {
			t.Fatalf("the refusing node stored %d records", n)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Four nodes, N=3, W=3; nat[1] and nat[2] are unreachable but
			// alive in every view, so the only node left to stand in for
			// them is others[0].
			c := newCluster(t, 4, testConfig())
			r := c.roles("count-key")
			c.net.Kill(r.nat[1])
			c.net.Kill(r.nat[2])
			coord := tt.coord(r)
			res, err := replica.Coordinate(context.Background(), c.node(coord).e,
				replica.Write{Key: r.key, Value: []byte("v"), W: 3})
			var qe *replica.QuorumError
			if !errors.As(err, &qe) {
				t.Fatalf("err %v, want a QuorumError", err)
			}
			if qe.Acks != tt.wantAcks || qe.Required != 3 || res.Acks != tt.wantAcks || res.Hinted != tt.wantHinted {
				t.Fatalf("acks %d (result %d, hinted %d) required %d, want acks %d hinted %d required 3",
					qe.Acks, res.Acks, res.Hinted, qe.Required, tt.wantAcks, tt.wantHinted)
			}
			_, hinted := c.hint(coord, r.key, r.nat[0])
			_, stored := c.data(coord, r.key)
			if hinted != tt.wantHint || stored == tt.wantHint {
				t.Fatalf("coordinator holds hint %v, data %v; want hint %v", hinted, stored, tt.wantHint)
			}
			if got := c.node(coord).e.Hints(); (got == 1) != tt.wantHint {
				t.Fatalf("Hints() = %d", got)
			}
		})
	}
}

// TestPendingReplicaIsNotAFallback: during a leave, the node that will
// take the leaving replica's place is pending. When another replica is
// down, that node is also next in ring order, the first fallback; it must
// still take the write as a pending replica, adding one to W, and the
// down replica's hint must go to another node.
func TestPendingReplicaIsNotAFallback(t *testing.T) {
	c := newCluster(t, 6, testConfig())
	var (
		r      roles
		future *ring.Ring
		found  bool
	)
	for i := 0; i < 200 && !found; i++ {
		r = c.roles(fmt.Sprint("leave-", i))
		future = c.ring.Without(r.nat[2])
		fp := future.PreferenceList(r.pos, 3)
		found = fp[0] == r.nat[0] && fp[1] == r.nat[1] && fp[2] == r.others[0]
	}
	if !found {
		t.Fatal("no key whose next node replaces its third replica")
	}
	x := r.others[0]
	for _, n := range c.nodes {
		n.view.setRings(c.ring, future)
	}
	_, upRequired := replica.WriteTargets(c.node(r.nat[0]).e, r.pos, 2)
	c.setDead(true, r.nat[1])
	ts, required := replica.WriteTargets(c.node(r.nat[0]).e, r.pos, 2)
	if required != upRequired || required != 3 {
		t.Fatalf("required %d with nat[1] down, %d with it up; want W+1 = 3 both times", required, upRequired)
	}
	var pendingX, hinted bool
	for _, tg := range ts {
		if tg.ID == x {
			pendingX = tg.Pending && tg.HintFor == ""
		}
		if tg.HintFor == r.nat[1] && tg.ID != x {
			hinted = true
		}
	}
	if !pendingX || !hinted {
		t.Fatalf("targets %+v: want %s as a pending replica and another node holding nat[1]'s hint", ts, x)
	}
}
