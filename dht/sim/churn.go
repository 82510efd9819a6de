package sim

import (
	"context"
	"fmt"
	"math"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
	"github.com/ringkv/ringkv/dht/pb"
	"github.com/ringkv/ringkv/dht/ring"
	"github.com/ringkv/ringkv/dht/routing"
)

// churn runs the churn periods and returns the tally of their lookups and
// the number of joins that failed.
func (w *world) churn(ctx context.Context) (tally, int, error) {
	var all tally
	fails := 0
	per := max(w.cfg.Lookups/w.cfg.Periods, 1)
	for p := range w.cfg.Periods {
		if err := ctx.Err(); err != nil {
			return all, fails, err
		}
		k := max(int(math.Round(w.cfg.Churn*float64(len(w.live)))), 1)
		killed := w.kill(k)
		added, f, err := w.add(ctx, k)
		if err != nil {
			return all, fails, err
		}
		fails += f
		w.truth = w.truth.Without(killed...).With(added...)
		w.clk.Advance(w.cfg.Period)
		if err := w.maintain(ctx); err != nil {
			return all, fails, err
		}
		t, err := w.lookups(ctx, fmt.Sprintf("churn period %d/%d", p+1, w.cfg.Periods), per, w.randomAsker)
		if err != nil {
			return all, fails, err
		}
		all.merge(t)
		w.progress(fmt.Sprintf("churn period %d/%d: -%d +%d nodes (%d join failures), %d lookups, success %.4f, correct %.4f, %s",
			p+1, w.cfg.Periods, k, k, f, t.n, t.successRate(), float64(t.correct)/float64(max(t.n, 1)), heapUse()))
	}
	return all, fails, nil
}

// kill makes k random live nodes unreachable and drops their routers. No
// one is told: survivors find out by failed requests.
func (w *world) kill(k int) []peer.ID {
	out := make([]peer.ID, 0, k)
	for range min(k, len(w.live)-1) {
		i := w.live[w.rng.IntN(len(w.live))]
		w.net.Kill(w.ids[i])
		// The endpoint outlives the node; its handler must not keep the
		// router alive.
		w.net.Endpoint(w.ids[i]).Handle(routing.Protocol, newFindRequest, deadHandler)
		_ = w.routers[i].Close()
		w.routers[i] = nil
		delete(w.warm, i)
		w.removeLive(i)
		out = append(out, w.ids[i])
	}
	return out
}

func newFindRequest() proto.Message { return new(pb.FindRequest) }

func deadHandler(context.Context, peer.ID, proto.Message) (proto.Message, error) {
	return nil, dht.ErrClosed
}

func (w *world) removeLive(i int32) {
	p := w.livePos[i]
	last := w.live[len(w.live)-1]
	w.live[p] = last
	w.livePos[last] = p
	w.live = w.live[:len(w.live)-1]
	w.livePos[i] = -1
}

// add starts k new nodes, each joining through a random live node that was
// there before this period's newcomers. It returns them as ring nodes and
// the number of joins that failed (the node stays, with what it learned).
func (w *world) add(ctx context.Context, k int) ([]ring.Node, int, error) {
	old := len(w.live)
	out := make([]ring.Node, 0, k)
	fails := 0
	for range k {
		i := int32(len(w.ids))
		w.ids = append(w.ids, PeerID(w.cfg.Seed, int(i)))
		w.routers = append(w.routers, nil)
		w.livePos = append(w.livePos, -1)
		seed := w.routers[w.live[w.rng.IntN(old)]].Self()
		if err := w.newRouter(ctx, i); err != nil {
			return nil, 0, err
		}
		w.routers[i].SetCacheSize(w.cfg.ChurnCacheSize)
		if err := w.routers[i].Join(ctx, seed); err != nil {
			fails++
		}
		out = append(out, ring.Node{ID: w.ids[i], Capacity: 1})
		if n := len(out); n%max(k/4, 1) == 0 {
			w.progress(fmt.Sprintf("joins: %d/%d", n, k))
		}
	}
	return out, fails, ctx.Err()
}

// maintain runs one Stabilize and one FixFingers round on every live node,
// in random order.
func (w *world) maintain(ctx context.Context) error {
	order := make([]int32, len(w.live))
	copy(order, w.live)
	w.rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
	for n, i := range order {
		r := w.routers[i]
		if err := r.Stabilize(ctx); err != nil {
			return err
		}
		if err := r.FixFingers(ctx); err != nil && ctx.Err() != nil {
			return err
		}
		if (n+1)%max(len(order)/4, 1) == 0 {
			w.progress(fmt.Sprintf("maintenance: %d/%d nodes", n+1, len(order)))
		}
	}
	return nil
}
