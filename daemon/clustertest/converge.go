//go:build clustertest

package clustertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/daemon/client"
)

// Convergence is how the cluster settled after the faults were healed.
type Convergence struct {
	// Converged: at one check every node was ready with every member
	// live, every arc's Merkle root was equal on all nodes reporting it,
	// and no node had hints queued.
	Converged bool
	// After is the time from the call until convergence (or until giving
	// up). RootsAfter is the time until the roots last started to agree
	// (-1 if they never did), whatever the hints.
	After, RootsAfter time.Duration
	// Hints are the nodes' hint queues at the last check.
	Hints []int64
	// Arcs is how many distinct arcs the nodes reported at the last check.
	Arcs int
	// RepairRounds counts the anti-entropy rounds started on every node.
	RepairRounds int64
	// Detail says what was still wrong when giving up.
	Detail string
}

// HintsTotal sums the hint queues.
func (c Convergence) HintsTotal() int64 {
	var n int64
	for _, h := range c.Hints {
		n += h
	}
	return n
}

// WaitConverged runs anti-entropy rounds on every node (POST /v1/repair)
// in the background and polls status and Merkle roots every second until
// the cluster converges or bound passes. replicas is N: every arc must be
// reported by min(N, nodes) nodes, so that agreement is not vacuous.
func WaitConverged(ctx context.Context, c Cluster, replicas int, bound time.Duration) Convergence {
	start := time.Now()
	res := Convergence{RootsAfter: -1}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		repairLoop(rctx, c, &res.RepairRounds)
	}()
	err := poll(ctx, bound, time.Second, func() bool {
		s := checkConverged(ctx, c, min(replicas, c.Size()))
		res.Hints, res.Arcs = s.hints, s.arcs
		switch {
		case !s.rootsAgree:
			res.RootsAfter = -1
		case res.RootsAfter < 0:
			res.RootsAfter = time.Since(start)
		}
		res.Detail = s.detail
		return s.detail == ""
	})
	stop()
	wg.Wait()
	res.Converged, res.After = err == nil, time.Since(start)
	return res
}

// repairLoop starts a repair round on every node, waits for all of them,
// rests two seconds, and repeats until ctx ends.
func repairLoop(ctx context.Context, c Cluster, rounds *int64) {
	for ctx.Err() == nil {
		forEach(c.Size(), func(i int) error {
			cl := client.New(c.API(i), 1)
			defer cl.Close()
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			_, err := cl.Repair(rctx, nil)
			return err
		})
		atomic.AddInt64(rounds, 1)
		pause(ctx, 2*time.Second)
	}
}

// convState is one convergence check.
type convState struct {
	detail     string // "" when converged
	rootsAgree bool
	hints      []int64
	arcs       int
}

// checkConverged asks every node for its status and Merkle roots.
func checkConverged(ctx context.Context, c Cluster, reporters int) convState {
	var s convState
	roots := make([]map[string]string, c.Size())
	s.hints = make([]int64, c.Size())
	for i := 0; i < c.Size(); i++ {
		st, err := status(ctx, c, i)
		if err != nil {
			s.detail = fmt.Sprintf("node %d: status: %v", i+1, err)
			return s
		}
		s.hints[i] = st.Hints
		if !st.Ready || st.LiveMembers != c.Size() {
			s.detail = fmt.Sprintf("node %d: ready=%v, %d of %d members live", i+1, st.Ready, st.LiveMembers, c.Size())
			return s
		}
		cl := client.New(c.API(i), 1)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		roots[i], err = cl.Roots(rctx)
		cancel()
		cl.Close()
		if err != nil {
			s.detail = fmt.Sprintf("node %d: roots: %v", i+1, err)
			return s
		}
	}
	s.detail, s.arcs = CompareRoots(roots, reporters)
	s.rootsAgree = s.detail == ""
	for i, h := range s.hints {
		switch {
		case s.detail != "":
		case h < 0:
			s.detail = fmt.Sprintf("node %d reports %d hints: its hint counter went negative (an accounting bug in dht/replica)", i+1, h)
		case h > 0:
			s.detail = fmt.Sprintf("node %d still has %d hints queued", i+1, h)
		}
	}
	return s
}

// WrittenKeys lists every key a put or delete of ops touched, sorted.
func WrittenKeys(ops []Op) []string {
	seen := map[string]bool{}
	var keys []string
	for _, op := range ops {
		if op.Kind != KindGet && !seen[op.Key] {
			seen[op.Key] = true
			keys = append(keys, op.Key)
		}
	}
	slices.Sort(keys)
	return keys
}

// FinalReads reads every key through every node, recording the reads as
// final ops of h. A read that fails is retried up to attempts times.
func FinalReads(ctx context.Context, c Cluster, h *History, keys []string, attempts int, timeout time.Duration) {
	forEach(c.Size(), func(node int) error {
		cl := client.New(c.API(node), 8)
		defer cl.Close()
		next := make(chan string)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for key := range next {
					finalRead(ctx, cl, h, node, key, attempts, timeout)
				}
			}()
		}
		for _, k := range keys {
			next <- k
		}
		close(next)
		wg.Wait()
		return nil
	})
}

func finalRead(ctx context.Context, cl *client.Client, h *History, node int, key string, attempts int, timeout time.Duration) {
	for a := 0; a < attempts && ctx.Err() == nil; a++ {
		op := h.Begin(Op{Client: -1, Node: node, Kind: KindGet, Key: key, Final: true})
		rctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cl.Get(rctx, []byte(key), client.ReadOptions{})
		cancel()
		if err == nil {
			op.Values, err = siblingValues(resp)
		}
		if op = h.End(op, Classify(KindGet, err), err); op.Result == ResultOK {
			return
		}
		pause(ctx, 500*time.Millisecond)
	}
}
